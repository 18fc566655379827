//! `/api/v1/orders`: list, read, create.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::json::{list_response, ApiError, Errors};
use super::products::{check_int, check_sku, check_text};
use super::rules;
use crate::accounts::Email;
use crate::gate::Authenticated;
use crate::shop::{self, NewOrderLine, ShopError, ORDER_STATUSES};
use crate::state::AppState;

pub const MAX_LINES: usize = rules::MAX_LINES;
pub const MAX_LINE_QUANTITY: i64 = rules::LINE_QUANTITY.max;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateOrder {
    customer_email: String,
    #[serde(default = "pending")]
    status: String,
    items: Vec<Line>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Line {
    sku: String,
    #[serde(deserialize_with = "super::json::whole")]
    quantity: i64,
}

impl CreateOrder {
    /// The body's JSON Schema: the rules `create` checks.
    pub fn schema() -> Value {
        json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["customer_email", "items"],
            "properties": {
                "customer_email": rules::CUSTOMER_EMAIL.schema(),
                "status": rules::one_of(ORDER_STATUSES, "the order's status (default pending)"),
                "items": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": rules::MAX_LINES,
                    "description": "the order's lines, priced from the catalogue; every SKU must be a product of this seller",
                    "items": {
                        "type": "object",
                        "additionalProperties": false,
                        "required": ["sku", "quantity"],
                        "properties": {"sku": rules::SKU.schema(), "quantity": rules::LINE_QUANTITY.schema()},
                    },
                },
            },
        })
    }
}

fn pending() -> String {
    "pending".to_owned()
}

fn check_status(errors: &Errors, field: &str, status: &str) -> Result<(), ApiError> {
    if !ORDER_STATUSES.contains(&status) {
        return Err(errors.unprocessable(field, format!("status is one of {}", ORDER_STATUSES.join(", "))));
    }
    Ok(())
}

pub async fn list(req: HttpRequest, auth: Authenticated, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let errors = Errors::from_request(&req);
    let query = errors.query(&req, &["limit", "cursor", "status"])?;
    let (limit, before) = errors.pagination(&query)?;
    let status = query.get("status").cloned();
    if let Some(status) = &status {
        check_status(&errors, "status", status)?;
    }
    let page = shop::PageOf { seller_id: auth.seller_id(), before, limit };
    let page = state.db.read(shop::OrdersPage { page, status }).await.map_err(|e| errors.db(e))?;
    Ok(list_response(&page.rows, page.more, page.rows.last().map(|o| o.id)))
}

pub async fn show(
    req: HttpRequest,
    auth: Authenticated,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let errors = Errors::from_request(&req);
    let id: i64 = path.parse().map_err(|_| errors.not_found("order"))?;
    let order = state.db.read(shop::OneOrder { seller_id: auth.seller_id(), id }).await.map_err(|e| errors.db(e))?;
    order.map(|o| HttpResponse::Ok().json(o)).ok_or_else(|| errors.not_found("order"))
}

pub async fn create(
    req: HttpRequest,
    auth: Authenticated,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let errors = Errors::from_request(&req);
    let input: CreateOrder = errors.json(&req, &body)?;
    check_text(&errors, "customer_email", &rules::CUSTOMER_EMAIL, &input.customer_email)?;
    let email = Email::parse(&input.customer_email).map_err(|e| errors.unprocessable("customer_email", e))?;
    check_status(&errors, "status", &input.status)?;
    if input.items.is_empty() || input.items.len() > MAX_LINES {
        return Err(errors.unprocessable("items", format!("an order has 1 to {MAX_LINES} items")));
    }
    for (i, line) in input.items.iter().enumerate() {
        check_sku(&errors, &format!("items[{i}].sku"), &line.sku)?;
        check_int(&errors, &format!("items[{i}].quantity"), &rules::LINE_QUANTITY, line.quantity)?;
    }
    let lines: Vec<NewOrderLine> =
        input.items.into_iter().map(|l| NewOrderLine { sku: l.sku, quantity: l.quantity }).collect();
    let seller = auth.seller_id();
    let status = input.status;
    let created =
        state.db.call(move |conn| shop::create_order(conn, seller, email.as_str(), &status, &lines, None)).await;
    match created {
        Ok(order) => Ok(HttpResponse::Created()
            .insert_header((header::LOCATION, format!("/api/v1/orders/{}", order.id)))
            .json(order)),
        Err(ShopError::UnknownSku(sku)) => Err(errors.unprocessable("items", format!("no product has SKU `{sku}`"))),
        Err(ShopError::Db(e)) => Err(errors.db(e)),
        Err(e) => Err(errors.internal(e)),
    }
}
