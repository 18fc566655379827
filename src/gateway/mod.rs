//! keygate in front of an API (SPEC §11). The API is what its OpenAPI
//! document says: the route table and the scope catalogue are read from it
//! (the built-in demo's document, or the operator's `--api-spec`), and one
//! gate serves the three ways in: the demo API, the reverse proxy
//! (`--upstream`) and forward auth (`/gate/check`). SIGHUP reloads the
//! document; a document with a problem is refused and the old one kept.

pub mod document;
pub mod proxy;

use std::path::PathBuf;
use std::sync::Arc;

use actix_web::http::Method;
use actix_web::web;
use arc_swap::ArcSwap;

use crate::apispec::{self, Reserved};
use crate::config::PublicUrl;
use crate::gate::routes::{Access, Handler, Operation, RouteError, RouteTable};
use crate::tokens::scopes::{Scope, ScopeCatalogue};

/// keygate's own paths: an API document may not declare them, and the
/// proxy never forwards them.
pub const RESERVED: &[Reserved] = &[
    Reserved::Exact("/"),
    Reserved::Exact(crate::api::TOKEN_PATH),
    Reserved::Exact(crate::api::ROTATE_PATH),
    Reserved::Exact(crate::api::openapi::PATH),
    Reserved::Exact(crate::api::WRONG_TOKEN_ENDPOINT),
    Reserved::Prefix("/oauth/"),
    Reserved::Prefix("/.well-known/"),
    Reserved::Prefix("/settings/"),
    Reserved::Prefix("/admin/"),
    Reserved::Prefix("/static/"),
    Reserved::Prefix("/docs/"),
    Reserved::Prefix("/gate/"),
    Reserved::Prefix("/secret-scanning/"),
    Reserved::Prefix("/login/"),
    Reserved::Exact("/logout"),
    Reserved::Exact("/signup"),
    Reserved::Exact("/setup"),
    Reserved::Prefix("/device/"),
    Reserved::Exact("/healthz"),
    Reserved::Exact("/readyz"),
    Reserved::Exact("/metrics"),
];

/// Whether `path` is one of keygate's own (see [`RESERVED`]).
pub fn is_reserved(path: &str) -> bool {
    RESERVED.iter().any(|reserved| match reserved {
        Reserved::Exact(exact) => path == *exact,
        Reserved::Prefix(prefix) => path.starts_with(prefix) || path == prefix.trim_end_matches('/'),
    })
}

/// Where the API's document comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiSource {
    /// The built-in demo shop's document, made from its code.
    Demo,
    /// The operator's document (`--api-spec`).
    File(PathBuf),
}

/// How keygate stands in front of the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// The built-in demo API, served under `/api/`.
    Demo,
    /// `--api-spec` without `--upstream`: forward auth only (`/gate/check`).
    ForwardAuth,
    /// `--upstream`: every request that is not keygate's own goes through
    /// the gate to the upstream.
    Proxy,
}

/// The API as its document describes it, with keygate's own routes.
pub struct Api {
    pub title: String,
    pub catalogue: ScopeCatalogue,
    pub routes: RouteTable,
    /// The document keygate serves at `/api/openapi.json` (keygate's own
    /// paths and answers added), and the API reference page renders.
    pub document: serde_json::Value,
    /// The same, as served: serialised once.
    pub served: web::Bytes,
}

/// Why a document could not become the API.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Document(#[from] apispec::LoadError),
    #[error("the API document has {} problem(s):\n{}", .0.len(), .0.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Problems(Vec<apispec::Problem>),
    #[error("the route table cannot be built: {0}")]
    Routes(#[from] RouteError),
}

impl Api {
    /// An API of these operations (keygate's own added), served without a
    /// document of its own: for tests and embedding.
    pub fn of(title: &str, catalogue: ScopeCatalogue, operations: Vec<Operation>) -> Result<Self, LoadError> {
        let mut all = own_operations();
        all.extend(operations);
        let document = serde_json::json!({"openapi": "3.1.0", "info": {"title": title, "version": "0"}, "paths": {}});
        let served = web::Bytes::from(serde_json::to_vec_pretty(&document).unwrap_or_default());
        Ok(Self { title: title.to_owned(), catalogue, routes: RouteTable::new(all)?, document, served })
    }

    /// Reads the document and builds the API from it.
    pub fn load(source: &ApiSource, mode: &Mode, public_url: &PublicUrl) -> Result<Self, LoadError> {
        let spec = match source {
            ApiSource::Demo => {
                let own = crate::api::openapi::demo_document();
                let text = serde_json::to_string(&own).unwrap_or_default();
                apispec::parse(&text, RESERVED).map_err(LoadError::Problems)?
            }
            ApiSource::File(path) => apispec::load(path, RESERVED)?,
        };
        let handler = if *mode == Mode::Proxy { Handler::Upstream } else { Handler::Keygate };
        Self::from_spec(spec, source, handler, public_url)
    }

    fn from_spec(
        spec: apispec::ApiSpec,
        source: &ApiSource,
        handler: Handler,
        public_url: &PublicUrl,
    ) -> Result<Self, LoadError> {
        let catalogue = ScopeCatalogue::new(spec.catalogue.iter().map(|e| (e.name.as_str(), e.description.as_str())));
        let mut operations = own_operations();
        for operation in &spec.operations {
            let method = Method::from_bytes(operation.method.as_bytes()).unwrap_or(Method::GET);
            let access = match &operation.access {
                apispec::Access::Public => Access::Public,
                apispec::Access::Token { any_of } => Access::Token(
                    any_of.iter().map(|all| all.iter().filter_map(|name| Scope::named(name)).collect()).collect(),
                ),
            };
            operations.push(Operation::new(method, operation.path.clone(), access, handler));
        }
        let routes = RouteTable::new(operations)?;
        let document = match source {
            ApiSource::Demo => crate::api::openapi::document(),
            ApiSource::File(_) => document::served(&spec, handler == Handler::Upstream, public_url),
        };
        let served = web::Bytes::from(serde_json::to_vec_pretty(&document).unwrap_or_default());
        Ok(Self { title: spec.title, catalogue, routes, document, served })
    }
}

/// keygate's own routes, in every mode: the calling token, its rotation,
/// the OpenAPI document, and the answer to a common mistake.
fn own_operations() -> Vec<Operation> {
    let own = |method, path: &str, access| Operation::new(method, path, access, Handler::Keygate);
    vec![
        own(Method::GET, crate::api::TOKEN_PATH, Access::any_token()),
        own(Method::POST, crate::api::ROTATE_PATH, Access::any_token()),
        own(Method::GET, crate::api::openapi::PATH, Access::Public),
        own(Method::GET, crate::api::WRONG_TOKEN_ENDPOINT, Access::Public),
        own(Method::POST, crate::api::WRONG_TOKEN_ENDPOINT, Access::Public),
    ]
}

/// The API in force, swapped whole on a reload: a request keeps the API it
/// started with.
pub struct LiveApi {
    current: ArcSwap<Api>,
    pub source: ApiSource,
    pub mode: Mode,
    public_url: PublicUrl,
}

impl LiveApi {
    pub fn load(source: ApiSource, mode: Mode, public_url: PublicUrl) -> Result<Self, LoadError> {
        let api = Api::load(&source, &mode, &public_url)?;
        Ok(Self { current: ArcSwap::from_pointee(api), source, mode, public_url })
    }

    /// An API that is not read from a file and never reloads.
    pub fn fixed(api: Api, mode: Mode) -> Self {
        let public_url = "http://127.0.0.1:8080".parse().expect("a valid URL");
        Self { current: ArcSwap::from_pointee(api), source: ApiSource::Demo, mode, public_url }
    }

    /// The API now.
    pub fn current(&self) -> Arc<Api> {
        self.current.load_full()
    }

    /// Reads the document again; on a problem the API in force stays.
    pub fn reload(&self) -> Result<Arc<Api>, LoadError> {
        let api = Arc::new(Api::load(&self.source, &self.mode, &self.public_url)?);
        self.current.store(api.clone());
        Ok(api)
    }

    /// Whether the gate takes this request: the demo's `/api/`, or in proxy
    /// mode everything that is not keygate's own (and keygate's own API).
    pub fn gated(&self, path: &str) -> bool {
        let own_api = path == "/api" || path.starts_with("/api/");
        match self.mode {
            Mode::Demo | Mode::ForwardAuth => own_api,
            Mode::Proxy => {
                !is_reserved(path)
                    || [crate::api::TOKEN_PATH, crate::api::ROTATE_PATH, crate::api::openapi::PATH].contains(&path)
                    || path == crate::api::WRONG_TOKEN_ENDPOINT
            }
        }
    }
}

/// Reloads the document on SIGHUP, for as long as the server runs.
#[cfg(unix)]
pub fn reload_on_sighup(live: Arc<LiveApi>, tokens: Arc<crate::tokens::cache::TokenCache>) {
    tokio::spawn(async move {
        let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP: the API document will not be reloaded");
            return;
        };
        while hangups.recv().await.is_some() {
            match live.reload() {
                Ok(api) => {
                    // Personal tokens carry the catalogue's scopes: read again.
                    tokens.invalidate();
                    tracing::info!(
                        routes = api.routes.operations().len(),
                        scopes = api.catalogue.entries().len(),
                        "SIGHUP: the API document was reloaded"
                    );
                }
                Err(e) => tracing::error!(error = %e, "SIGHUP: the API document was refused; the previous one stays"),
            }
        }
    });
}

#[cfg(not(unix))]
pub fn reload_on_sighup(_: Arc<LiveApi>, _: Arc<crate::tokens::cache::TokenCache>) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keygate_paths_are_reserved_and_others_are_not() {
        for own in ["/", "/oauth/token", "/oauth", "/settings/tokens", "/gate/check", "/api/v1/token", "/static/x.css"]
        {
            assert!(is_reserved(own), "{own}");
        }
        for theirs in ["/v2/items", "/api/v1/orders", "/oauthx", "/settingsx", "/loginx"] {
            assert!(!is_reserved(theirs), "{theirs}");
        }
    }
}
