//! The seller API behind the gate. Each route is declared once, with the
//! scope it needs; that one declaration registers the handler and feeds the
//! gate's scope check (and, later, the OpenAPI document).

pub mod inventory;
pub mod json;
pub mod openapi;
pub mod orders;
pub mod products;
pub mod reports;
pub mod token;

use std::sync::OnceLock;

use actix_web::dev::ResourceDef;
use actix_web::http::Method;
use actix_web::web;

use crate::tokens::Scope;

/// One API operation: the single declaration that registers the handler,
/// gives the gate its scope and the OpenAPI document its entry.
pub struct ApiRoute {
    pub method: &'static str,
    pub path: &'static str,
    /// The scope the route needs; `None` needs only a valid token.
    pub scope: Option<Scope>,
    pub summary: &'static str,
    /// Query parameters: (name, description).
    pub query: &'static [(&'static str, &'static str)],
    pub body: Option<openapi::SchemaDoc>,
    /// The success status and what it returns.
    pub ok: (u16, openapi::SchemaDoc),
}

const PAGE: &[(&str, &str)] =
    &[("limit", "Rows per page, 1–200 (default 50)."), ("cursor", "The `next_cursor` of the previous page.")];

macro_rules! api_routes {
    ($( $method:ident $path:literal => $handler:path { $($field:ident: $value:expr),* $(,)? } )*) => {
        pub const ROUTES: &[ApiRoute] = &[ $( ApiRoute { method: stringify!($method), path: $path, $($field: $value),* } ),* ];

        /// Registers every route of `ROUTES` inside the `/api` scope.
        pub fn configure(cfg: &mut web::ServiceConfig) {
            $( cfg.route(scoped($path), web::method(Method::$method).to($handler)); )*
            cfg.route(scoped(openapi::PATH), web::get().to(openapi::serve));
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
        query: &[("limit", PAGE[0].1), ("cursor", PAGE[1].1), ("status", "Only orders in this status: pending, paid, shipped or cancelled.")],
        body: None, ok: (200, list::<crate::shop::Order>()),
    }
    GET "/api/v1/orders/{id}" => orders::show {
        scope: Some(Scope::OrdersRead), summary: "One order with its items", query: &[], body: None, ok: (200, one::<crate::shop::Order>()),
    }
    POST "/api/v1/orders" => orders::create {
        scope: Some(Scope::OrdersWrite), summary: "Create an order priced from the catalogue", query: &[],
        body: Some(one::<orders::CreateOrder>()), ok: (201, one::<crate::shop::Order>()),
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
        body: Some(one::<products::CreateProduct>()), ok: (201, one::<crate::shop::Product>()),
    }
    PATCH "/api/v1/products/{id}" => products::update {
        scope: Some(Scope::ProductsWrite), summary: "Change a product's name, description, price or active flag", query: &[],
        body: Some(one::<products::UpdateProduct>()), ok: (200, one::<crate::shop::Product>()),
    }
    GET "/api/v1/inventory" => inventory::list {
        scope: Some(Scope::InventoryRead), summary: "Stock levels per SKU", query: PAGE, body: None,
        ok: (200, list::<crate::shop::StockLevel>()),
    }
    PUT "/api/v1/inventory/{sku}" => inventory::set {
        scope: Some(Scope::InventoryWrite), summary: "Set the stock of a SKU", query: &[],
        body: Some(one::<inventory::SetStock>()), ok: (200, one::<crate::shop::StockLevel>()),
    }
    GET "/api/v1/reports/sales" => reports::sales {
        scope: Some(Scope::ReportsRead), summary: "Sales totals computed from orders",
        query: &[("from", "First day, YYYY-MM-DD (default: 29 days before `to`)."), ("to", "Last day, included, YYYY-MM-DD (default: today).")],
        body: None, ok: (200, one::<reports::SalesReport>()),
    }
}

/// A route path relative to the `/api` scope the gate wraps.
fn scoped(path: &'static str) -> &'static str {
    path.strip_prefix("/api").expect("API routes live under /api")
}

/// What the gate knows about a request before routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteMatch {
    /// A declared operation and the scope it needs.
    Operation(Option<Scope>),
    /// Open to anyone: the OpenAPI document.
    Public,
    /// The path exists with another method.
    MethodNotAllowed,
    NotFound,
}

pub fn match_route(method: &Method, path: &str) -> RouteMatch {
    static DEFS: OnceLock<Vec<(ResourceDef, &'static ApiRoute)>> = OnceLock::new();
    if path == openapi::PATH && method == Method::GET {
        return RouteMatch::Public;
    }
    let defs = DEFS.get_or_init(|| ROUTES.iter().map(|r| (ResourceDef::new(r.path), r)).collect());
    let mut path_known = false;
    for (def, route) in defs {
        if def.is_match(path) {
            if route.method == method.as_str() {
                return RouteMatch::Operation(route.scope);
            }
            path_known = true;
        }
    }
    if path_known {
        RouteMatch::MethodNotAllowed
    } else {
        RouteMatch::NotFound
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_resolve_to_their_declared_scope() {
        assert_eq!(match_route(&Method::GET, "/api/v1/token"), RouteMatch::Operation(None));
        assert_eq!(match_route(&Method::DELETE, "/api/v1/token"), RouteMatch::MethodNotAllowed);
        assert_eq!(match_route(&Method::GET, "/api/v1/nothing"), RouteMatch::NotFound);
        assert_eq!(match_route(&Method::GET, "/api/v1/orders/12"), RouteMatch::Operation(Some(Scope::OrdersRead)));
        assert_eq!(match_route(&Method::POST, "/api/v1/orders"), RouteMatch::Operation(Some(Scope::OrdersWrite)));
        assert_eq!(
            match_route(&Method::PUT, "/api/v1/inventory/MUG-1"),
            RouteMatch::Operation(Some(Scope::InventoryWrite))
        );
    }
}
