//! `/api/v1/products`: list, read, create, update.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use utoipa::ToSchema;

use super::json::{list_response, ApiError, Errors};
use crate::gate::Authenticated;
use crate::shop::{self, NewProduct, ProductChanges, ShopError};
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProduct {
    sku: String,
    name: String,
    #[serde(default)]
    description: String,
    price_cents: i64,
    currency: String,
    #[serde(default = "yes")]
    active: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProduct {
    name: Option<String>,
    description: Option<String>,
    price_cents: Option<i64>,
    active: Option<bool>,
}

pub const MAX_PRICE_CENTS: i64 = 100_000_000;

pub fn check_sku(errors: &Errors, field: &str, sku: &str) -> Result<(), ApiError> {
    if sku.is_empty() || sku.len() > 64 || !sku.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
        return Err(errors.unprocessable(field, "a SKU is 1–64 characters of letters, digits, `-`, `_` and `.`"));
    }
    Ok(())
}

fn check_name(errors: &Errors, name: &str) -> Result<(), ApiError> {
    match name.trim().chars().count() {
        0 => Err(errors.unprocessable("name", "name must not be empty")),
        n if n > 200 => Err(errors.unprocessable("name", "name is limited to 200 characters")),
        _ => Ok(()),
    }
}

fn check_description(errors: &Errors, description: &str) -> Result<(), ApiError> {
    if description.chars().count() > 2_000 {
        return Err(errors.unprocessable("description", "description is limited to 2000 characters"));
    }
    Ok(())
}

fn check_price(errors: &Errors, price_cents: i64) -> Result<(), ApiError> {
    if !(0..=MAX_PRICE_CENTS).contains(&price_cents) {
        return Err(errors.unprocessable("price_cents", format!("price_cents must be between 0 and {MAX_PRICE_CENTS}")));
    }
    Ok(())
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
    if input.currency.len() != 3 || !input.currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(errors.unprocessable("currency", "currency is an ISO 4217 code such as EUR"));
    }
    let seller = auth.seller_id();
    let created = state
        .db
        .call(move |conn| {
            let new = NewProduct {
                sku: &input.sku,
                name: input.name.trim(),
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
        name: input.name.map(|n| n.trim().to_owned()),
        description: input.description,
        price_cents: input.price_cents,
        active: input.active,
    };
    let updated =
        state.db.run(move |conn| shop::update_product(conn, seller, id, changes)).await.map_err(|e| errors.db(e))?;
    updated.map(|p| HttpResponse::Ok().json(p)).ok_or_else(|| errors.not_found("product"))
}
