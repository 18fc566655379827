//! The HTTP side of the OAuth server: `/oauth/authorize` (with login and
//! consent), `/oauth/token`, `/oauth/revoke` (RFC 7009), `/oauth/introspect`
//! (RFC 7662), the device authorization grant (RFC 8628:
//! `/oauth/device_authorization` and the seller's `/device`) and the
//! metadata document (RFC 8414). The protocol itself is
//! `crate::oauth`.

pub mod authorize;
pub mod cors;
pub mod device;
pub mod metadata;
pub mod token;

use std::collections::HashMap;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, StatusCode};
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, HttpRequest, HttpResponse};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::audit::EventContext;
use crate::oauth::service::ClientAuth;
use crate::oauth::OAuthError;
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    let allow_only = |methods: &'static str| {
        move || async move {
            let error = OAuthError::InvalidRequest(format!("this endpoint takes {methods} only"));
            let mut response = error.response();
            *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            response.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static(methods));
            response
        }
    };
    cfg.service(
        web::resource("/oauth/authorize")
            .route(web::get().to(authorize::authorize))
            .route(web::post().to(authorize::decide))
            .default_service(web::to(allow_only("GET, POST"))),
    )
    .service(
        web::resource("/oauth/token")
            .wrap(from_fn(json_refusals))
            .wrap(from_fn(cors::for_public_apps))
            .route(web::post().to(token::token))
            .default_service(web::to(allow_only("POST"))),
    )
    .service(
        web::resource("/oauth/device_authorization")
            .wrap(from_fn(json_refusals))
            .wrap(from_fn(cors::for_public_apps))
            .route(web::post().to(device::device_authorization))
            .default_service(web::to(allow_only("POST"))),
    )
    .service(
        web::resource("/device")
            .route(web::get().to(device::entry))
            .route(web::post().to(device::submit))
            .default_service(web::to(allow_only("GET, POST"))),
    )
    .service(
        web::resource("/oauth/revoke")
            .wrap(from_fn(json_refusals))
            .wrap(from_fn(cors::for_public_apps))
            .route(web::post().to(token::revoke))
            .default_service(web::to(allow_only("POST"))),
    )
    .service(
        web::resource("/oauth/introspect")
            .wrap(from_fn(json_refusals))
            .wrap(from_fn(cors::for_public_apps))
            .route(web::post().to(token::introspect))
            .default_service(web::to(allow_only("POST"))),
    )
    .service(
        web::resource(metadata::PATH)
            .wrap(from_fn(cors::for_anyone))
            .route(web::get().to(metadata::document))
            .default_service(web::to(allow_only("GET"))),
    )
    .service(
        web::resource(metadata::OPENID_PATH)
            .wrap(from_fn(cors::for_anyone))
            .route(web::get().to(metadata::not_an_openid_provider))
            .default_service(web::to(allow_only("GET"))),
    );
}

/// What actix answers itself on the form endpoints (a body over the
/// limit) in the endpoints' own JSON shape.
async fn json_refusals(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let response = next.call(req).await?.map_into_boxed_body();
    let status = response.status();
    let is_json =
        response.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_json || !(status.is_client_error() || status.is_server_error()) {
        return Ok(response);
    }
    let detail = response.response().error().map(|e| e.to_string()).unwrap_or_default();
    let error = match status.is_server_error() {
        true => OAuthError::ServerError,
        false => OAuthError::InvalidRequest(crate::error::actix_refusal(status, &detail).1),
    };
    let mut answer = error.response();
    *answer.status_mut() = status;
    let (req, _) = response.into_parts();
    Ok(ServiceResponse::new(req, answer))
}

/// Parameters of a request, each at most once (RFC 6749 §3.1, §3.2).
pub struct Params(HashMap<String, String>);

impl Params {
    /// `Err(name)` names a parameter given twice; parameters nobody reads are
    /// ignored, as RFC 6749 asks.
    pub fn parse(encoded: &[u8]) -> Result<Self, String> {
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_bytes(encoded).map_err(|_| "the parameters are not form-encoded".to_owned())?;
        let mut map = HashMap::with_capacity(pairs.len());
        for (key, value) in pairs {
            if map.contains_key(&key) {
                return Err(format!("{} is given more than once", crate::oauth::error::quoted(&key)));
            }
            map.insert(key, value);
        }
        Ok(Self(map))
    }

    /// Parameters already read, each name once.
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Self {
        Self(pairs.into_iter().collect())
    }

    /// The value, `None` when absent or empty (RFC 6749 §3.1).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// A form-encoded token request's body and the client it claims to be,
/// by `client_secret_basic`, `client_secret_post`, or `client_id` alone.
pub fn token_request(req: &HttpRequest, body: &[u8]) -> Result<(Params, ClientAuth), OAuthError> {
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !content_type.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Err(OAuthError::InvalidRequest(
            "send the parameters form-encoded, with Content-Type: application/x-www-form-urlencoded".into(),
        ));
    }
    let params = Params::parse(body).map_err(OAuthError::InvalidRequest)?;
    let basic = match req.headers().get(header::AUTHORIZATION) {
        None => None,
        Some(value) => Some(basic_credentials(value)?),
    };
    let auth = match (basic, params.get("client_id"), params.get("client_secret")) {
        (Some(_), _, Some(_)) => {
            return Err(OAuthError::InvalidRequest(
                "use one way of client authentication: client_secret_basic or client_secret_post, not both".into(),
            ))
        }
        (Some((client_id, secret)), body_id, None) => {
            if body_id.is_some_and(|id| id != client_id) {
                return Err(OAuthError::InvalidRequest(
                    "client_id in the body differs from the Basic credentials".into(),
                ));
            }
            ClientAuth::Basic { client_id, secret }
        }
        (None, Some(client_id), Some(secret)) => {
            ClientAuth::Post { client_id: client_id.to_owned(), secret: secret.to_owned() }
        }
        (None, Some(client_id), None) => ClientAuth::Public { client_id: client_id.to_owned() },
        (None, None, _) => {
            return Err(OAuthError::InvalidClient {
                why: "client authentication is required: send client_id (and client_secret for a confidential app)"
                    .into(),
                basic: false,
            })
        }
    };
    Ok((params, auth))
}

/// `Authorization: Basic base64(urlencode(id):urlencode(secret))` (RFC 6749 §2.3.1).
fn basic_credentials(value: &header::HeaderValue) -> Result<(String, String), OAuthError> {
    let refuse = |why: &str| OAuthError::InvalidClient { why: why.to_owned(), basic: true };
    let value = value.to_str().map_err(|_| refuse("the Authorization header is not plain text"))?;
    let (scheme, encoded) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(OAuthError::InvalidRequest(
            "authenticate the client with the Basic scheme (client_secret_basic) or in the body".into(),
        ));
    }
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| refuse("the Basic credentials are not base64"))?;
    let decoded = String::from_utf8(decoded).map_err(|_| refuse("the Basic credentials are not UTF-8"))?;
    let (id, secret) = decoded.split_once(':').ok_or_else(|| refuse("the Basic credentials have no `:`"))?;
    let unescape = |part: &str| -> Result<String, OAuthError> {
        serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("v={part}"))
            .ok()
            .and_then(|mut v| v.pop())
            .map(|(_, value)| value)
            .ok_or_else(|| refuse("the Basic credentials are not form-encoded"))
    };
    Ok((unescape(id)?, unescape(secret)?))
}

/// The client and request as the audit trail records them.
pub fn event_context(req: &HttpRequest, state: &AppState) -> EventContext {
    EventContext {
        ip: crate::remote::of_request(req, &state.config.trusted_proxies).ip.map(|ip| ip.to_string()),
        user_agent: req.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_owned),
        request_id: Some(crate::request_id::of(req)).filter(|id| !id.is_empty()),
        ..EventContext::default()
    }
}

/// A success answer of the token endpoint: never cached (RFC 6749 §5.1).
pub fn json_no_store(status: StatusCode, body: impl serde::Serialize) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"))
        .json(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_may_appear_once() {
        let params = Params::parse(b"a=1&b=&c=x%20y").unwrap();
        assert_eq!(params.get("a"), Some("1"));
        assert_eq!(params.get("b"), None, "empty is absent");
        assert_eq!(params.get("c"), Some("x y"));
        assert_eq!(Params::parse(b"a=1&a=2").err().as_deref(), Some("`a` is given more than once"));
        let hostile = Params::parse("x%22%5C%E2%80%A6%0D%0A=1&x%22%5C%E2%80%A6%0D%0A=2".as_bytes()).err().unwrap();
        assert!(crate::oauth::error::is_rfc6749_text(&hostile), "{hostile}");
    }

    #[test]
    fn basic_credentials_are_url_decoded() {
        let header =
            header::HeaderValue::from_str(&format!("Basic {}", STANDARD.encode("kgc_a%2Bb:s%3Acret"))).unwrap();
        assert_eq!(basic_credentials(&header).unwrap(), ("kgc_a+b".to_owned(), "s:cret".to_owned()));
        let bad = header::HeaderValue::from_static("Basic !!!");
        assert!(matches!(basic_credentials(&bad), Err(OAuthError::InvalidClient { basic: true, .. })));
        let bearer = header::HeaderValue::from_static("Bearer x");
        assert!(matches!(basic_credentials(&bearer), Err(OAuthError::InvalidRequest(_))));
    }
}
