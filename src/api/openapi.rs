//! `GET /api/openapi.json`: the OpenAPI 3 document, built from `ROUTES`
//! (paths, scopes, parameters) and the types' `ToSchema` derives.

use std::sync::OnceLock;

use actix_web::HttpResponse;
use serde::Serialize;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ArrayBuilder, ComponentsBuilder, ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, PathItem, PathsBuilder, Ref, RefOr, ResponseBuilder, Schema,
};
use utoipa::ToSchema;

use super::ROUTES;

pub const PATH: &str = "/api/openapi.json";
const BEARER: &str = "bearer";

/// A request or response type, by name, with a way to add its schema.
#[derive(Clone, Copy)]
pub struct SchemaDoc {
    name: fn() -> String,
    register: fn(ComponentsBuilder) -> ComponentsBuilder,
    /// Wrapped as a page: `{"data": [T], "next_cursor": …}`.
    list: bool,
}

fn name_of<T: ToSchema>() -> String {
    T::name().into_owned()
}

/// Adds `T`'s schema and every schema it refers to.
fn register<T: ToSchema>(components: ComponentsBuilder) -> ComponentsBuilder {
    let mut nested = Vec::new();
    T::schemas(&mut nested);
    components.schema_from::<T>().schemas_from_iter(nested)
}

pub const fn one<T: ToSchema>() -> SchemaDoc {
    SchemaDoc { name: name_of::<T>, register: register::<T>, list: false }
}

pub const fn list<T: ToSchema>() -> SchemaDoc {
    SchemaDoc { name: name_of::<T>, register: register::<T>, list: true }
}

/// The body of every error answer.
#[derive(Serialize, ToSchema)]
pub struct Error {
    /// A stable code: `unauthorized`, `invalid_token`, `token_revoked`, `token_expired`,
    /// `insufficient_scope`, `rate_limited`, `https_required`, `invalid_request`,
    /// `validation_failed`, `not_found`, `conflict`, …
    error: String,
    message: String,
    /// Matches the `X-Request-Id` header and the API Logs entry.
    request_id: String,
    /// The input field at fault, for 400 and 422.
    field: Option<String>,
    /// For `insufficient_scope`.
    required_scope: Option<String>,
    /// For `token_expired`, RFC 3339.
    expired_at: Option<String>,
    /// For `rate_limited`, seconds.
    retry_after: Option<u64>,
}

fn reference(doc: &SchemaDoc) -> RefOr<Schema> {
    let item = RefOr::Ref(Ref::from_schema_name((doc.name)()));
    if !doc.list {
        return item;
    }
    ObjectBuilder::new()
        .property("data", ArrayBuilder::new().items(item))
        .property(
            "next_cursor",
            ObjectBuilder::new()
                .schema_type(utoipa::openapi::schema::SchemaType::from_iter([Type::String, Type::Null])),
        )
        .required("data")
        .required("next_cursor")
        .into()
}

fn error_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("Error"))).build())
        .build()
}

pub fn document() -> OpenApi {
    let mut components = ComponentsBuilder::new().schema_from::<Error>().security_scheme(
        BEARER,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("keygate token (kgp_… or kgs_…)")
                .description(Some("A personal or service token from Settings → API Tokens."))
                .build(),
        ),
    );
    let mut paths = PathsBuilder::new();
    for route in ROUTES {
        for doc in route.body.iter().chain(std::iter::once(&route.ok.1)) {
            components = (doc.register)(components);
        }
        let scopes: Vec<String> = route.scope.iter().map(|s| s.as_str().to_owned()).collect();
        let mut operation = OperationBuilder::new()
            .summary(Some(route.summary))
            .operation_id(Some(format!("{} {}", route.method, route.path)))
            .security(SecurityRequirement::new(BEARER, scopes.clone()))
            .response(
                route.ok.0.to_string(),
                ResponseBuilder::new()
                    .description("Success")
                    .content("application/json", ContentBuilder::new().schema(Some(reference(&route.ok.1))).build()),
            )
            .response("401", error_response("No, malformed, unknown, revoked or expired token"))
            .response("429", error_response("Over the token's per-minute limit; see Retry-After"));
        if let Some(scope) = route.scope {
            operation = operation
                .description(Some(format!("Requires the `{scope}` scope (a write scope includes read).")))
                .response("403", error_response("The token lacks the required scope, or HTTPS is required"));
        }
        if route.body.is_some() || !route.query.is_empty() {
            operation = operation.response("400", error_response("Malformed input; `field` names it"));
            operation = operation.response("422", error_response("A value out of range; `field` names it"));
        }
        for segment in route.path.split('/').filter_map(|s| s.strip_prefix('{')?.strip_suffix('}')) {
            operation = operation.parameter(
                ParameterBuilder::new()
                    .name(segment)
                    .parameter_in(ParameterIn::Path)
                    .required(utoipa::openapi::Required::True),
            );
        }
        for (name, description) in route.query {
            operation = operation.parameter(
                ParameterBuilder::new().name(*name).parameter_in(ParameterIn::Query).description(Some(*description)),
            );
        }
        if let Some(body) = &route.body {
            operation = operation.request_body(Some(
                RequestBodyBuilder::new()
                    .required(Some(utoipa::openapi::Required::True))
                    .content("application/json", ContentBuilder::new().schema(Some(reference(body))).build())
                    .build(),
            ));
        }
        let method = match route.method {
            "GET" => HttpMethod::Get,
            "POST" => HttpMethod::Post,
            "PUT" => HttpMethod::Put,
            "PATCH" => HttpMethod::Patch,
            "DELETE" => HttpMethod::Delete,
            other => unreachable!("no API route uses {other}"),
        };
        paths = paths.path(route.path, PathItem::new(method, operation.build()));
    }
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("keygate seller API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some("Call with `Authorization: Bearer <token>`. Every response carries X-Request-Id and the rate-limit headers."))
                .build(),
        )
        .paths(paths.build())
        .components(Some(components.build()))
        .build()
}

pub async fn serve() -> HttpResponse {
    static JSON: OnceLock<String> = OnceLock::new();
    let json = JSON.get_or_init(|| document().to_pretty_json().unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}")));
    HttpResponse::Ok().content_type("application/json").body(json.as_str())
}
