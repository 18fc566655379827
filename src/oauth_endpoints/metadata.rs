//! `GET /.well-known/oauth-authorization-server` (RFC 8414): where
//! everything is, and what this server supports.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use crate::state::AppState;
use crate::tokens::scopes::ScopeCatalogue;

pub const PATH: &str = "/.well-known/oauth-authorization-server";

pub fn body(issuer: &crate::config::PublicUrl, catalogue: &ScopeCatalogue) -> serde_json::Value {
    let auth_methods = ["client_secret_basic", "client_secret_post", "none"];
    json!({
        "issuer": issuer.as_str(),
        "authorization_endpoint": issuer.join("/oauth/authorize"),
        "token_endpoint": issuer.join("/oauth/token"),
        "revocation_endpoint": issuer.join("/oauth/revoke"),
        "introspection_endpoint": issuer.join("/oauth/introspect"),
        "device_authorization_endpoint": issuer.join("/oauth/device_authorization"),
        // The keys that verify Keygate-Assertion (SPEC §11).
        "jwks_uri": issuer.join(crate::assertion::jwks::PATH),
                "scopes_supported": catalogue.entries().iter().map(|e| e.scope.as_str()).collect::<Vec<_>>(),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", crate::oauth::device::GRANT_TYPE],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": auth_methods,
        "revocation_endpoint_auth_methods_supported": auth_methods,
        "introspection_endpoint_auth_methods_supported": auth_methods,
        "authorization_response_iss_parameter_supported": true,
        "service_documentation": issuer.join("/api/openapi.json"),
    })
}

/// Where OpenID Connect clients look first (their default discovery).
pub const OPENID_PATH: &str = "/.well-known/openid-configuration";

/// keygate is an OAuth 2.0 server, not an OpenID Provider: a client that
/// looks for OpenID discovery is told, in JSON, where the RFC 8414
/// document is (openid-client: `discovery(…, { algorithm: 'oauth2' })`).
pub async fn not_an_openid_provider(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let metadata = state.config.public_url.join(PATH);
    let message = format!(
        "keygate is an OAuth 2.0 authorization server, not an OpenID Provider: it issues no ID tokens. \
         Its metadata (RFC 8414) is at {metadata}; with openid-client, discover with {{ algorithm: 'oauth2' }}."
    );
    let extra = [("oauth_authorization_server", serde_json::Value::from(metadata))];
    crate::error::json_error(StatusCode::NOT_FOUND, "not_found", &message, &crate::request_id::of(&req), extra)
}

pub async fn document(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(body(&state.config.public_url, &state.gate.api.current().catalogue))
}
