//! The middleware around every `/api/` request: HTTPS, authentication,
//! scope, rate limit, the response headers, `last_used`, and exactly one
//! audit row per request whatever happens inside.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpResponse};
use diesel::prelude::*;
use serde_json::json;

use super::authenticate::{authenticate, Authenticated};
use super::error::{rfc3339, GateError};
use super::ratelimit::LimitState;
use crate::api::{match_route, RouteMatch};
use crate::audit::{ApiRequest, NewAuditEvent};
use crate::db::schema::api_tokens;
use crate::startup::{AppState, RequestId};
use crate::tokens::Scope;

/// How often `last_used_at` may be written per token.
pub const LAST_USED_EVERY: Duration = Duration::from_secs(60);

/// Remembers when each token's `last_used_*` was last written.
#[derive(Default)]
pub struct LastUsed(Mutex<HashMap<String, Instant>>);

impl LastUsed {
    /// Whether this use should be written (at most once a minute per token).
    fn due(&self, token_id: &str) -> bool {
        let mut seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match seen.get(token_id) {
            Some(at) if at.elapsed() < LAST_USED_EVERY => false,
            _ => {
                seen.insert(token_id.to_owned(), Instant::now());
                true
            }
        }
    }
}

fn json_error(status: StatusCode, code: &str, message: &str, request_id: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "error": code, "message": message, "request_id": request_id }))
}

fn limit_headers(response: &mut HttpResponse, limit: LimitState) {
    let headers = response.headers_mut();
    // Numbers go in as `HeaderValue::from`, which formats without checking.
    let number = |n: u64| HeaderValue::from(n);
    set_header(headers, "ratelimit-policy", format!("{};w=60", limit.limit));
    set_header(
        headers,
        "ratelimit",
        format!("limit={}, remaining={}, reset={}", limit.limit, limit.remaining, limit.reset_secs),
    );
    headers.insert(HeaderName::from_static("x-ratelimit-limit"), number(limit.limit.into()));
    headers.insert(HeaderName::from_static("x-ratelimit-remaining"), number(limit.remaining.into()));
    let reset_at = chrono::Utc::now().timestamp().max(0) as u64 + limit.reset_secs;
    headers.insert(HeaderName::from_static("x-ratelimit-reset"), number(reset_at));
}

fn set_header(headers: &mut actix_web::http::header::HeaderMap, name: &'static str, value: String) {
    if let Ok(value) = HeaderValue::try_from(value) {
        headers.insert(HeaderName::from_static(name), value);
    }
}

fn token_headers(response: &mut HttpResponse, auth: &Authenticated, now: chrono::NaiveDateTime) {
    let expiration = auth.token.expires_at.map_or_else(|| "never".to_owned(), rfc3339);
    set_header(response.headers_mut(), "keygate-token-expiration", expiration);
    if now >= auth.token.rotation_due_at() {
        set_header(response.headers_mut(), "keygate-token-rotate-by", rfc3339(auth.token.rotation_due_at()));
    }
}

/// The API's middleware; see the module comment.
pub async fn api_gate(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let started = Instant::now();
    let state = req.app_data::<web::Data<AppState>>().cloned().expect("AppState is registered");
    let request_id = req.extensions().get::<RequestId>().map(|r| r.0.clone()).unwrap_or_default();
    let client = crate::client::of_service_request(&req, &state.config.trusted_proxies);
    let ip = client.ip;
    let user_agent = req.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let method = req.method().clone();
    let path = req.path().to_owned();
    let route = match_route(&method, &path);
    let required: Option<Scope> = match route {
        RouteMatch::Operation(scope) => scope,
        _ => None,
    };

    let mut audit = ApiRequest {
        seller_id: None,
        token_id: None,
        method: method.to_string(),
        path,
        status: 0,
        outcome: "error",
        required_scope: required.map(Scope::as_str),
        ip: ip.map(|ip| ip.to_string()),
        user_agent,
        latency_us: 0,
        request_id: request_id.clone(),
    };

    let response: ServiceResponse<BoxBody> = if route == RouteMatch::Public {
        // The OpenAPI document is for anyone; it still gets its audit row.
        let response = next.call(req).await?.map_into_boxed_body();
        audit.outcome = if response.status().is_success() { "ok" } else { "error" };
        response
    } else if !client.may_send_secrets() {
        // Plain HTTP from another machine: refused before the token is read.
        let error = GateError::HttpsRequired;
        audit.outcome = error.outcome();
        req.into_response(error.response(&request_id))
    } else {
        let verdict = authenticate(&state, req.headers().get(header::AUTHORIZATION)).await;
        audit.seller_id = verdict.seller_id;
        audit.token_id = verdict.token_id;
        match verdict.result {
            Err(error) => {
                audit.outcome = error.outcome();
                if matches!(error, GateError::InvalidToken(_)) {
                    if let Some(delay) = state.tarpit.failed(ip) {
                        tokio::time::sleep(delay).await;
                    }
                }
                req.into_response(error.response(&request_id))
            }
            Ok(auth) => {
                let now = crate::db::now();
                let limit = state
                    .limits
                    .check(
                        &auth.token.public_id,
                        auth.token
                            .rate_limit_per_minute
                            .map_or(state.config.rate_limit_per_minute, |n| n.max(1) as u32),
                    )
                    .await;
                let refusal = match (route, required) {
                    (_, Some(scope)) if !auth.scopes.grants(scope) => {
                        Some(GateError::InsufficientScope { required: scope })
                    }
                    _ => limit.retry_after_secs.map(|retry_after_secs| GateError::RateLimited { retry_after_secs }),
                };
                note_last_use(&state, &auth, audit.ip.clone());
                let response = match refusal {
                    Some(error) => {
                        audit.outcome = error.outcome();
                        req.into_response(error.response(&request_id))
                    }
                    None => {
                        req.extensions_mut().insert(auth.clone());
                        let response = match route {
                            RouteMatch::Operation(_) | RouteMatch::Public => {
                                next.call(req).await?.map_into_boxed_body()
                            }
                            RouteMatch::MethodNotAllowed => req.into_response(json_error(
                                StatusCode::METHOD_NOT_ALLOWED,
                                "method_not_allowed",
                                "This path does not accept that method.",
                                &request_id,
                            )),
                            RouteMatch::NotFound => req.into_response(json_error(
                                StatusCode::NOT_FOUND,
                                "not_found",
                                "There is no API endpoint at this path.",
                                &request_id,
                            )),
                        };
                        audit.outcome = if response.status().is_success() { "ok" } else { "error" };
                        response
                    }
                };
                let (head, mut http) = response.into_parts();
                limit_headers(&mut http, limit);
                token_headers(&mut http, &auth, now);
                ServiceResponse::new(head, http)
            }
        }
    };
    audit.status = response.status().as_u16();
    audit.latency_us = started.elapsed().as_micros() as i64;
    // Waits only when the writer is behind: back-pressure, never a lost row.
    if state.audit.send(NewAuditEvent::api(audit)).await.is_err() {
        tracing::error!("the audit writer is closed; refusing to answer without an audit row");
        return Err(actix_web::error::ErrorServiceUnavailable("shutting down"));
    }
    Ok(response)
}

/// Writes `last_used_at` and the address, at most once a minute per token,
/// off the request's path.
fn note_last_use(state: &web::Data<AppState>, auth: &Authenticated, ip: Option<String>) {
    if !state.last_used.due(&auth.token.public_id) {
        return;
    }
    let state = state.clone();
    let token_id = auth.token.id;
    tokio::spawn(async move {
        let written = state
            .db(move |conn| {
                diesel::update(api_tokens::table.find(token_id))
                    .set((api_tokens::last_used_at.eq(crate::db::now()), api_tokens::last_used_ip.eq(ip)))
                    .execute(conn)
            })
            .await;
        if let Err(e) = written {
            tracing::warn!(error = %e, "could not record last use of a token");
        }
    });
}
