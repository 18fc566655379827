//! What the gate knows about a request before routing: which operation it
//! is and the scope that needs. Startup builds this table from the API's
//! route declarations and hands it to the gate, so the gate never reads the
//! API module itself.

use actix_web::dev::ResourceDef;
use actix_web::http::Method;

use crate::tokens::Scope;

/// One operation: method, path pattern (`/api/v1/orders/{id}`), scope.
#[derive(Debug, Clone)]
pub struct RouteEntry {
    pub method: Method,
    pub path: &'static str,
    /// `None`: a valid token is enough.
    pub scope: Option<Scope>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteMatch {
    /// A declared operation and the scope it needs.
    Operation(Option<Scope>),
    /// Open to anyone (the OpenAPI document).
    Public,
    /// The path exists with other methods, listed for `Allow`.
    MethodNotAllowed {
        allow: String,
    },
    NotFound,
}

pub struct RouteTable {
    operations: Vec<(ResourceDef, RouteEntry)>,
    public: Vec<(Method, &'static str)>,
}

impl RouteTable {
    pub fn new(operations: impl IntoIterator<Item = RouteEntry>, public: &[(Method, &'static str)]) -> Self {
        Self {
            operations: operations.into_iter().map(|entry| (ResourceDef::new(entry.path), entry)).collect(),
            public: public.to_vec(),
        }
    }

    pub fn matches(&self, method: &Method, path: &str) -> RouteMatch {
        if self.public.iter().any(|(m, p)| m == method && *p == path) {
            return RouteMatch::Public;
        }
        let mut allowed: Vec<&str> = Vec::new();
        for (def, entry) in &self.operations {
            if def.is_match(path) {
                if entry.method == method {
                    return RouteMatch::Operation(entry.scope);
                }
                allowed.push(entry.method.as_str());
            }
        }
        allowed.extend(self.public.iter().filter(|(_, p)| *p == path).map(|(m, _)| m.as_str()));
        if allowed.is_empty() {
            return RouteMatch::NotFound;
        }
        allowed.sort_unstable();
        allowed.dedup();
        RouteMatch::MethodNotAllowed { allow: allowed.join(", ") }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        let entry = |method, path, scope| RouteEntry { method, path, scope };
        RouteTable::new(
            [
                entry(Method::GET, "/api/v1/token", None),
                entry(Method::GET, "/api/v1/orders", Some(Scope::OrdersRead)),
                entry(Method::POST, "/api/v1/orders", Some(Scope::OrdersWrite)),
                entry(Method::GET, "/api/v1/orders/{id}", Some(Scope::OrdersRead)),
            ],
            &[(Method::GET, "/api/openapi.json")],
        )
    }

    #[test]
    fn routes_resolve_to_their_declared_scope() {
        let table = table();
        assert_eq!(table.matches(&Method::GET, "/api/v1/token"), RouteMatch::Operation(None));
        assert_eq!(
            table.matches(&Method::DELETE, "/api/v1/token"),
            RouteMatch::MethodNotAllowed { allow: "GET".into() }
        );
        assert_eq!(
            table.matches(&Method::PUT, "/api/v1/orders"),
            RouteMatch::MethodNotAllowed { allow: "GET, POST".into() }
        );
        assert_eq!(table.matches(&Method::GET, "/api/v1/nothing"), RouteMatch::NotFound);
        assert_eq!(table.matches(&Method::GET, "/api/v1/orders/12"), RouteMatch::Operation(Some(Scope::OrdersRead)));
        assert_eq!(table.matches(&Method::POST, "/api/v1/orders"), RouteMatch::Operation(Some(Scope::OrdersWrite)));
        assert_eq!(table.matches(&Method::GET, "/api/openapi.json"), RouteMatch::Public);
        assert_eq!(
            table.matches(&Method::POST, "/api/openapi.json"),
            RouteMatch::MethodNotAllowed { allow: "GET".into() }
        );
    }
}
