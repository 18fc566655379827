//! `POST /oauth/token`, `POST /oauth/revoke` and `POST /oauth/introspect`:
//! client authentication, the limits, and the protocol's answers.
//!
//! Limits, per minute: `--oauth-token-rate-per-minute` per client and per
//! client address (429 `slow_down` with `Retry-After`), and at most
//! [`FAILED_AUTH_PER_MINUTE`] failed client authentications per address and
//! client, after which that pair is refused without checking the secret.

use std::net::IpAddr;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::{event_context, json_no_store, token_request, Params};
use crate::limits::Quota;
use crate::oauth::apps::{App, ClientId, LimitKey};
use crate::oauth::error::quoted;
use crate::oauth::OAuthError;
use crate::state::AppState;
use crate::tokens::scopes::{ScopeCatalogue, ScopeSet};

/// Failed client authentications per minute per address and client.
pub const FAILED_AUTH_PER_MINUTE: u32 = 10;

/// The client behind the request, within its limits. A `client_id` that
/// cannot be one is refused before any table sees it.
pub(super) async fn client(req: &HttpRequest, state: &AppState, body: &[u8]) -> Result<(Params, App), OAuthError> {
    let from: Option<IpAddr> = crate::remote::of_request(req, &state.config.trusted_proxies).ip;
    let (params, auth) = token_request(req, body)?;
    let client_id = ClientId::parse(auth.client_id()).ok_or_else(|| OAuthError::InvalidClient {
        why: format!(
            "client_id {} is not a keygate client id (kgc_ and 16 letters or digits)",
            quoted(auth.client_id())
        ),
        basic: auth.is_basic(),
    })?;
    let per_minute = Quota::per_minute(state.config.oauth.token_rate_per_minute);
    let address = crate::remote::throttle_key(from);
    for key in [LimitKey::Address(address), LimitKey::Client(client_id)] {
        if let Some(retry_after) = state.oauth_limits.check(&key, per_minute).await.retry_after_secs {
            return Err(OAuthError::SlowDown { retry_after });
        }
    }
    let failures_key = (address, client_id);
    if let Some(retry_after) = state.client_auth_failures.exhausted(&failures_key) {
        return Err(OAuthError::SlowDown { retry_after });
    }
    match state.oauth.authenticate_client(&auth, from).await {
        Ok(app) => Ok((params, app)),
        Err(refused) => {
            if matches!(refused, OAuthError::InvalidClient { .. }) {
                state.client_auth_failures.record(failures_key);
            }
            Err(refused)
        }
    }
}

fn scope_param(params: &Params, catalogue: &ScopeCatalogue) -> Result<Option<ScopeSet>, OAuthError> {
    let Some(raw) = params.get("scope") else { return Ok(None) };
    let scopes = raw
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(|s| catalogue.parse(s).map_err(|e| OAuthError::InvalidScope(format!("unknown scope {}", quoted(&e.0)))))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(ScopeSet::new(scopes)))
}

pub async fn token(req: HttpRequest, state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
    let mut grant_type = String::new();
    let answered = async {
        let (params, app) = client(&req, &state, &body).await?;
        grant_type = params.get("grant_type").unwrap_or_default().to_owned();
        let ctx = event_context(&req, &state);
        let from = crate::remote::of_request(&req, &state.config.trusted_proxies).ip;
        let required = |name: &str| {
            params.get(name).map(str::to_owned).ok_or_else(|| OAuthError::InvalidRequest(format!("{name} is required")))
        };
        match params.get("grant_type") {
            Some("authorization_code") => {
                let code = required("code")?;
                let redirect_uri = params.get("redirect_uri").map(str::to_owned);
                let verifier = params.get("code_verifier").map(str::to_owned);
                state.oauth.exchange_code(app, code, redirect_uri, verifier, ctx).await
            }
            Some("refresh_token") => {
                let token = required("refresh_token")?;
                let narrower = scope_param(&params, &state.gate.api.current().catalogue)?;
                state.oauth.refresh(app, token, narrower, from, ctx).await
            }
            Some(crate::oauth::device::GRANT_TYPE) => {
                let device_code = required("device_code")?;
                state.oauth.poll_device(app, device_code, ctx).await
            }
            Some(other) => Err(OAuthError::UnsupportedGrantType(format!(
                "grant_type {} is not supported: use authorization_code, refresh_token or {}",
                quoted(other),
                crate::oauth::device::GRANT_TYPE
            ))),
            None => Err(OAuthError::InvalidRequest("grant_type is required".into())),
        }
    };
    let answered = answered.await;
    let result = answered.as_ref().map_or_else(|e| e.code(), |_| "ok");
    crate::metrics::global().oauth_token(&grant_type, result);
    match answered {
        Ok(pair) => json_no_store(StatusCode::OK, pair),
        Err(error) => error.response(),
    }
}

pub async fn revoke(req: HttpRequest, state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
    let answered = async {
        let (params, app) = client(&req, &state, &body).await?;
        let token = params.get("token").ok_or_else(|| OAuthError::InvalidRequest("token is required".into()))?;
        state.oauth.revoke(app, token.to_owned(), event_context(&req, &state)).await
    };
    match answered.await {
        // RFC 7009 §2.2: 200 for a token revoked, and for one that was not ours.
        Ok(()) => json_no_store(StatusCode::OK, serde_json::json!({})),
        Err(error) => error.response(),
    }
}

pub async fn introspect(req: HttpRequest, state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
    let answered = async {
        let (params, app) = client(&req, &state, &body).await?;
        let token = params.get("token").ok_or_else(|| OAuthError::InvalidRequest("token is required".into()))?;
        state.oauth.introspect(app, token.to_owned()).await
    };
    match answered.await {
        Ok(answer) => json_no_store(StatusCode::OK, answer),
        Err(error) => error.response(),
    }
}
