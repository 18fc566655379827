//! `GET /api/v1/token`: the calling credential itself.

use actix_web::http::header::{self, ContentType};
use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use crate::api::json::{ApiError, Errors};
use crate::gate::{Authenticated, Gate};
use crate::state::AppState;
use crate::time::rfc3339;
use crate::tokens::scopes::ScopeCatalogue;
use crate::tokens::store::TokenStoreError;
use crate::tokens::{Credential, TokenKind};

#[derive(Serialize, ToSchema)]
pub struct TokenInfo {
    /// The public token id, as in the token string and API Logs.
    pub id: String,
    pub name: String,
    /// `personal`, `service` or `oauth`.
    pub kind: String,
    pub seller: i64,
    /// What the token may do now (a personal token: every scope of the API).
    pub scopes: Vec<String>,
    pub created_at: String,
    pub expires_at: Option<String>,
    /// When the secret is due for rotation (API tokens; null for OAuth).
    pub rotation_due_at: Option<String>,
    /// The app an OAuth access token acts for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_name: Option<String>,
}

/// The caller's own credential. The body is the same for every call with it,
/// so it is serialised once per credential and kept with it.
pub async fn show(req: HttpRequest, auth: Authenticated, gate: web::Data<Gate>) -> Result<HttpResponse, ApiError> {
    let credential = &auth.credential;
    let body = match credential.token_info.get() {
        Some(body) => body.clone(),
        None => {
            let catalogue = &gate.api.current().catalogue;
            let body =
                serde_json::to_vec(&info(credential, catalogue)).map_err(|e| Errors::from_request(&req).internal(e))?;
            credential.token_info.get_or_init(|| Bytes::from(body)).clone()
        }
    };
    Ok(HttpResponse::Ok().insert_header(ContentType::json()).body(body))
}

fn info(credential: &Credential, catalogue: &ScopeCatalogue) -> TokenInfo {
    let scopes = match credential.every_scope {
        true => catalogue.all(),
        false => credential.scopes.current(catalogue),
    };
    TokenInfo {
        id: credential.public_id.clone(),
        name: credential.name.clone(),
        kind: credential.kind.as_str().to_owned(),
        seller: credential.seller_id,
        scopes: scopes.iter().map(|s| s.as_str().to_owned()).collect(),
        created_at: rfc3339(credential.created_at),
        expires_at: credential.expires_at.map(rfc3339),
        rotation_due_at: credential.rotation_due_at.map(rfc3339),
        client_id: credential.oauth.as_ref().map(|o| o.client_id.clone()),
        app_name: credential.oauth.as_ref().map(|o| o.app_name.clone()),
    }
}

/// The answer of `POST /api/v1/token/rotate`: the new token string, once.
#[derive(Serialize, ToSchema)]
pub struct RotatedToken {
    /// The new token string: shown this once, keep it now.
    pub token: String,
    pub expires_at: Option<String>,
    pub rotation_due_at: String,
    /// Until when the secret that made this call keeps working (null: it stopped at once).
    pub previous_valid_until: Option<String>,
}

/// `POST /api/v1/token/rotate`: the calling API token rotates itself (SPEC
/// §2). The old secret keeps working for the token's grace; a secret that
/// was already rotated cannot rotate again (two processes racing: one wins,
/// the other is told to read the new token where it keeps its tokens).
pub async fn rotate(
    req: HttpRequest,
    auth: Authenticated,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let errors = Errors::from_request(&req);
    let credential = &auth.credential;
    let refuse = |status: StatusCode, code: &'static str, message: String| ApiError {
        status,
        code,
        message,
        field: None,
        request_id: errors.request_id.clone(),
    };
    if credential.kind == TokenKind::OAuth {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "self_rotation_disabled",
            "An OAuth access token is not rotated: refresh it with its refresh token (POST /oauth/token).".into(),
        ));
    }
    let already = || {
        refuse(
            StatusCode::CONFLICT,
            "already_rotated",
            "This secret was rotated already; it works only until its grace ends. Use the new token string \
             (another process of yours rotated it: read it where you keep your token)."
                .into(),
        )
    };
    if auth.by_previous_secret {
        return Err(already());
    }
    let public_id = credential.public_id.clone();
    let token = state
        .db
        .run(move |conn| crate::tokens::store::find(conn, &public_id))
        .await
        .map_err(|e| errors.db(e))?
        .ok_or_else(|| errors.not_found("token"))?;
    if !token.may_rotate_itself() {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "self_rotation_disabled",
            "This token may not rotate itself: its owner turned that off. Rotate it under Settings → API Tokens."
                .into(),
        ));
    }
    let ctx = crate::audit::EventContext {
        ip: crate::remote::of_request(&req, &state.config.trusted_proxies).ip.map(|ip| ip.to_string()),
        user_agent: req.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_owned),
        request_id: Some(errors.request_id.clone()),
        ..Default::default()
    };
    let issued = match state.tokens.rotate_itself(&token, credential.secret_issued_at, ctx).await {
        Ok(issued) => issued,
        Err(TokenStoreError::StaleRotation) => return Err(already()),
        Err(e @ (TokenStoreError::Revoked | TokenStoreError::ExpiredFixed)) => {
            return Err(refuse(StatusCode::CONFLICT, "not_rotatable", e.to_string()))
        }
        Err(e) => return Err(errors.internal(e)),
    };
    let now = crate::db::now();
    let grace = token.self_rotation_grace();
    let body = RotatedToken {
        token: issued.plain.expose(),
        expires_at: issued.token.expires_at.map(rfc3339),
        rotation_due_at: rfc3339(issued.token.rotation_due_at()),
        previous_valid_until: (grace > chrono::Duration::zero()).then(|| rfc3339(now + grace)),
    };
    let note = match &body.previous_valid_until {
        Some(until) => format!("rotated itself; the previous secret works until {until}"),
        None => "rotated itself; the previous secret stopped at once".to_owned(),
    };
    let mut response = HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(body);
    response.extensions_mut().insert(crate::audit::RequestNote(note));
    Ok(response)
}
