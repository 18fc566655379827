//! Forward auth (`/gate/check`, any method): a proxy in front of the API
//! (nginx `auth_request`, Caddy `forward_auth`, Traefik `ForwardAuth`,
//! Envoy `ext_authz` over HTTP) asks whether a request may pass, and the
//! gate answers exactly as it would for the request itself.
//!
//! - The original method and URI come from `X-Forwarded-Method` and
//!   `X-Forwarded-Uri` (Traefik, Caddy) or `X-Original-Method` and
//!   `X-Original-URI` (the nginx convention); or, for Envoy's HTTP
//!   `ext_authz` with `path_prefix: /gate/check`, from the check request
//!   itself (its method, and its path after the prefix). Believed only from
//!   a `--trusted-proxy` address; from anyone else the answer is 403.
//! - A pass is `204` with the identity headers (`Keygate-Seller`, …,
//!   `Keygate-Assertion`), the rate-limit headers and
//!   `Keygate-Token-Expiration`; a refusal is the gate's exact answer
//!   (status, `WWW-Authenticate`, `Retry-After`, JSON body), and its body
//!   again in `Keygate-Refusal` (ASCII JSON): nginx's `auth_request` passes
//!   only 401 and 403 on and turns anything else into 500 without the body,
//!   so its configuration answers with this header instead (README).
//! - One audit row per decision, with the original method and path; the
//!   upstream's status is not known in this mode.

use std::time::Instant;

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};

use super::error::GateError;
use super::middleware::{authorization, check, credential_headers, finish, slow_down, Pass};

use super::Gate;
use crate::audit::Outcome;

pub const PATH: &str = "/gate/check";
/// The refusal's JSON body, for proxies that cannot pass a body on.
pub const REFUSAL: HeaderName = HeaderName::from_static("keygate-refusal");

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(PATH, web::route().to(decide));
    // Envoy's ext_authz (HTTP) appends the original path to its path_prefix.
    cfg.route("/gate/check/{original:.*}", web::route().to(decide));
}

/// The original request's method and path: from the headers a proxy names
/// them in, or (Envoy) from the check request's own method and its raw path
/// after `/gate/check` — the exact bytes the client sent, never decoded.
fn original_of(req: &HttpRequest) -> Result<(Method, String), &'static str> {
    let headers = req.headers();
    let named = ["x-forwarded-uri", "x-original-uri"].iter().any(|name| headers.contains_key(*name));
    match req.uri().path().strip_prefix(PATH) {
        Some(rest) if rest.starts_with('/') && !named => Ok((req.method().clone(), rest.to_owned())),
        _ => original(headers),
    }
}

/// The original request's method and URI, as the proxy names them.
fn original(headers: &HeaderMap) -> Result<(Method, String), &'static str> {
    let header = |names: [&str; 2]| names.iter().find_map(|name| headers.get(*name).map(|v| v.to_str()));
    let method = match header(["x-forwarded-method", "x-original-method"]) {
        Some(Ok(method)) => Method::from_bytes(method.trim().as_bytes())
            .map_err(|_| "X-Forwarded-Method (or X-Original-Method) is not an HTTP method")?,
        Some(Err(_)) => return Err("X-Forwarded-Method (or X-Original-Method) is not plain text"),
        None => {
            return Err("send the original method in X-Forwarded-Method (or X-Original-Method), or the original \
                        path after /gate/check (Envoy's path_prefix)")
        }
    };
    let uri = match header(["x-forwarded-uri", "x-original-uri"]) {
        Some(Ok(uri)) => uri.trim(),
        Some(Err(_)) => return Err("X-Forwarded-Uri (or X-Original-URI) is not plain text"),
        None => return Err("send the original URI in X-Forwarded-Uri (or X-Original-URI)"),
    };
    // The path as the client sent it: an origin-form URI, its query cut off.
    let path = uri.split(['?', '#']).next().unwrap_or_default();
    if !path.starts_with('/') {
        return Err("X-Forwarded-Uri (or X-Original-URI) must be the request's path and query, beginning with /");
    }
    Ok((method, path.to_owned()))
}

/// `/gate/check`: see the module.
pub async fn decide(req: HttpRequest, gate: web::Data<Gate>) -> Result<HttpResponse, actix_web::Error> {
    let started = Instant::now();
    let request_id = crate::request_id::of(&req);
    let client = crate::remote::of_request(&req, &gate.trusted_proxies);
    let peer = req.peer_addr().map(|a| a.ip().to_canonical());
    let trusted = peer.is_some_and(|ip| gate.trusted_proxies.iter().any(|net| net.contains(&ip)));
    let asked = match (trusted, original_of(&req)) {
        (false, _) => Err(GateError::UntrustedProxy),
        (true, Err(why)) => Err(GateError::InvalidRequest(why)),
        (true, Ok(asked)) => Ok(asked),
    };
    let (method, path) = match &asked {
        Ok((method, path)) => (method.clone(), path.clone()),
        Err(_) => (req.method().clone(), PATH.to_owned()),
    };
    let (mut pass, route) = Pass::of(&gate, &method, &path, req.headers(), request_id.clone(), client);
    let decided = match asked {
        Err(refusal) => Err(refusal),
        // The gate's own pipeline, on the request the proxy holds.
        Ok(_) => check(&gate, &pass.seen, &route, authorization(req.headers()), &mut pass.trail).await,
    };
    let (mut answer, outcome) = match decided {
        Ok(auth) => {
            let mut answer = HttpResponse::NoContent().finish();
            if let Some(auth) = &auth {
                let api = gate.api.current();
                let headers = answer.headers_mut();
                for (name, value) in super::identity::headers(auth, &api) {
                    headers.insert(name, value);
                }
                if let Some(assertion) = gate.assertion(auth) {
                    headers.insert(super::identity::ASSERTION, assertion);
                }
            }
            (answer, Outcome::Ok)
        }
        Err(refusal) => {
            slow_down(&gate, &refusal, pass.seen.client.ip).await;
            let mut answer = refusal.response(&request_id);
            let body = crate::error::ascii_json(&refusal.body(&request_id));
            if let Ok(value) = HeaderValue::from_str(&body) {
                answer.headers_mut().insert(REFUSAL, value);
            }
            (answer, refusal.outcome())
        }
    };
    if let Some(auth) = &pass.trail.auth {
        credential_headers(answer.headers_mut(), auth, pass.trail.limit);
    }
    let status = answer.status().as_u16();
    finish(&gate, *pass, outcome, status, started).await?;
    Ok(answer)
}
