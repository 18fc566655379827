//! `/api/v1/inventory`: stock levels per SKU.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use utoipa::ToSchema;

use super::json::{list_response, ApiError, Errors};
use super::products::check_sku;
use crate::gate::Authenticated;
use crate::shop::{self, ShopError};
use crate::state::AppState;

pub const MAX_QUANTITY: i64 = 10_000_000;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetStock {
    quantity: i64,
    #[serde(default = "main_location")]
    location: String,
}

fn main_location() -> String {
    "main".to_owned()
}

pub async fn list(req: HttpRequest, auth: Authenticated, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let errors = Errors::from_request(&req);
    let query = errors.query(&req, &["limit", "cursor"])?;
    let (limit, before) = errors.pagination(&query)?;
    let page = shop::PageOf { seller_id: auth.seller_id(), before, limit };
    let page = state.db.read(shop::InventoryPage(page)).await.map_err(|e| errors.db(e))?;
    Ok(list_response(&page.rows, page.more, page.rows.last().map(|s| s.id)))
}

pub async fn set(
    req: HttpRequest,
    auth: Authenticated,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let errors = Errors::from_request(&req);
    let sku = path.into_inner();
    check_sku(&errors, "sku", &sku)?;
    let input: SetStock = errors.json(&req, &body)?;
    if !(0..=MAX_QUANTITY).contains(&input.quantity) {
        return Err(errors.unprocessable("quantity", format!("quantity must be between 0 and {MAX_QUANTITY}")));
    }
    let location = input.location.trim().to_owned();
    if location.is_empty() || location.chars().count() > 64 {
        return Err(errors.unprocessable("location", "location is 1–64 characters"));
    }
    let seller = auth.seller_id();
    let set = state.db.call(move |conn| shop::set_stock(conn, seller, &sku, input.quantity, &location)).await;
    match set {
        Ok(level) => Ok(HttpResponse::Ok().json(level)),
        Err(ShopError::UnknownSku(_)) => Err(errors.not_found("product")),
        Err(ShopError::Db(e)) => Err(errors.db(e)),
        Err(e) => Err(errors.internal(e)),
    }
}
