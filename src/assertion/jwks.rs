//! `GET /.well-known/jwks.json` (RFC 7517): the public keys that verify
//! `Keygate-Assertion`, for any origin. Register with
//! `.configure(crate::assertion::jwks::routes)` beside
//! `.app_data(web::Data::from(assertions))`.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::from_fn;
use actix_web::{web, HttpResponse};

use super::Assertions;
use crate::oauth::OAuthError;
use crate::oauth_endpoints::cors;

pub const PATH: &str = "/.well-known/jwks.json";

/// How long a verifier, or a cache in front of it, may keep the key set.
/// Short: a rotation starts signing with a key the cached set lacks (a
/// verifier that meets an unknown `kid` refetches; a shared cache would not),
/// and a minute is an assertion's whole life.
pub const CACHE_CONTROL: &str = "public, max-age=60";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource(PATH)
            .wrap(from_fn(cors::for_anyone))
            .route(web::get().to(key_set))
            .default_service(web::to(get_only)),
    );
}

async fn key_set(assertions: web::Data<Assertions>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, CACHE_CONTROL))
        .content_type("application/json")
        .body(assertions.key_set())
}

async fn get_only() -> HttpResponse {
    let mut response = OAuthError::InvalidRequest("this document takes GET only".into()).response();
    *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET"));
    response
}
