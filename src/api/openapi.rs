//! `GET /api/openapi.json`: the OpenAPI 3.1 document, the API's contract.
//! Built from `ROUTES` (paths, scopes, parameters, bodies), the input rules
//! of `api::rules` (the same values the handlers check), the response
//! types' `ToSchema` derives, and the gate's answers: every status a route
//! can give, with its body and headers. `tests/api/contract.rs` holds the
//! server to it with schemathesis.

use actix_web::HttpResponse;
use serde::Serialize;
use serde_json::{json, Map, Value};
use utoipa::openapi::schema::ComponentsBuilder;
use utoipa::ToSchema;

use super::{rules, ApiRoute, Param, ROUTES};

pub const PATH: &str = "/api/openapi.json";
/// The security scheme keygate checks, by the name the gateway looks for.
const BEARER: &str = "keygate";

/// A response type, by name, with a way to add its schema.
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

/// A request body: its component name and its schema, built from the rules
/// the handler checks.
#[derive(Clone, Copy)]
pub struct Body {
    pub name: &'static str,
    pub schema: fn() -> Value,
}

/// The body of every error answer.
#[derive(Serialize, ToSchema)]
pub struct Error {
    /// A stable code: `unauthorized`, `invalid_token`, `token_revoked`, `token_expired`, `account_suspended`,
    /// `insufficient_scope`, `ip_not_allowed`, `https_required`, `rate_limited`, `invalid_request`,
    /// `validation_failed`, `not_found`, `method_not_allowed`, `conflict`, `payload_too_large`,
    /// `unsupported_media_type`, `temporarily_unavailable`, `internal_error`.
    error: String,
    message: String,
    /// Matches the `X-Request-Id` header and the API Logs entry.
    request_id: String,
    /// The input field at fault, for 400, 409 and 422.
    field: Option<String>,
    /// For `insufficient_scope`.
    required_scope: Option<String>,
    /// For `token_expired`, RFC 3339.
    expired_at: Option<String>,
    /// For `rate_limited`, seconds.
    retry_after: Option<u64>,
    /// For `ip_not_allowed`: the address the call came from, as the gate sees it.
    ip: Option<String>,
}

fn reference(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn ok_schema(doc: &SchemaDoc) -> Value {
    let item = reference(&(doc.name)());
    if !doc.list {
        return item;
    }
    json!({
        "type": "object",
        "required": ["data", "next_cursor"],
        "properties": {
            "data": {"type": "array", "items": item},
            "next_cursor": {
                "type": ["string", "null"],
                "description": "Pass as `cursor` for the next page; null on the last page.",
            },
        },
    })
}

fn header(name: &str) -> Value {
    reference_to("headers", name)
}

fn reference_to(kind: &str, name: &str) -> Value {
    json!({"$ref": format!("#/components/{kind}/{name}")})
}

/// The headers of `components.headers`, referred to by name.
fn headers() -> Value {
    let text = |description: &str| json!({"description": description, "schema": {"type": "string"}});
    let number = |description: &str| json!({"description": description, "schema": {"type": "integer", "minimum": 0}});
    json!({
        "X-Request-Id": {
            "description": "This request's id, as in the error body and the API Logs.",
            "required": true,
            "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
        },
        "RateLimit-Policy": text("The token's limit: `LIMIT;w=60` (IETF RateLimit headers)."),
        "RateLimit": text("`limit=N, remaining=N, reset=SECONDS` for the current window."),
        "X-RateLimit-Limit": number("Requests per minute this token may make."),
        "X-RateLimit-Remaining": number("Requests left in the current window."),
        "X-RateLimit-Reset": number("When the window resets, Unix seconds."),
        "Keygate-Token-Expiration": text("When the token expires (RFC 3339), or `never`."),
        "Keygate-Token-Rotate-By": text("When the token's secret is due for rotation, once that is near."),
        "WWW-Authenticate": {
            "description": "The RFC 6750 challenge: `Bearer realm=\"keygate\"`, with `error=` and `error_description=` when a token was sent.",
            "required": true,
            "schema": {"type": "string"},
        },
        "Retry-After": {
            "description": "Seconds to wait before retrying.",
            "required": true,
            "schema": {"type": "integer", "minimum": 0},
        },
        "Allow": {"description": "The methods the path takes.", "required": true, "schema": {"type": "string"}},
        "Location": {"description": "The new resource.", "required": true, "schema": {"type": "string"}},
    })
}

const RATE_HEADERS: &[&str] =
    &["RateLimit-Policy", "RateLimit", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"];

fn response(description: &str, schema: Value, header_names: &[&str]) -> Value {
    let mut headers = Map::new();
    headers.insert("X-Request-Id".into(), header("X-Request-Id"));
    for name in header_names {
        headers.insert((*name).into(), header(name));
    }
    json!({
        "description": description,
        "headers": headers,
        "content": {"application/json": {"schema": schema}},
    })
}

fn error(description: &str, header_names: &[&str]) -> Value {
    response(description, reference("Error"), header_names)
}

fn parameter_schema(param: &Param) -> Value {
    match param {
        Param::Text(rule) => rule.schema(),
        Param::Int(rule) => rule.schema(),
        Param::OneOf(values, says) => rules::one_of(values, says),
    }
}

/// The schema of a path segment `{name}`.
fn path_parameter(name: &str) -> Param {
    match name {
        "id" => Param::Int(&rules::ID),
        "sku" => Param::Text(&rules::SKU),
        other => unreachable!("no rule for the path parameter {{{other}}}"),
    }
}

fn operation(route: &ApiRoute) -> Value {
    let scopes: Vec<&str> = route.scope.iter().copied().collect();
    let mut parameters = Vec::new();
    for name in route.path.split('/').filter_map(|s| s.strip_prefix('{')?.strip_suffix('}')) {
        let param = path_parameter(name);
        parameters.push(json!({
            "name": name, "in": "path", "required": true, "schema": parameter_schema(&param),
        }));
    }
    for (name, param) in route.query {
        let schema = parameter_schema(param);
        parameters.push(json!({
            "name": name, "in": "query", "required": false,
            "description": schema["description"].clone(), "schema": schema,
        }));
    }
    let mut ok_headers: Vec<&str> = RATE_HEADERS.to_vec();
    ok_headers.push("Keygate-Token-Expiration");
    if route.ok.0 == 201 {
        ok_headers.push("Location");
    }
    let mut responses = Map::new();
    responses.insert(route.ok.0.to_string(), response("Success", ok_schema(&route.ok.1), &ok_headers));
    let validates = route.body.is_some() || !route.query.is_empty() || route.path.contains("{sku}");
    responses
        .insert("400".into(), error("Malformed input (`field` names it), or more than one Authorization header", &[]));
    responses.insert(
        "401".into(),
        error("No token, or a malformed, unknown, revoked or expired one, or one whose account is suspended (`error` says which)", &["WWW-Authenticate"]),
    );
    let forbidden = if route.path == super::ROTATE_PATH {
        "`self_rotation_disabled` (its owner turned self-rotation off, or an OAuth access token, which is refreshed instead), `ip_not_allowed` or `https_required`"
    } else {
        match route.scope {
        Some(_) => "`insufficient_scope` (the token lacks the scope; see `required_scope`), `ip_not_allowed` (the token's IP allowlist does not hold the caller's address) or `https_required` (plain HTTP from another machine)",
        None => "`ip_not_allowed` (the token's IP allowlist does not hold the caller's address) or `https_required` (plain HTTP from another machine)",
    }
    };
    responses.insert("403".into(), error(forbidden, &[]));
    responses.insert("404".into(), error("No such row for this seller (`not_found`)", &[]));
    responses.insert("405".into(), error("The path does not take this method (`method_not_allowed`)", &["Allow"]));
    if route.method == "POST" && route.path == "/api/v1/products" {
        responses.insert("409".into(), error("A product with this SKU exists (`conflict`)", &[]));
    }
    if route.path == super::ROTATE_PATH {
        responses.insert(
            "409".into(),
            error(
                "`already_rotated` (this secret was rotated already: use the new token) or `not_rotatable` (revoked or expired meanwhile)",
                &[],
            ),
        );
    }
    if route.body.is_some() {
        responses.insert("413".into(), error("The body is over 256 KiB (`payload_too_large`)", &[]));
        responses.insert(
            "415".into(),
            error("The body is not sent as `Content-Type: application/json` (`unsupported_media_type`)", &[]),
        );
    }
    if validates {
        responses.insert(
            "422".into(),
            error("A value out of range or inconsistent (`validation_failed`; `field` names it)", &[]),
        );
    }
    let mut limited = RATE_HEADERS.to_vec();
    limited.push("Retry-After");
    responses.insert("429".into(), error("Over the token's per-minute limit (`rate_limited`)", &limited));
    responses.insert("500".into(), error("The server failed (`internal_error`)", &[]));
    responses.insert(
        "503".into(),
        error("The token or the data could not be read right now (`temporarily_unavailable`)", &["Retry-After"]),
    );
    let description = match route.scope {
        Some(scope) => format!("Requires the `{scope}` scope (a write scope includes read)."),
        None => "Any valid token.".to_owned(),
    };
    let mut operation = json!({
        "summary": route.summary,
        "description": description,
        "operationId": operation_id(route.method, route.path),
        "security": [{BEARER: scopes}],
        "parameters": parameters,
        "responses": responses,
    });
    if let Some(body) = &route.body {
        operation["requestBody"] = json!({
            "required": true,
            "content": {"application/json": {"schema": reference(body.name)}},
        });
    }
    operation
}

/// `GET /api/v1/orders/{id}` → `getOrdersById`-like, stable and unique.
fn operation_id(method: &str, path: &str) -> String {
    let mut id = method.to_lowercase();
    for part in path.trim_start_matches("/api/").split('/').filter(|p| !p.is_empty()) {
        let part = part.trim_start_matches('{').trim_end_matches('}');
        for word in part.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty()) {
            let mut chars = word.chars();
            if let Some(first) = chars.next() {
                id.push(first.to_ascii_uppercase());
                id.extend(chars);
            }
        }
    }
    id
}

pub fn document() -> Value {
    let mut components = ComponentsBuilder::new().schema_from::<Error>();
    let mut bodies = Map::new();
    let mut paths: Map<String, Value> = Map::new();
    for route in ROUTES {
        components = (route.ok.1.register)(components);
        if let Some(body) = &route.body {
            bodies.insert(body.name.into(), (body.schema)());
        }
        let item = paths.entry(route.path.to_owned()).or_insert_with(|| json!({}));
        item[route.method.to_lowercase()] = operation(route);
    }
    paths.insert(
        PATH.into(),
        json!({"get": {
            "summary": "This document",
            "operationId": "getOpenapiJson",
            "security": [],
            "responses": {
                "200": {
                    "description": "The OpenAPI 3.1 document",
                    "headers": {"X-Request-Id": header("X-Request-Id")},
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
            },
        }}),
    );
    super::oauth_doc::add(&mut paths);
    let mut components = serde_json::to_value(components.build()).unwrap_or_else(|_| json!({}));
    let schemas = components["schemas"].as_object_mut().expect("the components have schemas");
    schemas.extend(bodies);
    schemas.extend(super::oauth_doc::schemas());
    components["headers"] = headers();
    components["securitySchemes"] = json!({
        BEARER: {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "keygate token (kgp_…, kgs_… or an OAuth access token kgo_…)",
            "description": "A personal or service token from Settings → API Tokens, or an OAuth access token.",
            "x-keygate-scopes": crate::shop::SCOPES.iter().map(|(name, description)| (name.to_string(), json!(description))).collect::<Map<String, Value>>(),
        },
        "clientBasic": {
            "type": "http",
            "scheme": "basic",
            "description": "OAuth client authentication (client_secret_basic); client_secret_post and public clients send client_id in the form instead.",
        },
    });
    let scopes: Vec<&str> = crate::shop::SCOPES.iter().map(|(name, _)| *name).collect();
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "keygate seller API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": format!(
                "Call with `Authorization: Bearer <token>`. Every answer carries X-Request-Id; every answer to a \
                 valid token carries the rate-limit headers. Errors are `{{\"error\", \"message\", \"request_id\", …}}`. \
                 Scopes: {}.",
                scopes.join(", ")
            ),
        },
        "paths": paths,
        "components": components,
    })
}

/// The demo API's own document, as the gateway loads it: the shop's
/// operations and its scheme, without keygate's own paths (which every
/// mode adds; a document may not declare them).
pub fn demo_document() -> Value {
    let mut document = document();
    if let Some(paths) = document["paths"].as_object_mut() {
        paths.retain(|path, _| !crate::gateway::is_reserved(path));
    }
    document
}

/// `GET /api/openapi.json`: the document of the API in force (the demo's,
/// or the operator's with keygate's additions), serialised when loaded.
pub async fn serve(gate: actix_web::web::Data<crate::gate::Gate>) -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(gate.api.current().served.clone())
}
