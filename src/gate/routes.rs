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
        self.resolve(method, path).0
    }

    /// The match and the index of its route label (see [`label`](Self::label)):
    /// the operation's path pattern, the public path, or `unmatched`.
    pub fn resolve(&self, method: &Method, path: &str) -> (RouteMatch, usize) {
        if let Some(i) = self.public.iter().position(|(m, p)| m == method && *p == path) {
            return (RouteMatch::Public, self.operations.len() + i);
        }
        let mut allowed: Vec<&str> = Vec::new();
        let mut label = None;
        for (i, (def, entry)) in self.operations.iter().enumerate() {
            if def.is_match(path) {
                if entry.method == method {
                    return (RouteMatch::Operation(entry.scope), i);
                }
                label.get_or_insert(i);
                allowed.push(entry.method.as_str());
            }
        }
        for (i, (m, p)) in self.public.iter().enumerate() {
            if *p == path {
                label.get_or_insert(self.operations.len() + i);
                allowed.push(m.as_str());
            }
        }
        let Some(label) = label else { return (RouteMatch::NotFound, self.unmatched()) };
        allowed.sort_unstable();
        allowed.dedup();
        (RouteMatch::MethodNotAllowed { allow: allowed.join(", ") }, label)
    }

    fn unmatched(&self) -> usize {
        self.operations.len() + self.public.len()
    }

    /// The metrics label of a route index from [`resolve`](Self::resolve).
    pub fn label(&self, index: usize) -> &'static str {
        match self.operations.get(index) {
            Some((_, entry)) => entry.path,
            None => self.public.get(index - self.operations.len()).map_or(crate::metrics::UNMATCHED, |(_, p)| p),
        }
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
