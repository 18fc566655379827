//! The seller API behind the gate. Each route is declared once, with the
//! scope it needs; that one declaration registers the handler, gives the
//! gate its route table (startup hands it over) and the OpenAPI document
//! its entry.

pub mod inventory;
pub mod json;
pub mod oauth_doc;
pub mod openapi;
pub mod orders;
pub mod products;
pub mod reports;
pub mod rules;
pub mod token;

use actix_web::http::Method;
use actix_web::web;

use crate::gate::{RouteEntry, RouteTable};
use crate::tokens::Scope;

/// One API operation: the single declaration that registers the handler,
/// gives the gate its scope and the OpenAPI document its entry.
pub struct ApiRoute {
    pub method: &'static str,
    pub path: &'static str,
    /// The scope the route needs; `None` needs only a valid token.
    pub scope: Option<Scope>,
    pub summary: &'static str,
    /// Query parameters: (name, the rule the handler checks it with).
    pub query: &'static [(&'static str, Param)],
    pub body: Option<openapi::Body>,
    /// The success status and what it returns.
    pub ok: (u16, openapi::SchemaDoc),
}

/// A query or path parameter's rule, for the document.
pub enum Param {
    Text(&'static rules::Text),
    Int(&'static rules::Int),
    /// One of these values; what it means.
    OneOf(&'static [&'static str], &'static str),
}

const PAGE: &[(&str, Param)] = &[("limit", Param::Int(&rules::LIMIT)), ("cursor", Param::Text(&rules::CURSOR))];
const ORDERS_QUERY: &[(&str, Param)] = &[
    ("limit", Param::Int(&rules::LIMIT)),
    ("cursor", Param::Text(&rules::CURSOR)),
    ("status", Param::OneOf(crate::shop::ORDER_STATUSES, "only orders in this status")),
];
const REPORT_QUERY: &[(&str, Param)] = &[("from", Param::Text(&rules::DAY)), ("to", Param::Text(&rules::DAY))];

macro_rules! api_routes {
    ($( $method:ident $path:literal => $handler:path { $($field:ident: $value:expr),* $(,)? } )*) => {
        pub const ROUTES: &[ApiRoute] = &[ $( ApiRoute { method: stringify!($method), path: $path, $($field: $value),* } ),* ];

        /// Registers every route of `ROUTES` inside the `/api` scope.
        pub fn configure(cfg: &mut web::ServiceConfig) {
            $( cfg.route(scoped($path), web::method(Method::$method).to($handler)); )*
            cfg.route(scoped(openapi::PATH), web::get().to(openapi::serve));
            cfg.route(scoped(WRONG_TOKEN_ENDPOINT), web::to(wrong_token_endpoint));
        }
    };
}

use openapi::{list, one};

api_routes! {
    GET "/api/v1/token" => token::show {
        scope: None, summary: "The calling token itself", query: &[], body: None, ok: (200, one::<token::TokenInfo>()),
    }
    GET "/api/v1/orders" => orders::list {
        scope: Some(Scope::OrdersRead), summary: "List orders, newest first",
        query: ORDERS_QUERY,
        body: None, ok: (200, list::<crate::shop::Order>()),
    }
    GET "/api/v1/orders/{id}" => orders::show {
        scope: Some(Scope::OrdersRead), summary: "One order with its items", query: &[], body: None, ok: (200, one::<crate::shop::Order>()),
    }
    POST "/api/v1/orders" => orders::create {
        scope: Some(Scope::OrdersWrite), summary: "Create an order priced from the catalogue", query: &[],
        body: Some(openapi::Body { name: "CreateOrder", schema: orders::CreateOrder::schema }), ok: (201, one::<crate::shop::Order>()),
    }
    GET "/api/v1/products" => products::list {
        scope: Some(Scope::ProductsRead), summary: "List products, newest first", query: PAGE, body: None,
        ok: (200, list::<crate::shop::Product>()),
    }
    GET "/api/v1/products/{id}" => products::show {
        scope: Some(Scope::ProductsRead), summary: "One product", query: &[], body: None, ok: (200, one::<crate::shop::Product>()),
    }
    POST "/api/v1/products" => products::create {
        scope: Some(Scope::ProductsWrite), summary: "Create a product", query: &[],
        body: Some(openapi::Body { name: "CreateProduct", schema: products::CreateProduct::schema }), ok: (201, one::<crate::shop::Product>()),
    }
    PATCH "/api/v1/products/{id}" => products::update {
        scope: Some(Scope::ProductsWrite), summary: "Change a product's name, description, price or active flag", query: &[],
        body: Some(openapi::Body { name: "UpdateProduct", schema: products::UpdateProduct::schema }), ok: (200, one::<crate::shop::Product>()),
    }
    GET "/api/v1/inventory" => inventory::list {
        scope: Some(Scope::InventoryRead), summary: "Stock levels per SKU", query: PAGE, body: None,
        ok: (200, list::<crate::shop::StockLevel>()),
    }
    PUT "/api/v1/inventory/{sku}" => inventory::set {
        scope: Some(Scope::InventoryWrite), summary: "Set the stock of a SKU", query: &[],
        body: Some(openapi::Body { name: "SetStock", schema: inventory::SetStock::schema }), ok: (200, one::<crate::shop::StockLevel>()),
    }
    GET "/api/v1/reports/sales" => reports::sales {
        scope: Some(Scope::ReportsRead), summary: "Sales totals computed from orders",
        query: REPORT_QUERY,
        body: None, ok: (200, one::<reports::SalesReport>()),
    }
}

/// A route path relative to the `/api` scope the gate wraps.
fn scoped(path: &'static str) -> &'static str {
    path.strip_prefix("/api").expect("API routes live under /api")
}

/// Source document 000's pitfall: integrators post to `/api/oauth/token`.
pub const WRONG_TOKEN_ENDPOINT: &str = "/api/oauth/token";

/// The wrong endpoint says where the right one is (404, JSON).
async fn wrong_token_endpoint(req: actix_web::HttpRequest) -> actix_web::HttpResponse {
    crate::error::json_error(
        actix_web::http::StatusCode::NOT_FOUND,
        "not_found",
        "There is no token endpoint under /api: the OAuth token endpoint is /oauth/token (POST, form-encoded).",
        &crate::request_id::of(&req),
        [("token_endpoint", "/oauth/token".into())],
    )
}

/// The gate's route table: every operation with its scope, and what is
/// open to anyone (the OpenAPI document, the wrong-endpoint answer).
pub fn route_table() -> RouteTable {
    let entries = ROUTES.iter().map(|route| RouteEntry {
        method: Method::from_bytes(route.method.as_bytes()).unwrap_or(Method::GET),
        path: route.path,
        scope: route.scope,
    });
    RouteTable::new(
        entries,
        &[(Method::GET, openapi::PATH), (Method::GET, WRONG_TOKEN_ENDPOINT), (Method::POST, WRONG_TOKEN_ENDPOINT)],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::gate::RouteMatch;

    #[test]
    fn routes_resolve_to_their_declared_scope() {
        let table = route_table();
        assert_eq!(table.matches(&Method::GET, "/api/v1/token"), RouteMatch::Operation(None));
        assert_eq!(
            table.matches(&Method::DELETE, "/api/v1/token"),
            RouteMatch::MethodNotAllowed { allow: "GET".into() }
        );
        assert_eq!(table.matches(&Method::GET, "/api/v1/nothing"), RouteMatch::NotFound);
        assert_eq!(table.matches(&Method::GET, "/api/v1/orders/12"), RouteMatch::Operation(Some(Scope::OrdersRead)));
        assert_eq!(table.matches(&Method::POST, "/api/v1/orders"), RouteMatch::Operation(Some(Scope::OrdersWrite)));
        assert_eq!(
            table.matches(&Method::PUT, "/api/v1/inventory/MUG-1"),
            RouteMatch::Operation(Some(Scope::InventoryWrite))
        );
        assert_eq!(table.matches(&Method::GET, "/api/openapi.json"), RouteMatch::Public);
        // Every declared method parses.
        assert!(ROUTES.iter().all(|r| Method::from_bytes(r.method.as_bytes()).is_ok()));
    }
}
