//! `GET /api/v1/token`: the calling token itself.

use actix_web::HttpResponse;
use serde::Serialize;
use utoipa::ToSchema;

use crate::gate::error::rfc3339;
use crate::gate::Authenticated;

#[derive(Serialize, ToSchema)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub seller: i64,
    pub scopes: Vec<&'static str>,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub rotation_due_at: String,
}

pub async fn show(auth: Authenticated) -> HttpResponse {
    let token = &auth.token;
    HttpResponse::Ok().json(TokenInfo {
        id: token.public_id.clone(),
        name: token.name.clone(),
        kind: token.kind.clone(),
        seller: auth.seller_id,
        scopes: auth.scopes.iter().map(|s| s.as_str()).collect(),
        created_at: rfc3339(token.created_at),
        expires_at: token.expires_at.map(rfc3339),
        rotation_due_at: rfc3339(token.rotation_due_at()),
    })
}
