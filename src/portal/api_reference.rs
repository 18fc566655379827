//! The API reference (`/docs/api`): the OpenAPI document the server serves
//! at `/api/openapi.json`, rendered as a page. Built from that same
//! document (never a copy written by hand): every operation with its method
//! and path, summary and description, authentication and scopes, its
//! parameters and request body with their limits, and every response with
//! its description, body and headers; then the schemas and headers they
//! refer to. Server-rendered, no script.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use askama::Template;
use serde_json::{Map, Value};

use super::error::PortalError;
use super::pages::Layout;
use super::render;
use super::session::CurrentUser;
use crate::api::openapi;
use crate::state::AppState;

/// Where the page lives.
pub const PATH: &str = "/docs/api";

/// A run of text: plain, `code`, or a link within the page.
pub struct Piece {
    pub text: String,
    pub code: bool,
    pub link: Option<String>,
}

impl Piece {
    fn text(text: impl Into<String>) -> Self {
        Self { text: text.into(), code: false, link: None }
    }

    fn code(text: impl Into<String>) -> Self {
        Self { text: text.into(), code: true, link: None }
    }

    fn link(text: impl Into<String>, to: String) -> Self {
        Self { text: text.into(), code: false, link: Some(to) }
    }
}

/// Text from the document, with its `backticks` as code.
fn prose(text: &str) -> Vec<Piece> {
    text.split('`')
        .enumerate()
        .filter(|(_, part)| !part.is_empty())
        .map(|(i, part)| if i % 2 == 1 { Piece::code(part) } else { Piece::text(part) })
        .collect()
}

/// One field of a body or schema, or one parameter.
pub struct FieldView {
    /// `items[].sku` for a field of a nested object.
    pub name: String,
    /// `path`, `query`, or empty for a body field.
    pub location: String,
    pub required: bool,
    pub ty: Vec<Piece>,
    /// "1–64 characters", "pattern ^[A-Za-z0-9._-]+$", "one of: paid, shipped"…
    pub limits: Vec<Vec<Piece>>,
    pub description: Vec<Piece>,
}

pub struct BodyView {
    pub media_type: String,
    pub required: bool,
    pub ty: Vec<Piece>,
    /// The body's own limits ("no other fields", "at least 1 field").
    pub limits: Vec<Vec<Piece>>,
    pub fields: Vec<FieldView>,
}

pub struct ResponseView {
    pub status: String,
    /// `ok`, `redirect`, `client` or `server`, for its colour.
    pub tone: &'static str,
    pub description: Vec<Piece>,
    /// The body's type, when it has one.
    pub body: Vec<Piece>,
    pub headers: Vec<ResponseHeader>,
}

/// A header of a response: one of the document's shared headers (linked
/// to its entry), or one described in place (its description on hover).
pub struct ResponseHeader {
    pub name: String,
    pub shared: bool,
    pub description: String,
}

pub struct OperationView {
    pub anchor: String,
    pub method: String,
    pub path: String,
    pub summary: String,
    pub description: Vec<Piece>,
    /// How to authenticate, in words.
    pub auth: Vec<Piece>,
    /// The scopes the operation requires (bearer tokens).
    pub scopes: Vec<String>,
    pub parameters: Vec<FieldView>,
    pub body: Option<BodyView>,
    pub responses: Vec<ResponseView>,
}

pub struct GroupView {
    pub name: &'static str,
    pub operations: Vec<OperationView>,
}

pub struct SchemaView {
    pub name: String,
    pub anchor: String,
    pub ty: Vec<Piece>,
    pub description: Vec<Piece>,
    pub limits: Vec<Vec<Piece>>,
    pub fields: Vec<FieldView>,
}

pub struct HeaderView {
    pub name: String,
    pub ty: Vec<Piece>,
    pub description: Vec<Piece>,
}

#[derive(Template)]
#[template(path = "api_reference.html")]
pub struct ApiReferencePage {
    pub layout: Layout,
    pub title: String,
    pub version: String,
    pub openapi: String,
    pub description: Vec<Piece>,
    pub json_path: &'static str,
    pub groups: Vec<GroupView>,
    pub schemas: Vec<SchemaView>,
    pub headers: Vec<HeaderView>,
}

/// Signed-in users only, like the rest of the portal; the document itself
/// stays public at `/api/openapi.json` for tools and clients.
pub async fn show(user: CurrentUser, state: actix_web::web::Data<AppState>) -> Result<HttpResponse, PortalError> {
    let api = state.gate.api.current();
    let page = ApiReferencePage {
        layout: Layout::for_user("API reference", &user, "api-reference"),
        ..page_of(&api.document)
    };
    render(StatusCode::OK, &page)
}

/// The page's content, read from `doc`.
pub fn page_of(doc: &Value) -> ApiReferencePage {
    let reader = Reader { doc };
    let info = &doc["info"];
    let mut groups: Vec<GroupView> = Vec::new();
    for (path, item) in object(&doc["paths"]) {
        for (method, operation) in object(item) {
            let name = group_of(operation);
            let view = reader.operation(method, path, operation);
            match groups.iter_mut().find(|g| g.name == name) {
                Some(group) => group.operations.push(view),
                None => groups.push(GroupView { name, operations: vec![view] }),
            }
        }
    }
    // The seller API first, then the OAuth server's endpoints.
    groups.sort_by_key(|g| g.name != SELLER_API);
    let schemas = object(&doc["components"]["schemas"])
        .iter()
        .map(|(name, schema)| SchemaView {
            anchor: schema_anchor(name),
            name: name.clone(),
            ty: reader.type_of(schema),
            description: prose(text(&schema["description"])),
            limits: limits(schema),
            fields: reader.fields(schema, "", 0),
        })
        .collect();
    let headers = object(&doc["components"]["headers"])
        .iter()
        .map(|(name, header)| HeaderView {
            name: name.clone(),
            ty: reader.type_of(&header["schema"]),
            description: prose(text(&header["description"])),
        })
        .collect();
    ApiReferencePage {
        layout: Layout::anonymous("API reference"),
        title: text(&info["title"]).to_owned(),
        version: text(&info["version"]).to_owned(),
        openapi: text(&doc["openapi"]).to_owned(),
        description: prose(text(&info["description"])),
        json_path: openapi::PATH,
        groups,
        schemas,
        headers,
    }
}

const SELLER_API: &str = "Seller API";

fn group_of(operation: &Value) -> &'static str {
    let tagged_oauth = operation["tags"].as_array().is_some_and(|tags| tags.iter().any(|t| t == "oauth"));
    if tagged_oauth {
        "OAuth server"
    } else {
        SELLER_API
    }
}

fn object(value: &Value) -> &Map<String, Value> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    value.as_object().unwrap_or_else(|| EMPTY.get_or_init(Map::new))
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

pub fn schema_anchor(name: &str) -> String {
    format!("schema-{name}")
}

pub fn operation_anchor(method: &str, path: &str, operation: &Value) -> String {
    match operation["operationId"].as_str() {
        Some(id) => id.to_owned(),
        None => format!("{method}{}", path.replace(|c: char| !c.is_ascii_alphanumeric(), "-")),
    }
}

/// The last segment of a `$ref`: `#/components/schemas/Order` → `Order`.
fn ref_name(reference: &str) -> &str {
    reference.rsplit('/').next().unwrap_or(reference)
}

/// Reads the document, following its `$ref`s.
struct Reader<'a> {
    doc: &'a Value,
}

/// How deep nested objects are spelled out as `a.b[].c` fields.
const MAX_DEPTH: usize = 4;

impl<'a> Reader<'a> {
    /// The value a `$ref` points at (`#/components/…`), or `value` itself.
    fn resolve(&self, value: &'a Value) -> &'a Value {
        match value["$ref"].as_str().and_then(|r| r.strip_prefix('#')) {
            Some(pointer) => self.doc.pointer(pointer).unwrap_or(value),
            None => value,
        }
    }

    fn operation(&self, method: &str, path: &str, operation: &Value) -> OperationView {
        let parameters = operation["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| self.resolve(p))
            .map(|p| {
                let schema = &p["schema"];
                let description = p["description"].as_str().or_else(|| schema["description"].as_str());
                FieldView {
                    name: text(&p["name"]).to_owned(),
                    location: text(&p["in"]).to_owned(),
                    required: p["required"].as_bool().unwrap_or(false),
                    ty: self.type_of(schema),
                    limits: limits(schema),
                    description: prose(description.unwrap_or_default()),
                }
            })
            .collect();
        let body = operation.get("requestBody").map(|body| {
            let body = self.resolve(body);
            let (media_type, content) =
                object(&body["content"]).iter().next().map_or(("", &Value::Null), |(m, c)| (m.as_str(), c));
            let schema = &content["schema"];
            BodyView {
                media_type: media_type.to_owned(),
                required: body["required"].as_bool().unwrap_or(false),
                ty: self.type_of(schema),
                limits: limits(self.resolve(schema)),
                fields: self.fields(self.resolve(schema), "", 0),
            }
        });
        let responses = object(&operation["responses"])
            .iter()
            .map(|(status, response)| {
                let response = self.resolve(response);
                let schema = object(&response["content"]).values().next().map(|c| &c["schema"]);
                ResponseView {
                    tone: match status.chars().next() {
                        Some('1' | '2') => "ok",
                        Some('3') => "redirect",
                        Some('4') => "client",
                        _ => "server",
                    },
                    status: status.clone(),
                    description: prose(text(&response["description"])),
                    body: schema.map(|s| self.type_of(s)).unwrap_or_default(),
                    headers: object(&response["headers"])
                        .iter()
                        .map(|(name, header)| ResponseHeader {
                            name: name.clone(),
                            shared: header.get("$ref").is_some(),
                            description: text(&self.resolve(header)["description"]).to_owned(),
                        })
                        .collect(),
                }
            })
            .collect();
        let (auth, scopes) = self.security(operation);
        OperationView {
            anchor: operation_anchor(method, path, operation),
            method: method.to_uppercase(),
            path: path.to_owned(),
            summary: text(&operation["summary"]).to_owned(),
            description: prose(text(&operation["description"])),
            auth,
            scopes,
            parameters,
            body,
            responses,
        }
    }

    /// The operation's security requirements in words (alternatives joined
    /// by "or"), and every scope they name.
    fn security(&self, operation: &Value) -> (Vec<Piece>, Vec<String>) {
        let requirements = operation.get("security").or_else(|| self.doc.get("security"));
        let requirements = requirements.and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        if requirements.is_empty() {
            return (vec![Piece::text("None: anyone may call it.")], Vec::new());
        }
        let mut words = Vec::new();
        let mut all_scopes = Vec::new();
        for (i, requirement) in requirements.iter().enumerate() {
            if i > 0 {
                words.push(Piece::text(", or "));
            }
            let schemes = object(requirement);
            if schemes.is_empty() {
                words.push(Piece::text("none"));
            }
            for (j, (scheme, scopes)) in schemes.iter().enumerate() {
                if j > 0 {
                    words.push(Piece::text(" and "));
                }
                words.push(Piece::text(self.scheme_label(scheme)));
                let scopes: Vec<String> =
                    scopes.as_array().into_iter().flatten().filter_map(Value::as_str).map(str::to_owned).collect();
                match scopes.as_slice() {
                    [] if self.scheme_is_bearer(scheme) => words.push(Piece::text(" (any valid token)")),
                    [] => {}
                    [one] => {
                        words.push(Piece::text(" with the scope "));
                        words.push(Piece::code(one.clone()));
                    }
                    many => {
                        words.push(Piece::text(" with the scopes "));
                        for (k, scope) in many.iter().enumerate() {
                            if k > 0 {
                                words.push(Piece::text(", "));
                            }
                            words.push(Piece::code(scope.clone()));
                        }
                    }
                }
                all_scopes.extend(scopes);
            }
        }
        (words, all_scopes)
    }

    fn scheme(&self, name: &str) -> &'a Value {
        &self.doc["components"]["securitySchemes"][name]
    }

    fn scheme_is_bearer(&self, name: &str) -> bool {
        self.scheme(name)["scheme"].as_str() == Some("bearer")
    }

    fn scheme_label(&self, name: &str) -> String {
        let scheme = self.scheme(name);
        match (text(&scheme["type"]), text(&scheme["scheme"])) {
            ("http", "bearer") => "Bearer token".to_owned(),
            ("http", "basic") => "HTTP Basic (client id and secret)".to_owned(),
            ("apiKey", _) => format!("API key `{}`", text(&scheme["name"])),
            _ => name.to_owned(),
        }
    }

    /// "string", "array of Order" (linked), "integer or null"…
    fn type_of(&self, schema: &Value) -> Vec<Piece> {
        if let Some(reference) = schema["$ref"].as_str() {
            let name = ref_name(reference);
            return vec![Piece::link(name, format!("#{}", schema_anchor(name)))];
        }
        for (key, joiner) in [("oneOf", " or "), ("anyOf", " or "), ("allOf", " and ")] {
            if let Some(options) = schema[key].as_array() {
                let mut pieces = Vec::new();
                for (i, option) in options.iter().enumerate() {
                    if i > 0 {
                        pieces.push(Piece::text(joiner));
                    }
                    pieces.extend(self.type_of(option));
                }
                return pieces;
            }
        }
        if let Some(properties) = schema["properties"].as_object().filter(|p| !p.is_empty()) {
            // An object described in place: its fields in one line.
            let mut pieces = vec![Piece::text("object { ")];
            for (i, (name, property)) in properties.iter().enumerate() {
                if i > 0 {
                    pieces.push(Piece::text(", "));
                }
                pieces.push(Piece::code(name.clone()));
                pieces.push(Piece::text(": "));
                pieces.extend(self.type_of(property));
            }
            pieces.push(Piece::text(" }"));
            return pieces;
        }
        let types: Vec<&str> = match &schema["type"] {
            Value::String(one) => vec![one.as_str()],
            Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if types.is_empty() {
            return vec![Piece::text("any")];
        }
        let mut pieces = Vec::new();
        for (i, ty) in types.iter().enumerate() {
            if i > 0 {
                pieces.push(Piece::text(" or "));
            }
            if *ty == "array" {
                pieces.push(Piece::text("array of "));
                pieces.extend(self.type_of(&schema["items"]));
            } else {
                pieces.push(Piece::text(*ty));
            }
        }
        pieces
    }

    /// The fields of an object schema, nested objects spelled out as
    /// `parent.child` and arrays of objects as `parent[].child`.
    fn fields(&self, schema: &Value, prefix: &str, depth: usize) -> Vec<FieldView> {
        let required: Vec<&str> =
            schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let mut fields = Vec::new();
        for (name, property) in object(&schema["properties"]) {
            let full = format!("{prefix}{name}");
            fields.push(FieldView {
                name: full.clone(),
                location: String::new(),
                required: required.contains(&name.as_str()),
                ty: self.type_of(property),
                limits: limits(property),
                description: prose(text(&property["description"])),
            });
            if depth < MAX_DEPTH {
                if property.get("properties").is_some() {
                    fields.extend(self.fields(property, &format!("{full}."), depth + 1));
                } else if property["items"].get("properties").is_some() {
                    fields.extend(self.fields(&property["items"], &format!("{full}[]."), depth + 1));
                }
            }
        }
        fields
    }
}

fn plural(n: &str) -> &'static str {
    if n == "1" {
        ""
    } else {
        "s"
    }
}

/// A schema's limits, each in words: lengths, ranges, patterns, formats,
/// the values it may take, a default. A nullable wrapper's limits are its
/// inner schema's.
fn limits(schema: &Value) -> Vec<Vec<Piece>> {
    let mut out: Vec<Vec<Piece>> = Vec::new();
    for key in ["oneOf", "anyOf", "allOf"] {
        for inner in schema[key].as_array().into_iter().flatten() {
            out.extend(limits(inner));
        }
    }
    let number = |key: &str| schema.get(key).filter(|v| v.is_number()).map(Value::to_string);
    match (number("minLength"), number("maxLength")) {
        (Some(min), Some(max)) if min == max => out.push(vec![Piece::text(format!("exactly {min} characters"))]),
        (Some(min), Some(max)) => out.push(vec![Piece::text(format!("{min}–{max} characters"))]),
        (Some(min), None) => out.push(vec![Piece::text(format!("at least {min} characters"))]),
        (None, Some(max)) => out.push(vec![Piece::text(format!("at most {max} characters"))]),
        (None, None) => {}
    }
    let low =
        number("minimum").map(|n| format!("≥ {n}")).or_else(|| number("exclusiveMinimum").map(|n| format!("> {n}")));
    let high =
        number("maximum").map(|n| format!("≤ {n}")).or_else(|| number("exclusiveMaximum").map(|n| format!("< {n}")));
    match (low, high) {
        (Some(low), Some(high)) => out.push(vec![Piece::text(format!("{low} and {high}"))]),
        (Some(bound), None) | (None, Some(bound)) => out.push(vec![Piece::text(bound)]),
        (None, None) => {}
    }
    match (number("minItems"), number("maxItems")) {
        (Some(min), Some(max)) => out.push(vec![Piece::text(format!("{min}–{max} items"))]),
        (Some(min), None) => out.push(vec![Piece::text(format!("at least {min} items"))]),
        (None, Some(max)) => out.push(vec![Piece::text(format!("at most {max} items"))]),
        (None, None) => {}
    }
    match (number("minProperties"), number("maxProperties")) {
        (_, Some(max)) if max == "0" => out.push(vec![Piece::text("an empty object")]),
        (Some(min), Some(max)) => out.push(vec![Piece::text(format!("{min}–{max} fields"))]),
        (Some(min), None) => out.push(vec![Piece::text(format!("at least {min} field{}", plural(&min)))]),
        (None, Some(max)) => out.push(vec![Piece::text(format!("at most {max} fields"))]),
        (None, None) => {}
    }
    if schema["additionalProperties"] == Value::Bool(false) {
        out.push(vec![Piece::text("no other fields")]);
    }
    if let Some(pattern) = schema["pattern"].as_str() {
        out.push(vec![Piece::text("pattern "), Piece::code(pattern)]);
    }
    if let Some(format) = schema["format"].as_str() {
        out.push(vec![Piece::text("format "), Piece::code(format)]);
    }
    if let Some(values) = schema["enum"].as_array() {
        let mut pieces = vec![Piece::text("one of ")];
        for (i, value) in values.iter().enumerate() {
            if i > 0 {
                pieces.push(Piece::text(", "));
            }
            pieces.push(Piece::code(value.as_str().map_or_else(|| value.to_string(), str::to_owned)));
        }
        out.push(pieces);
    }
    if let Some(default) = schema.get("default") {
        out.push(vec![Piece::text("default "), Piece::code(default.to_string())]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn plain(pieces: &[Piece]) -> String {
        pieces.iter().map(|p| p.text.as_str()).collect()
    }

    #[test]
    fn types_follow_refs_arrays_and_alternatives() {
        let doc = json!({});
        let reader = Reader { doc: &doc };
        let order = reader.type_of(&json!({"type": "array", "items": {"$ref": "#/components/schemas/Order"}}));
        assert_eq!(plain(&order), "array of Order");
        assert_eq!(order[1].link.as_deref(), Some("#schema-Order"));
        assert_eq!(plain(&reader.type_of(&json!({"type": ["string", "null"]}))), "string or null");
        assert_eq!(
            plain(&reader.type_of(&json!({"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/Item"}]}))),
            "null or Item"
        );
        assert_eq!(plain(&reader.type_of(&json!({}))), "any");
        let page = json!({"type": "object", "properties": {
            "data": {"type": "array", "items": {"$ref": "#/components/schemas/Order"}},
            "next_cursor": {"type": ["string", "null"]},
        }});
        assert_eq!(plain(&reader.type_of(&page)), "object { data: array of Order, next_cursor: string or null }");
    }

    #[test]
    fn limits_read_as_words() {
        let words = |schema: Value| limits(&schema).iter().map(|l| plain(l)).collect::<Vec<_>>();
        assert_eq!(
            words(json!({"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[a-z]+$"})),
            ["1–64 characters", "pattern ^[a-z]+$"]
        );
        assert_eq!(words(json!({"type": "integer", "minimum": 1, "maximum": 200})), ["≥ 1 and ≤ 200"]);
        assert_eq!(words(json!({"enum": ["paid", "shipped"]})), ["one of paid, shipped"]);
        assert_eq!(words(json!({"type": "array", "maxItems": 50})), ["at most 50 items"]);
        assert_eq!(
            words(json!({"oneOf": [{"type": "null"}, {"type": "string", "maxLength": 5}]})),
            ["at most 5 characters"]
        );
    }

    #[test]
    fn backticks_become_code() {
        let pieces = prose("Requires the `orders:read` scope.");
        assert_eq!(pieces.len(), 3);
        assert!(pieces[1].code && pieces[1].text == "orders:read");
        assert!(!pieces[0].code && !pieces[2].code);
    }

    #[test]
    fn every_operation_of_the_served_document_is_on_the_page() {
        let doc = openapi::document();
        let page = page_of(&doc);
        let shown: usize = page.groups.iter().map(|g| g.operations.len()).sum();
        let documented: usize = object(&doc["paths"]).values().map(|item| object(item).len()).sum();
        assert_eq!(shown, documented);
        let orders = page.groups.iter().flat_map(|g| &g.operations).find(|o| o.anchor == "getV1Orders").unwrap();
        assert_eq!(orders.scopes, ["orders:read"]);
        assert!(orders.parameters.iter().any(|p| p.name == "limit" && !p.limits.is_empty()));
        assert_eq!(page.groups[0].name, SELLER_API);
    }
}
