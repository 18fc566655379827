//! `/api/v1/inventory`: stock levels per SKU.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::json::{list_response, ApiError, Errors};
use super::products::{check_int, check_sku, check_text, trimmed};
use super::rules;
use crate::gate::Authenticated;
use crate::shop::{self, ShopError};
use crate::state::AppState;

pub const MAX_QUANTITY: i64 = rules::STOCK_QUANTITY.max;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetStock {
    #[serde(deserialize_with = "super::json::whole")]
    quantity: i64,
    #[serde(default = "main_location")]
    location: String,
}

impl SetStock {
    /// The body's JSON Schema: the rules `set` checks.
    pub fn schema() -> Value {
        json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["quantity"],
            "properties": {
                "quantity": rules::STOCK_QUANTITY.schema(),
                "location": rules::LOCATION.schema(),
            },
        })
    }
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
    check_int(&errors, "quantity", &rules::STOCK_QUANTITY, input.quantity)?;
    check_text(&errors, "location", &rules::LOCATION, &input.location)?;
    let location = trimmed(&input.location).to_owned();
    let seller = auth.seller_id();
    let set = state.db.call(move |conn| shop::set_stock(conn, seller, &sku, input.quantity, &location)).await;
    match set {
        Ok(level) => Ok(HttpResponse::Ok().json(level)),
        Err(ShopError::UnknownSku(_)) => Err(errors.not_found("product")),
        Err(ShopError::Db(e)) => Err(errors.db(e)),
        Err(e) => Err(errors.internal(e)),
    }
}
