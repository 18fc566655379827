//! What the gate knows about a request before anything else: which
//! operation of the API's document it is, and who may call it. Built from
//! the loaded document (the demo's or the operator's, see `crate::gateway`)
//! plus keygate's own routes; a radix tree (`matchit`) finds the path.
//!
//! The path is matched as it arrived, never decoded or normalised first:
//! a literal segment matches only itself, byte for byte, so a request
//! reaches (and is forwarded to) exactly the route it matches. Paths that
//! gateways are bypassed with are refused outright: dot segments (`..`,
//! `%2e%2e`), encoded or literal separators in a segment (`%2F`, `%5C`,
//! `\`), empty segments (`//`), NUL and control characters.

use std::sync::Arc;

use actix_web::http::Method;

use crate::metrics::RouteCounters;
use crate::tokens::scopes::Scope;

/// Who may call an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without a token (`security: []`); still audited.
    Public,
    /// A valid token holding every scope of at least one alternative;
    /// `[[]]`: any valid token.
    Token(Vec<Vec<Scope>>),
}

impl Access {
    /// Any valid token, no scope.
    pub fn any_token() -> Self {
        Access::Token(vec![Vec::new()])
    }

    pub fn scope(scope: Scope) -> Self {
        Access::Token(vec![vec![scope]])
    }

    /// What the holder of `held` lacks to call this: `None` when nothing
    /// (one alternative is met), else the scopes of the alternative that
    /// needs the fewest more.
    pub fn missing(&self, grants: impl Fn(&Scope) -> bool) -> Option<Vec<Scope>> {
        let Access::Token(alternatives) = self else { return None };
        if alternatives.iter().any(|alternative| alternative.iter().all(&grants)) {
            return None;
        }
        let mut fewest: Option<Vec<Scope>> = None;
        for alternative in alternatives {
            let lacking: Vec<Scope> = alternative.iter().filter(|s| !grants(s)).cloned().collect();
            if fewest.as_ref().is_none_or(|f| lacking.len() < f.len()) {
                fewest = Some(lacking);
            }
        }
        fewest
    }

    /// The requirement as the audit row records it: `orders:read`,
    /// `stock:write warehouses:read` (all of them), `a or b`.
    fn label(&self) -> Option<Arc<str>> {
        let Access::Token(alternatives) = self else { return None };
        let text: Vec<String> = alternatives
            .iter()
            .filter(|a| !a.is_empty())
            .map(|a| a.iter().map(Scope::as_str).collect::<Vec<_>>().join(" "))
            .collect();
        (!text.is_empty()).then(|| Arc::from(text.join(" or ")))
    }
}

/// Who answers a matched request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    /// keygate itself (its own endpoints, or the built-in demo API).
    Keygate,
    /// The upstream (`--upstream`), through the proxy.
    Upstream,
}

/// One operation: method, path template as clients call it, who may call.
#[derive(Debug, Clone)]
pub struct Operation {
    pub method: Method,
    /// `/v2/items/{sku}`: the document's base path and template.
    pub path: String,
    pub access: Access,
    pub handler: Handler,
    /// The scope text of the audit row, made once.
    pub required: Option<Arc<str>>,
}

impl Operation {
    pub fn new(method: Method, path: impl Into<String>, access: Access, handler: Handler) -> Self {
        let required = access.label();
        Self { method, path: path.into(), access, handler, required }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteMatch {
    /// The index of the operation.
    Operation(usize),
    /// The path exists with other methods, listed for `Allow`.
    MethodNotAllowed {
        allow: String,
    },
    NotFound,
    /// A path gateways are bypassed with; never matched, never forwarded.
    Refused(&'static str),
}

struct PathEntry {
    template: String,
    methods: Vec<(Method, usize)>,
}

pub struct RouteTable {
    operations: Vec<Operation>,
    router: matchit::Router<usize>,
    paths: Vec<PathEntry>,
    counters: RouteCounters,
}

/// Why a table could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("{method} {path} is declared twice")]
    Duplicate { method: Method, path: String },
    #[error("{path} cannot be routed: {why}")]
    Unroutable { path: String, why: String },
}

/// A template in the router's syntax, each parameter named by its position
/// (`/items/{sku}/stock` → `/items/{p1}/stock`): the names do not matter,
/// and different names at one position would otherwise conflict.
fn router_path(template: &str) -> String {
    template
        .split('/')
        .enumerate()
        .map(|(i, segment)| {
            if segment.starts_with('{') && segment.ends_with('}') {
                format!("{{p{i}}}")
            } else {
                segment.replace('{', "{{").replace('}', "}}")
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

impl RouteTable {
    pub fn new(operations: Vec<Operation>) -> Result<Self, RouteError> {
        let mut router = matchit::Router::new();
        let mut paths: Vec<PathEntry> = Vec::new();
        for (index, operation) in operations.iter().enumerate() {
            let key = router_path(&operation.path);
            let path_index = match paths.iter().position(|p| router_path(&p.template) == key) {
                Some(existing) => existing,
                None => {
                    router
                        .insert(key.as_str(), paths.len())
                        .map_err(|e| RouteError::Unroutable { path: operation.path.clone(), why: e.to_string() })?;
                    paths.push(PathEntry { template: operation.path.clone(), methods: Vec::new() });
                    paths.len() - 1
                }
            };
            let methods = &mut paths[path_index].methods;
            if methods.iter().any(|(m, _)| *m == operation.method) {
                return Err(RouteError::Duplicate { method: operation.method.clone(), path: operation.path.clone() });
            }
            methods.push((operation.method.clone(), index));
        }
        let labels = paths.iter().map(|p| p.template.clone()).collect();
        Ok(Self { operations, router, paths, counters: RouteCounters::new(labels) })
    }

    pub fn operation(&self, index: usize) -> &Operation {
        &self.operations[index]
    }

    pub fn operations(&self) -> &[Operation] {
        &self.operations
    }

    pub fn matches(&self, method: &Method, path: &str) -> RouteMatch {
        self.resolve(method, path).0
    }

    /// The match and the index of its metrics label: the path template, or
    /// `unmatched`.
    pub fn resolve(&self, method: &Method, path: &str) -> (RouteMatch, usize) {
        let unmatched = self.paths.len();
        if let Err(why) = check_path(path) {
            return (RouteMatch::Refused(why), unmatched);
        }
        let Ok(found) = self.router.at(path) else { return (RouteMatch::NotFound, unmatched) };
        let entry = &self.paths[*found.value];
        if let Some((_, index)) = entry.methods.iter().find(|(m, _)| m == method) {
            return (RouteMatch::Operation(*index), *found.value);
        }
        let mut allow: Vec<&str> = entry.methods.iter().map(|(m, _)| m.as_str()).collect();
        allow.sort_unstable();
        allow.dedup();
        (RouteMatch::MethodNotAllowed { allow: allow.join(", ") }, *found.value)
    }

    /// The per-route request counters (see `metrics`).
    pub fn counters(&self) -> &RouteCounters {
        &self.counters
    }
}

/// Refuses a raw path that a gateway could be bypassed with.
fn check_path(path: &str) -> Result<(), &'static str> {
    if !path.starts_with('/') {
        return Err("the path must begin with `/`");
    }
    if path.bytes().any(|b| b.is_ascii_control() || b == b'\\') {
        return Err("the path holds a control character or a backslash");
    }
    let segments: Vec<&str> = path[1..].split('/').collect();
    let last = segments.len() - 1;
    for (i, segment) in segments.iter().enumerate() {
        // A trailing slash is a path of its own (it matches what declares it).
        if segment.is_empty() && i != last {
            return Err("the path holds an empty segment (`//`)");
        }
        let lower = segment.to_ascii_lowercase();
        if lower.contains("%2f") || lower.contains("%5c") || lower.contains("%00") {
            return Err("the path holds an encoded `/`, `\\` or NUL (%2F, %5C, %00)");
        }
        let decoded_dots = lower.replace("%2e", ".");
        if decoded_dots == "." || decoded_dots == ".." {
            return Err("the path holds a `.` or `..` segment (or its encoding, %2e)");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::scopes::{ScopeCatalogue, ScopeSet};

    fn scope(name: &str) -> Scope {
        Scope::named(name).unwrap()
    }

    fn table() -> RouteTable {
        let op = |method, path: &str, access| Operation::new(method, path, access, Handler::Keygate);
        RouteTable::new(vec![
            op(Method::GET, "/api/v1/token", Access::any_token()),
            op(Method::GET, "/api/v1/orders", Access::scope(scope("orders:read"))),
            op(Method::POST, "/api/v1/orders", Access::scope(scope("orders:write"))),
            op(Method::GET, "/api/v1/orders/{id}", Access::scope(scope("orders:read"))),
            op(Method::GET, "/api/v1/orders/{order}/items", Access::scope(scope("orders:read"))),
            op(Method::GET, "/api/v1/orders/recent", Access::Public),
            op(Method::GET, "/api/openapi.json", Access::Public),
        ])
        .unwrap()
    }

    #[test]
    fn routes_resolve_to_their_operation_and_literal_segments_win() {
        let table = table();
        let op = |m: Method, p: &str| match table.matches(&m, p) {
            RouteMatch::Operation(i) => table.operation(i).path.clone(),
            other => format!("{other:?}"),
        };
        assert_eq!(op(Method::GET, "/api/v1/token"), "/api/v1/token");
        assert_eq!(op(Method::GET, "/api/v1/orders/12"), "/api/v1/orders/{id}");
        assert_eq!(op(Method::GET, "/api/v1/orders/12/items"), "/api/v1/orders/{order}/items");
        assert_eq!(op(Method::GET, "/api/v1/orders/recent"), "/api/v1/orders/recent");
        assert_eq!(op(Method::POST, "/api/v1/orders"), "/api/v1/orders");
        assert_eq!(
            table.matches(&Method::DELETE, "/api/v1/token"),
            RouteMatch::MethodNotAllowed { allow: "GET".into() }
        );
        assert_eq!(
            table.matches(&Method::PUT, "/api/v1/orders"),
            RouteMatch::MethodNotAllowed { allow: "GET, POST".into() }
        );
        assert_eq!(table.matches(&Method::GET, "/api/v1/nothing"), RouteMatch::NotFound);
        assert_eq!(table.matches(&Method::GET, "/api/v1/orders/"), RouteMatch::NotFound, "no template has the slash");
    }

    /// How gateways get bypassed: none of these reaches a route it does not
    /// match literally.
    #[test]
    fn paths_that_differ_only_by_encoding_never_match_and_bypass_tricks_are_refused() {
        let table = table();
        for refused in [
            "/api/v1/orders/../token",
            "/api/v1/orders/%2e%2e/token",
            "/api/v1/orders/.%2E/token",
            "/api/v1/orders/12%2Fitems",
            "/api/v1/orders/12%2fitems",
            "/api/v1/orders/12%5Citems",
            "/api/v1/orders/12\\items",
            "/api/v1//orders",
            "/api/v1/./orders",
            "/api/v1/orders/1%00",
            "api/v1/orders",
        ] {
            assert!(matches!(table.matches(&Method::GET, refused), RouteMatch::Refused(_)), "{refused}");
        }
        for unmatched in ["/api/v1/%6Frders", "/API/v1/orders", "/api/v1/orders%20", "/api/v1/token%2E"] {
            assert_eq!(table.matches(&Method::GET, unmatched), RouteMatch::NotFound, "{unmatched}");
        }
        // An encoded character inside a parameter is the parameter's business.
        assert!(matches!(table.matches(&Method::GET, "/api/v1/orders/A%20B"), RouteMatch::Operation(_)));
    }

    #[test]
    fn a_requirement_names_what_the_closest_alternative_lacks() {
        let catalogue = ScopeCatalogue::new([("a:read", ""), ("a:write", ""), ("b:read", ""), ("c:read", "")]);
        let access = Access::Token(vec![vec![scope("a:write"), scope("b:read")], vec![scope("c:read")]]);
        assert_eq!(access.label().as_deref(), Some("a:write b:read or c:read"));
        let held = ScopeSet::new([scope("a:write")]);
        assert_eq!(access.missing(|s| held.grants(s, &catalogue)), Some(vec![scope("b:read")]));
        let other = ScopeSet::new([scope("c:read")]);
        assert_eq!(access.missing(|s| other.grants(s, &catalogue)), None);
        assert_eq!(Access::any_token().missing(|_| false), None);
        assert_eq!(Access::any_token().label(), None);
    }

    #[test]
    fn a_method_declared_twice_is_refused() {
        let op = |path: &str| Operation::new(Method::GET, path, Access::Public, Handler::Upstream);
        assert!(matches!(RouteTable::new(vec![op("/a/{x}"), op("/a/{y}")]), Err(RouteError::Duplicate { .. })));
    }
}
