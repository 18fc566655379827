//! `/api/v1/products`: list, read, create, update.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::json::{list_response, ApiError, Errors};
use super::rules;
use crate::gate::Authenticated;
use crate::shop::{self, NewProduct, ProductChanges, ShopError};
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateProduct {
    sku: String,
    name: String,
    #[serde(default)]
    description: String,
    #[serde(deserialize_with = "super::json::whole")]
    price_cents: i64,
    currency: String,
    #[serde(default = "yes")]
    active: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateProduct {
    #[serde(default, deserialize_with = "present")]
    name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    description: Option<String>,
    #[serde(default, deserialize_with = "super::json::some_whole")]
    price_cents: Option<i64>,
    #[serde(default, deserialize_with = "present")]
    active: Option<bool>,
}

/// A field that may be left out but, when sent, is not `null` (the
/// document says so; `null` is refused as the wrong type).
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}

impl CreateProduct {
    /// The body's JSON Schema: the rules `create` checks.
    pub fn schema() -> Value {
        json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["sku", "name", "price_cents", "currency"],
            "properties": {
                "sku": rules::SKU.schema(),
                "name": rules::NAME.schema(),
                "description": rules::DESCRIPTION.schema(),
                "price_cents": rules::PRICE_CENTS.schema(),
                "currency": rules::CURRENCY.schema(),
                "active": {"type": "boolean", "description": "offered for sale (default true)"},
            },
        })
    }
}

impl UpdateProduct {
    /// The body's JSON Schema: at least one field, each as `create` takes it.
    pub fn schema() -> Value {
        json!({
            "type": "object",
            "additionalProperties": false,
            "minProperties": 1,
            "properties": {
                "name": rules::NAME.schema(),
                "description": rules::DESCRIPTION.schema(),
                "price_cents": rules::PRICE_CENTS.schema(),
                "active": {"type": "boolean"},
            },
        })
    }
}

pub const MAX_PRICE_CENTS: i64 = rules::PRICE_CENTS.max;

pub fn check_sku(errors: &Errors, field: &str, sku: &str) -> Result<(), ApiError> {
    check_text(errors, field, &rules::SKU, sku)
}

/// A string field against its rule (the one the OpenAPI document publishes).
pub fn check_text(errors: &Errors, field: &str, rule: &rules::Text, value: &str) -> Result<(), ApiError> {
    if !rule.accepts(value) {
        return Err(errors.unprocessable(field, rule.says));
    }
    Ok(())
}

/// A number field against its rule.
pub fn check_int(errors: &Errors, field: &str, rule: &rules::Int, value: i64) -> Result<(), ApiError> {
    if !rule.accepts(value) {
        return Err(errors.unprocessable(field, rule.says));
    }
    Ok(())
}

fn check_name(errors: &Errors, name: &str) -> Result<(), ApiError> {
    check_text(errors, "name", &rules::NAME, name)
}

fn check_description(errors: &Errors, description: &str) -> Result<(), ApiError> {
    check_text(errors, "description", &rules::DESCRIPTION, description)
}

fn check_price(errors: &Errors, price_cents: i64) -> Result<(), ApiError> {
    check_int(errors, "price_cents", &rules::PRICE_CENTS, price_cents)
}

/// `value` without the ASCII spaces around it, as it is stored.
pub fn trimmed(value: &str) -> &str {
    value.trim_matches(rules::SPACE)
}

fn parse_id(errors: &Errors, raw: &str) -> Result<i64, ApiError> {
    raw.parse().map_err(|_| errors.not_found("product"))
}

pub async fn list(req: HttpRequest, auth: Authenticated, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let errors = Errors::from_request(&req);
    let query = errors.query(&req, &["limit", "cursor"])?;
    let (limit, before) = errors.pagination(&query)?;
    let page = shop::PageOf { seller_id: auth.seller_id(), before, limit };
    let page = state.db.read(shop::ProductsPage(page)).await.map_err(|e| errors.db(e))?;
    Ok(list_response(&page.rows, page.more, page.rows.last().map(|p| p.id)))
}

pub async fn show(
    req: HttpRequest,
    auth: Authenticated,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let errors = Errors::from_request(&req);
    let id = parse_id(&errors, &path)?;
    let product =
        state.db.read(shop::OneProduct { seller_id: auth.seller_id(), id }).await.map_err(|e| errors.db(e))?;
    product.map(|p| HttpResponse::Ok().json(p)).ok_or_else(|| errors.not_found("product"))
}

pub async fn create(
    req: HttpRequest,
    auth: Authenticated,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let errors = Errors::from_request(&req);
    let input: CreateProduct = errors.json(&req, &body)?;
    check_sku(&errors, "sku", &input.sku)?;
    check_name(&errors, &input.name)?;
    check_description(&errors, &input.description)?;
    check_price(&errors, input.price_cents)?;
    check_text(&errors, "currency", &rules::CURRENCY, &input.currency)?;
    let seller = auth.seller_id();
    let created = state
        .db
        .call(move |conn| {
            let new = NewProduct {
                sku: &input.sku,
                name: trimmed(&input.name),
                description: &input.description,
                price_cents: input.price_cents,
                currency: &input.currency,
                active: input.active,
            };
            shop::create_product(conn, seller, &new)
        })
        .await;
    match created {
        Ok(product) => Ok(HttpResponse::Created()
            .insert_header((header::LOCATION, format!("/api/v1/products/{}", product.id)))
            .json(product)),
        Err(ShopError::DuplicateSku(sku)) => {
            Err(errors.conflict("sku", format!("a product with SKU `{sku}` already exists")))
        }
        Err(ShopError::Db(e)) => Err(errors.db(e)),
        Err(e) => Err(errors.internal(e)),
    }
}

pub async fn update(
    req: HttpRequest,
    auth: Authenticated,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let errors = Errors::from_request(&req);
    let id = parse_id(&errors, &path)?;
    let input: UpdateProduct = errors.json(&req, &body)?;
    if input.name.is_none() && input.description.is_none() && input.price_cents.is_none() && input.active.is_none() {
        return Err(errors.unprocessable("body", "send at least one of name, description, price_cents, active"));
    }
    if let Some(name) = &input.name {
        check_name(&errors, name)?;
    }
    if let Some(description) = &input.description {
        check_description(&errors, description)?;
    }
    if let Some(price) = input.price_cents {
        check_price(&errors, price)?;
    }
    let seller = auth.seller_id();
    let changes = ProductChanges {
        name: input.name.map(|n| trimmed(&n).to_owned()),
        description: input.description,
        price_cents: input.price_cents,
        active: input.active,
    };
    let updated =
        state.db.run(move |conn| shop::update_product(conn, seller, id, changes)).await.map_err(|e| errors.db(e))?;
    updated.map(|p| HttpResponse::Ok().json(p)).ok_or_else(|| errors.not_found("product"))
}
