//! The route table: path templates, the base path from `servers[0].url`,
//! and one route per operation, each unique.

use std::collections::HashMap;

use yaml_serde::{Mapping, Value};

use super::scheme::Schemes;
use super::slices::{self, Server};
use super::{pointer, refs, security, Access, Operation, Problem, Reserved};

/// The operations of a path item, in the order OpenAPI lists them.
pub(super) const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/// The path of `servers[0].url` without a trailing slash ("/v2"), or "".
/// Server variables may stand in the host, not in the path: keygate routes on
/// the path, and a variable there would make every route a guess.
pub(super) fn base_path(root: &Mapping, problems: &mut Vec<Problem>) -> String {
    let Some(Some(servers)) = slices::field::<Vec<Server>>(root, "servers", "", problems) else {
        return String::new();
    };
    let Some(first) = servers.first() else { return String::new() };
    match server_path(&first.url) {
        Ok(path) => path,
        Err(message) => {
            problems.push(Problem::new("/servers/0/url", message));
            String::new()
        }
    }
}

fn server_path(url: &str) -> Result<String, String> {
    // "https://{region}.example.com/v2", "//example.com/v2", "/v2", "".
    let path = if let Some((_, rest)) = url.split_once("://") {
        rest.find('/').map_or("", |slash| &rest[slash..])
    } else if let Some(rest) = url.strip_prefix("//") {
        rest.find('/').map_or("", |slash| &rest[slash..])
    } else if url.is_empty() || url.starts_with('/') {
        url
    } else {
        return Err(format!(
            "the server url {url:?} is neither absolute (https://host/base) nor a path starting with /"
        ));
    };
    if path.contains(['?', '#']) {
        return Err(format!("the server url {url:?} has a query or fragment; give only a base path"));
    }
    if path.contains(['{', '}']) {
        return Err(format!(
            "the server url {url:?} has a server variable in its path; write the base path out \
             (variables in the host are fine)"
        ));
    }
    let path = path.strip_suffix('/').unwrap_or(path);
    if !path.is_empty() {
        check_template(path).map_err(|message| format!("the server url's path {path:?}: {message}"))?;
    }
    Ok(path.to_owned())
}

/// A path template, checked. Each segment is literal text or exactly one
/// `{name}` parameter: partial-segment templates (`/items/{sku}.json`,
/// `/files/{name}.{ext}`) are refused on purpose, so that a route matches
/// whole segments only and two routes can be told apart by their shape alone.
///
/// Returns the shape (`/items/{}`): two templates with the same shape are the
/// same route whatever their parameters are called.
pub(super) fn check_template(template: &str) -> Result<String, String> {
    if !template.starts_with('/') {
        return Err("a path template must start with /".to_owned());
    }
    if template == "/" {
        return Ok("/".to_owned());
    }
    if template.ends_with('/') {
        return Err("a path template must not end with / (only \"/\" itself may)".to_owned());
    }
    let mut shape = String::with_capacity(template.len());
    let mut names: Vec<&str> = Vec::new();
    for segment in template[1..].split('/') {
        shape.push('/');
        if segment.is_empty() {
            return Err("empty segment (//) in the path".to_owned());
        }
        if segment == "." || segment == ".." {
            return Err(format!("`{segment}` segments are not allowed in a path"));
        }
        if segment.contains(['{', '}']) {
            let name = segment
                .strip_prefix('{')
                .and_then(|s| s.strip_suffix('}'))
                .filter(|name| !name.contains(['{', '}']))
                .ok_or_else(|| {
                    format!(
                        "`{segment}`: a parameter must be a whole segment, like /items/{{sku}} \
                         (no text around it, one per segment, braces balanced)"
                    )
                })?;
            if name.is_empty() {
                return Err("`{}`: a parameter needs a name".to_owned());
            }
            if let Some(c) = name.chars().find(|&c| !is_path_char(c)) {
                return Err(format!("the parameter name `{name}` has {}", describe_char(c)));
            }
            if names.contains(&name) {
                return Err(format!("the parameter `{{{name}}}` appears twice"));
            }
            names.push(name);
            shape.push_str("{}");
            continue;
        }
        if let Some(c) = segment.chars().find(|&c| !is_path_char(c)) {
            return Err(format!("`{segment}` has {}", describe_char(c)));
        }
        shape.push_str(segment);
    }
    Ok(shape)
}

/// RFC 3986 `pchar` without `%`: a template is matched against decoded
/// paths, so it is written with the characters themselves.
fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@".contains(c)
}

fn describe_char(c: char) -> String {
    match c {
        '%' => "a %-escape: write the character itself (a template is matched against decoded paths)".to_owned(),
        '?' | '#' => format!("`{c}`: a template is a path only, without query or fragment"),
        ' ' => "a space".to_owned(),
        c if c.is_control() => format!("a control character ({})", c.escape_unicode()),
        c if !c.is_ascii() => format!("`{c}`, which is not ASCII: a URL path is ASCII"),
        c => format!("`{c}`, which is not allowed in a URL path"),
    }
}

/// Every operation of `paths`, in document order.
pub(super) fn operations(
    root: &Value,
    base_path: &str,
    schemes: &Schemes,
    default_access: &Access,
    reserved: &[Reserved],
    problems: &mut Vec<Problem>,
) -> Vec<Operation> {
    let mut operations = Vec::new();
    let problems_before = problems.len();
    let paths = match root.get("paths") {
        None => None,
        Some(Value::Mapping(paths)) => Some(paths),
        Some(other) => {
            problems.push(Problem::new(
                "/paths",
                format!("`paths` must be a mapping of path → path item, not {}", super::reader::kind(other)),
            ));
            return operations;
        }
    };
    // (method, shape) → the pointer of the first operation with that route.
    let mut routes: HashMap<(String, String), String> = HashMap::new();
    for (template, item) in paths.into_iter().flatten() {
        let Some(template) = template.as_str() else { continue };
        if template.starts_with("x-") {
            continue; // an extension of the Paths object
        }
        let path_at = pointer::push("/paths", template);
        let shape = check_template(template).map_err(|message| problems.push(Problem::new(&path_at, message))).ok();
        let path = format!("{base_path}{template}");
        if let Some(taken) = reserved.iter().find(|r| r.covers(&path)) {
            let what = match taken {
                Reserved::Exact(_) => "is keygate's own path".to_owned(),
                Reserved::Prefix(prefix) => {
                    format!("is keygate's own path (keygate answers everything under {prefix})")
                }
            };
            problems.push(Problem::new(&path_at, format!("{path} {what}; move the operation elsewhere")));
        }
        let Some((item, item_at)) = path_item(root, item, &path_at, problems) else { continue };
        for (method, operation) in item {
            let Some(method) = method.as_str() else { continue };
            if !METHODS.contains(&method) {
                if METHODS.iter().any(|m| m.eq_ignore_ascii_case(method)) {
                    problems.push(Problem::new(
                        pointer::push(&item_at, method),
                        format!("`{method}` is not an operation: methods are written in lower case"),
                    ));
                }
                continue; // parameters, summary, description, servers, x-…
            }
            let at = pointer::push(&item_at, method);
            if null_security(operation, &at, problems) {
                continue;
            }
            let Ok(slice) = slices::typed::<slices::Operation>(operation, &at).map_err(|p| problems.push(p)) else {
                continue;
            };
            let access = match &slice.security {
                Some(requirements) => {
                    security::access(requirements, &pointer::push(&at, "security"), schemes, problems)
                }
                None => default_access.clone(),
            };
            let method = method.to_ascii_uppercase();
            if let Some(shape) = &shape {
                match routes.get(&(method.clone(), shape.clone())) {
                    Some(first) => problems.push(Problem::new(
                        &at,
                        format!(
                            "duplicate route: {method} {template} is the same route as {first} \
                             (parameter names do not tell routes apart)"
                        ),
                    )),
                    None => {
                        routes.insert((method.clone(), shape.clone()), at.clone());
                    }
                }
            }
            operations.push(Operation {
                method,
                path: path.clone(),
                template: template.to_owned(),
                operation_id: slice.operation_id,
                summary: slice.summary,
                access,
                pointer: at,
            });
        }
    }
    if operations.is_empty() && problems.len() == problems_before {
        problems.push(Problem::new("/paths", "the document has no operations: there would be nothing to route"));
    }
    operations
}

/// `security:` with nothing after it (null) is neither `[]` (public) nor
/// absent (the document's default): say so rather than guess.
pub(super) fn null_security(object: &Value, at: &str, problems: &mut Vec<Problem>) -> bool {
    let null = matches!(object.get("security"), Some(Value::Null));
    if null {
        problems.push(Problem::new(
            pointer::push(at, "security"),
            "`security` is empty (null): write `security: []` for a public operation, or leave it out for the \
             document's default",
        ));
    }
    null
}

/// The path item at `at`, or what its `$ref` leads to. A path item with a
/// `$ref` must not also define operations: which would win is not defined.
fn path_item<'a>(
    root: &'a Value,
    item: &'a Value,
    at: &str,
    problems: &mut Vec<Problem>,
) -> Option<(&'a Mapping, String)> {
    let Some(mapping) = item.as_mapping() else {
        problems.push(Problem::new(at, format!("a path item must be a mapping, not {}", super::reader::kind(item))));
        return None;
    };
    if mapping.contains_key("$ref") {
        if let Some(method) = METHODS.iter().find(|m| mapping.contains_key(**m)) {
            problems.push(Problem::new(
                pointer::push(at, method),
                "a path item that is a $ref must not also define operations",
            ));
        }
        let (target, target_at) = refs::follow(root, item, at, problems)?;
        let Some(target_mapping) = target.as_mapping() else {
            problems.push(Problem::new(
                pointer::push(at, "$ref"),
                format!("the $ref leads to {}, not a path item", super::reader::kind(target)),
            ));
            return None;
        };
        return Some((target_mapping, target_at));
    }
    Some((mapping, at.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_segment_parameters_give_the_shape_of_the_route() {
        assert_eq!(check_template("/items/{sku}").as_deref(), Ok("/items/{}"));
        assert_eq!(check_template("/items/{id}").as_deref(), Ok("/items/{}"));
        assert_eq!(check_template("/").as_deref(), Ok("/"));
        assert_eq!(check_template("/a/{x}/b/{y}/c:archive").as_deref(), Ok("/a/{}/b/{}/c:archive"));
        assert_eq!(check_template("/users/@me/~keys").as_deref(), Ok("/users/@me/~keys"));
    }

    #[test]
    fn every_kind_of_bad_template_is_refused_with_its_reason() {
        let cases = [
            ("items", "must start with /"),
            ("/items/", "must not end with /"),
            ("/items//x", "empty segment"),
            ("/items/./x", "`.` segments"),
            ("/items/..", "`..` segments"),
            ("/items/{a}{b}", "whole segment"),
            ("/items/x{sku}", "whole segment"),
            ("/items/{sku}.json", "whole segment"),
            ("/items/{sku", "whole segment"),
            ("/items/sku}", "whole segment"),
            ("/items/{}", "needs a name"),
            ("/items/{a b}", "a space"),
            ("/a/{id}/b/{id}", "appears twice"),
            ("/items%2Fx", "%-escape"),
            ("/items?x=1", "without query"),
            ("/items#top", "without query"),
            ("/items/a b", "a space"),
            ("/items/a\tb", "control character"),
            ("/items/é", "not ASCII"),
            ("/items/a\"b", "not allowed in a URL path"),
        ];
        for (template, reason) in cases {
            let error = check_template(template).unwrap_err();
            assert!(error.contains(reason), "{template:?}: {error}");
        }
    }

    #[test]
    fn the_base_path_is_the_servers_path_and_variables_stay_in_the_host() {
        assert_eq!(server_path("https://inventory.internal/v2").as_deref(), Ok("/v2"));
        assert_eq!(server_path("https://inventory.internal/v2/").as_deref(), Ok("/v2"));
        assert_eq!(server_path("https://{region}.inventory.internal/api/v2").as_deref(), Ok("/api/v2"));
        assert_eq!(server_path("https://inventory.internal").as_deref(), Ok(""));
        assert_eq!(server_path("https://inventory.internal/").as_deref(), Ok(""));
        assert_eq!(server_path("//inventory.internal/v2").as_deref(), Ok("/v2"));
        assert_eq!(server_path("/v2").as_deref(), Ok("/v2"));
        assert_eq!(server_path("/").as_deref(), Ok(""));
        assert_eq!(server_path("").as_deref(), Ok(""));
        assert!(server_path("https://inventory.internal/{version}").unwrap_err().contains("server variable"));
        assert!(server_path("v2").unwrap_err().contains("neither absolute"));
        assert!(server_path("https://h/v2?x=1").unwrap_err().contains("query or fragment"));
        assert!(server_path("https://h/v2/../v1").unwrap_err().contains("`..` segments"));
    }
}
