//! `GET /api/v1/token`: the calling credential itself.

use actix_web::http::header::ContentType;
use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use crate::api::json::{ApiError, Errors};
use crate::gate::{Authenticated, Gate};
use crate::time::rfc3339;
use crate::tokens::scopes::ScopeCatalogue;
use crate::tokens::Credential;

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
