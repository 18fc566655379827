//! The seller API behind the gate. Each route is declared once, with the
//! scope it needs; that one declaration registers the handler and feeds the
//! gate's scope check (and, later, the OpenAPI document).

pub mod inventory;
pub mod json;
pub mod orders;
pub mod products;
pub mod reports;
pub mod token;

use std::sync::OnceLock;

use actix_web::dev::ResourceDef;
use actix_web::http::Method;
use actix_web::web;

use crate::tokens::Scope;

/// One API operation.
pub struct ApiRoute {
    pub method: &'static str,
    pub path: &'static str,
    pub scope: Option<Scope>,
}

macro_rules! api_routes {
    ($( $method:ident $path:literal, $scope:expr => $handler:path; )*) => {
        pub const ROUTES: &[ApiRoute] = &[ $( ApiRoute { method: stringify!($method), path: $path, scope: $scope } ),* ];

        /// Registers every route of `ROUTES` inside the `/api` scope.
        pub fn configure(cfg: &mut web::ServiceConfig) {
            $( cfg.route(scoped($path), web::method(Method::$method).to($handler)); )*
        }
    };
}

api_routes! {
    GET "/api/v1/token", None => token::show;
    GET "/api/v1/orders", Some(Scope::OrdersRead) => orders::list;
    GET "/api/v1/orders/{id}", Some(Scope::OrdersRead) => orders::show;
    POST "/api/v1/orders", Some(Scope::OrdersWrite) => orders::create;
    GET "/api/v1/products", Some(Scope::ProductsRead) => products::list;
    GET "/api/v1/products/{id}", Some(Scope::ProductsRead) => products::show;
    POST "/api/v1/products", Some(Scope::ProductsWrite) => products::create;
    PATCH "/api/v1/products/{id}", Some(Scope::ProductsWrite) => products::update;
    GET "/api/v1/inventory", Some(Scope::InventoryRead) => inventory::list;
    PUT "/api/v1/inventory/{sku}", Some(Scope::InventoryWrite) => inventory::set;
    GET "/api/v1/reports/sales", Some(Scope::ReportsRead) => reports::sales;
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
    /// The path exists with another method.
    MethodNotAllowed,
    NotFound,
}

pub fn match_route(method: &Method, path: &str) -> RouteMatch {
    static DEFS: OnceLock<Vec<(ResourceDef, &'static ApiRoute)>> = OnceLock::new();
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
