//! `GET /.well-known/oauth-authorization-server` (RFC 8414): where
//! everything is, and what this server supports.

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::state::AppState;
use crate::tokens::Scope;

pub const PATH: &str = "/.well-known/oauth-authorization-server";

pub fn body(issuer: &crate::config::PublicUrl) -> serde_json::Value {
    let auth_methods = ["client_secret_basic", "client_secret_post", "none"];
    json!({
        "issuer": issuer.as_str(),
        "authorization_endpoint": issuer.join("/oauth/authorize"),
        "token_endpoint": issuer.join("/oauth/token"),
        "revocation_endpoint": issuer.join("/oauth/revoke"),
        "introspection_endpoint": issuer.join("/oauth/introspect"),
        "scopes_supported": Scope::ALL.map(Scope::as_str),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": auth_methods,
        "revocation_endpoint_auth_methods_supported": auth_methods,
        "introspection_endpoint_auth_methods_supported": auth_methods,
        "authorization_response_iss_parameter_supported": true,
        "service_documentation": issuer.join("/api/openapi.json"),
    })
}

pub async fn document(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(body(&state.config.public_url))
}
