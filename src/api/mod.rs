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

/// One API operation: the single declaration that registers the handler,
/// gives the gate its scope and the OpenAPI document its entry.
pub struct ApiRoute {
    pub method: &'static str,
    pub path: &'static str,
    /// The scope the route needs (a name of `shop::SCOPES`); `None` needs
    /// only a valid token.
    pub scope: Option<&'static str>,
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

        /// Registers every route of `ROUTES` inside the `/api` scope: the
        /// demo API, with keygate's own routes.
        pub fn configure(cfg: &mut web::ServiceConfig) {
            $( cfg.route(scoped($path), web::method(Method::$method).to($handler)); )*
            configure_own(cfg);
        }
    };
}

use openapi::{list, one};

api_routes! {
    GET "/api/v1/token" => token::show {
        scope: None, summary: "The calling token itself", query: &[], body: None, ok: (200, one::<token::TokenInfo>()),
    }
    POST "/api/v1/token/rotate" => token::rotate {
        scope: None, summary: "The calling API token rotates itself: the new token string, once", query: &[], body: None,
        ok: (200, one::<token::RotatedToken>()),
    }
    GET "/api/v1/orders" => orders::list {
        scope: Some("orders:read"), summary: "List orders, newest first",
        query: ORDERS_QUERY,
        body: None, ok: (200, list::<crate::shop::Order>()),
    }
    GET "/api/v1/orders/{id}" => orders::show {
        scope: Some("orders:read"), summary: "One order with its items", query: &[], body: None, ok: (200, one::<crate::shop::Order>()),
    }
    POST "/api/v1/orders" => orders::create {
        scope: Some("orders:write"), summary: "Create an order priced from the catalogue", query: &[],
        body: Some(openapi::Body { name: "CreateOrder", schema: orders::CreateOrder::schema }), ok: (201, one::<crate::shop::Order>()),
    }
    GET "/api/v1/products" => products::list {
        scope: Some("products:read"), summary: "List products, newest first", query: PAGE, body: None,
        ok: (200, list::<crate::shop::Product>()),
    }
    GET "/api/v1/products/{id}" => products::show {
        scope: Some("products:read"), summary: "One product", query: &[], body: None, ok: (200, one::<crate::shop::Product>()),
    }
    POST "/api/v1/products" => products::create {
        scope: Some("products:write"), summary: "Create a product", query: &[],
        body: Some(openapi::Body { name: "CreateProduct", schema: products::CreateProduct::schema }), ok: (201, one::<crate::shop::Product>()),
    }
    PATCH "/api/v1/products/{id}" => products::update {
        scope: Some("products:write"), summary: "Change a product's name, description, price or active flag", query: &[],
        body: Some(openapi::Body { name: "UpdateProduct", schema: products::UpdateProduct::schema }), ok: (200, one::<crate::shop::Product>()),
    }
    GET "/api/v1/inventory" => inventory::list {
        scope: Some("inventory:read"), summary: "Stock levels per SKU", query: PAGE, body: None,
        ok: (200, list::<crate::shop::StockLevel>()),
    }
    PUT "/api/v1/inventory/{sku}" => inventory::set {
        scope: Some("inventory:write"), summary: "Set the stock of a SKU", query: &[],
        body: Some(openapi::Body { name: "SetStock", schema: inventory::SetStock::schema }), ok: (200, one::<crate::shop::StockLevel>()),
    }
    GET "/api/v1/reports/sales" => reports::sales {
        scope: Some("reports:read"), summary: "Sales totals computed from orders",
        query: REPORT_QUERY,
        body: None, ok: (200, one::<reports::SalesReport>()),
    }
}

/// keygate's own routes inside the `/api` scope, in every mode (the token
/// itself is one of `ROUTES`, registered here when the demo is off).
pub fn configure_own(cfg: &mut web::ServiceConfig) {
    cfg.route(scoped(openapi::PATH), web::get().to(openapi::serve));
    cfg.route(scoped(WRONG_TOKEN_ENDPOINT), web::to(wrong_token_endpoint));
}

/// keygate's own routes when the demo API is off (the gateway's modes).
pub fn configure_gateway(cfg: &mut web::ServiceConfig) {
    cfg.route(scoped(TOKEN_PATH), web::get().to(token::show));
    cfg.route(scoped(ROTATE_PATH), web::post().to(token::rotate));
    configure_own(cfg);
}

/// A route path relative to the `/api` scope the gate wraps.
fn scoped(path: &'static str) -> &'static str {
    path.strip_prefix("/api").expect("API routes live under /api")
}

/// The calling token (keygate's own, in every mode).
pub const TOKEN_PATH: &str = "/api/v1/token";
/// A token rotating itself (keygate's own, in every mode).
pub const ROTATE_PATH: &str = "/api/v1/token/rotate";

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

#[cfg(test)]
mod tests {
    use super::*;

    /// The demo's document is what its handlers serve: every declared route
    /// resolves, with the scope it declares, through the table the gate
    /// builds from that document.
    #[test]
    fn the_demo_document_gives_the_gate_every_route_with_its_scope() {
        let public_url = "http://127.0.0.1:8080".parse().unwrap();
        let api = crate::gateway::Api::load(&crate::gateway::ApiSource::Demo, &crate::gateway::Mode::Demo, &public_url)
            .expect("the demo document loads");
        for route in ROUTES {
            let method = Method::from_bytes(route.method.as_bytes()).unwrap();
            let concrete = route.path.replace("{id}", "12").replace("{sku}", "MUG-1");
            let crate::gate::RouteMatch::Operation(i) = api.routes.matches(&method, &concrete) else {
                panic!("{} {} is not routed", route.method, route.path)
            };
            assert_eq!(api.routes.operation(i).required.as_deref(), route.scope, "{} {}", route.method, route.path);
        }
        assert_eq!(api.catalogue.entries().len(), crate::shop::SCOPES.len());
        assert_eq!(
            api.catalogue.describe(&api.catalogue.parse("orders:read").unwrap()),
            "See your orders and their items"
        );
        assert!(matches!(api.routes.matches(&Method::GET, openapi::PATH), crate::gate::RouteMatch::Operation(_)));
    }
}
