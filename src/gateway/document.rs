//! The operator's document as keygate serves it (`/api/openapi.json`) and
//! renders it (the API reference): the API's own operations as written,
//! plus what keygate adds in front of them, so the document stays a
//! contract a client generator can trust:
//! - keygate's own paths (`GET /api/v1/token`, the document itself, the
//!   OAuth endpoints) with their schemas, named `Keygate…` so they never
//!   collide with the API's own components;
//! - on every operation that needs a token, the answers the gate can give
//!   before the upstream is asked (401, 403, 429, and 502/504 in proxy
//!   mode), where the document does not declare them itself;
//! - an OAuth 2.0 scheme's flows pointed at keygate's own endpoints.

use serde_json::{json, Map, Value};

use crate::apispec::ApiSpec;
use crate::config::PublicUrl;

/// keygate's paths added to the operator's document.
fn own_paths() -> [&'static str; 7] {
    [
        crate::api::TOKEN_PATH,
        crate::api::ROTATE_PATH,
        crate::api::openapi::PATH,
        "/oauth/token",
        "/oauth/revoke",
        "/oauth/introspect",
        crate::oauth_endpoints::metadata::PATH,
    ]
}

const PREFIX: &str = "Keygate";

/// `#/components/{kind}/{name}` → `#/components/{kind}/Keygate{name}`.
fn rename_refs(value: &mut Value, found: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map.iter_mut() {
                if key == "$ref" {
                    if let Some(text) = inner.as_str() {
                        if let Some(rest) = text.strip_prefix("#/components/") {
                            if let Some((kind, name)) = rest.split_once('/') {
                                found.push((kind.to_owned(), name.to_owned()));
                                *inner = Value::String(format!("#/components/{kind}/{PREFIX}{name}"));
                            }
                        }
                    }
                } else {
                    rename_refs(inner, found);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| rename_refs(item, found)),
        _ => {}
    }
}

/// The operator's document with keygate's additions (see the module).
pub fn served(spec: &ApiSpec, proxied: bool, public_url: &PublicUrl) -> Value {
    let mut document = spec.document.clone();
    let keygate = crate::api::openapi::document();
    let mut wanted = Vec::new();
    let mut paths: Map<String, Value> = Map::new();
    for path in own_paths() {
        if let Some(item) = keygate["paths"].get(path) {
            let mut item = item.clone();
            rename_refs(&mut item, &mut wanted);
            // The token operation is called with the API's own scheme.
            for operation in item.as_object_mut().into_iter().flat_map(|m| m.values_mut()) {
                if operation.get("security").and_then(Value::as_array).is_some_and(|s| !s.is_empty()) {
                    operation["security"] = json!([{ spec.scheme.as_str(): [] }]);
                }
            }
            paths.insert(path.to_owned(), item);
        }
    }
    // The components those paths refer to, and those they refer to in turn.
    let mut components: Map<String, Value> = Map::new();
    wanted.push(("schemas".into(), "Error".into()));
    while let Some((kind, name)) = wanted.pop() {
        let key = format!("{PREFIX}{name}");
        if components.get(&kind).and_then(|k| k.get(&key)).is_some() {
            continue;
        }
        let Some(mut component) = keygate["components"][&kind].get(&name).cloned() else { continue };
        rename_refs(&mut component, &mut wanted);
        let section = components.entry(kind).or_insert_with(|| json!({}));
        section[key] = component;
    }
    let refusal = |description: &str| {
        json!({
            "description": description,
            "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{PREFIX}Error")}}},
        })
    };
    let mut answers = vec![
        ("401", "keygate refused the token: none, malformed, unknown, revoked or expired, or its account is suspended (`error` says which)"),
        ("403", "keygate refused the call: `insufficient_scope`, `ip_not_allowed` or `https_required`"),
        ("429", "keygate refused the call: over the token's per-minute limit (`rate_limited`, `Retry-After`)"),
    ];
    if proxied {
        answers.push(("502", "keygate could not reach the API (`upstream_unavailable`)"));
        answers.push(("504", "the API did not answer in time (`upstream_timeout`)"));
    }
    let gated: Vec<(String, String)> = spec
        .operations
        .iter()
        .filter(|op| op.access != crate::apispec::Access::Public)
        .map(|op| (op.template.clone(), op.method.to_lowercase()))
        .collect();
    if let Some(document_paths) = document.get_mut("paths").and_then(Value::as_object_mut) {
        for (template, method) in gated {
            let Some(operation) = document_paths.get_mut(&template).and_then(|item| item.get_mut(&method)) else {
                continue;
            };
            if !operation.get("responses").is_some_and(Value::is_object) {
                operation["responses"] = json!({});
            }
            for (status, description) in &answers {
                if operation["responses"].get(*status).is_none() {
                    operation["responses"][*status] = refusal(description);
                }
            }
        }
        for (path, item) in paths {
            document_paths.entry(path).or_insert(item);
        }
    }
    if !document.get("components").is_some_and(Value::is_object) {
        document["components"] = json!({});
    }
    for (kind, section) in components {
        if !document["components"].get(&kind).is_some_and(Value::is_object) {
            document["components"][&kind] = json!({});
        }
        for (name, component) in section.as_object().into_iter().flatten() {
            document["components"][&kind][name] = component.clone();
        }
    }
    let scheme = &mut document["components"]["securitySchemes"][&spec.scheme];
    if scheme.get("type").and_then(Value::as_str) == Some("oauth2") {
        if let Some(flows) = scheme.get_mut("flows").and_then(Value::as_object_mut) {
            for (kind, flow) in flows.iter_mut() {
                if kind == "authorizationCode" {
                    flow["authorizationUrl"] = json!(public_url.join("/oauth/authorize"));
                }
                if matches!(kind.as_str(), "authorizationCode" | "clientCredentials" | "password") {
                    flow["tokenUrl"] = json!(public_url.join("/oauth/token"));
                    flow["refreshUrl"] = json!(public_url.join("/oauth/token"));
                }
            }
        }
    }
    document
}
