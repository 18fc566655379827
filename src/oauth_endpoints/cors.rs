//! CORS for browser apps (SPEC §8): a public app running in a browser calls
//! `/oauth/token`, `/oauth/revoke` and `/oauth/introspect` from the origin
//! of one of its registered redirect URIs (or prefixes); the metadata (and
//! the key set) may be read from any origin. Never with credentials: these
//! endpoints take no cookies, and `Access-Control-Allow-Credentials` is
//! never sent. Other origins get no `Access-Control-Allow-Origin`, so the
//! browser keeps the answer from the page.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};

use crate::state::AppState;

/// How long a browser may keep a preflight's answer.
const MAX_AGE: &str = "600";
const TOKEN_METHODS: &str = "POST";
const TOKEN_HEADERS: &str = "authorization, content-type";
/// What a page may read of an answer besides the simple headers.
const EXPOSED: &str = "www-authenticate, retry-after";

fn origin_of(req: &ServiceRequest) -> Option<HeaderValue> {
    req.headers().get(header::ORIGIN).cloned()
}

fn is_preflight(req: &ServiceRequest) -> bool {
    req.method() == Method::OPTIONS && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

fn allow(headers: &mut HeaderMap, origin: HeaderValue) {
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSED));
}

fn vary_on_origin(headers: &mut HeaderMap) {
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
}

/// The token, revocation and introspection endpoints: for the origins of
/// public apps' redirect URIs only.
pub async fn for_public_apps(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(origin) = origin_of(&req) else { return Ok(next.call(req).await?.map_into_boxed_body()) };
    let allowed = match req.app_data::<web::Data<AppState>>() {
        Some(state) => match origin.to_str() {
            Ok(text) => match state.oauth.browser_origins().await {
                Ok(origins) => origins.contains(text),
                Err(e) => {
                    tracing::warn!(error = %e, "could not read the browser origins; answering without CORS");
                    false
                }
            },
            Err(_) => false,
        },
        None => false,
    };
    if is_preflight(&req) {
        let mut answer = HttpResponse::build(StatusCode::NO_CONTENT);
        if allowed {
            answer
                .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin))
                .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, TOKEN_METHODS))
                .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, TOKEN_HEADERS))
                .insert_header((header::ACCESS_CONTROL_MAX_AGE, MAX_AGE));
        }
        let mut answer = answer.finish();
        vary_on_origin(answer.headers_mut());
        return Ok(req.into_response(answer));
    }
    let mut response = next.call(req).await?.map_into_boxed_body();
    if allowed {
        allow(response.headers_mut(), origin);
    }
    vary_on_origin(response.headers_mut());
    Ok(response)
}

/// Public documents (the metadata, the key set): any origin may read them.
pub async fn for_anyone(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    if origin_of(&req).is_none() {
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    if is_preflight(&req) {
        let answer = HttpResponse::NoContent()
            .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
            .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "GET"))
            .insert_header((header::ACCESS_CONTROL_MAX_AGE, MAX_AGE))
            .finish();
        return Ok(req.into_response(answer));
    }
    let mut response = next.call(req).await?.map_into_boxed_body();
    response.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    Ok(response)
}
