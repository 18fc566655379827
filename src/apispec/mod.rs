//! The API document loader (SPEC §11): turns the OpenAPI 3.0 or 3.1 document
//! (JSON or YAML) of the API keygate stands in front of into plain data — the
//! route table and the scope catalogue — or names every problem with its JSON
//! pointer. It imports nothing from the rest of keygate; the gate, the CLI and
//! the scope types read what it returns.
//!
//! What it reads, and what it leaves alone on purpose:
//! - the scheme keygate checks is the one named `keygate` in
//!   `components.securitySchemes`, else the document's only OAuth 2.0 or HTTP
//!   bearer scheme; its `flows.*.scopes` (or a bearer scheme's
//!   `x-keygate-scopes`) are the catalogue;
//! - each operation's `security` (else the document's) says who may call it;
//! - the base path is the path of `servers[0].url`. A path item's or an
//!   operation's own `servers` are ignored: keygate forwards every route to one
//!   upstream, so a per-operation server would be a promise it cannot keep;
//! - every `$ref` must resolve inside the document (bundle it first);
//! - 3.1's `webhooks` are calls the API makes, not routes: not read.
//!
//! `README-crates.md` beside this file says which crates do the reading and why.

mod describe;
mod pointer;
mod reader;
mod refs;
mod routes;
mod scheme;
mod security;
mod slices;
#[cfg(test)]
mod tests;

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

pub use reader::{MAX_DEPTH, MAX_DOCUMENT_BYTES, MAX_STRING_BYTES, MAX_VALUES};

/// What keygate reads from the API's document.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiSpec {
    pub title: String,
    /// `info.version`: the API's own version.
    pub version: String,
    /// The OpenAPI version the document declares ("3.0.3", "3.1.0").
    pub openapi: String,
    /// The path of `servers[0].url` ("/v2"), without a trailing slash; "" when
    /// there is none.
    pub base_path: String,
    /// The name of the security scheme keygate checks.
    pub scheme: String,
    /// The scope catalogue, in document order, each name once.
    pub catalogue: Vec<ScopeEntry>,
    /// The route table, in document order.
    pub operations: Vec<Operation>,
    /// The whole document as JSON (YAML converted), `$ref`s as written.
    pub document: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeEntry {
    pub name: String,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// Upper case: GET, PUT, POST, DELETE, OPTIONS, HEAD, PATCH or TRACE.
    pub method: String,
    /// The base path and the template: "/v2/items/{sku}".
    pub path: String,
    /// The template as the document writes it: "/items/{sku}".
    pub template: String,
    pub operation_id: Option<String>,
    pub summary: Option<String>,
    pub access: Access,
    /// Where the operation object is written: "/paths/~1items~1{sku}/get", or
    /// the target's pointer when the path item is a `$ref` (so that it
    /// resolves in `document`).
    pub pointer: String,
}

/// Who may call an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// No token needed (`security: []`, or an alternative that is `{}`); the
    /// call is still audited.
    Public,
    /// A valid token that holds, for at least one alternative, every scope it
    /// lists. `[[]]`: any valid token, no scope needed.
    Token { any_of: Vec<Vec<String>> },
}

impl Access {
    /// Any valid token, no scope needed.
    pub fn any_token() -> Self {
        Access::Token { any_of: vec![Vec::new()] }
    }
}

impl fmt::Display for Access {
    /// "public", "any valid token", "items:read", "stock:write and
    /// warehouses:read", "(a and b) or c".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Access::Token { any_of } = self else {
            return f.write_str("public");
        };
        let several = any_of.len() > 1;
        let alternatives: Vec<String> = any_of
            .iter()
            .map(|scopes| match scopes.as_slice() {
                [] => "any valid token".to_owned(),
                [one] => one.clone(),
                all if several => format!("({})", all.join(" and ")),
                all => all.join(" and "),
            })
            .collect();
        f.write_str(&alternatives.join(" or "))
    }
}

/// One thing wrong with a document, where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// A JSON pointer into the document ("" for the document as a whole).
    pub pointer: String,
    pub message: String,
}

impl Problem {
    pub fn new(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        Problem { pointer: pointer.into(), message: message.into() }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = if self.pointer.is_empty() { "(document)" } else { &self.pointer };
        write!(f, "{at}: {}", self.message)
    }
}

/// A path keygate answers itself; no operation of the document may sit there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserved {
    /// This path exactly ("/api/v1/token").
    Exact(&'static str),
    /// Every path that starts with this ("/oauth/"); end it with `/` to
    /// reserve a folder, which then also covers the folder itself ("/oauth").
    Prefix(&'static str),
}

impl Reserved {
    fn covers(&self, path: &str) -> bool {
        match *self {
            Reserved::Exact(exact) => path == exact,
            Reserved::Prefix(prefix) => {
                path.starts_with(prefix) || (prefix.ends_with('/') && path == &prefix[..prefix.len() - 1])
            }
        }
    }
}

/// Why a document file could not be used.
#[derive(Debug)]
pub enum LoadError {
    /// The file could not be read.
    Read { path: PathBuf, source: std::io::Error },
    /// The file was read; the document has problems.
    Problems { path: PathBuf, problems: Vec<Problem> },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Read { path, source } => write!(f, "cannot read {}: {source}", path.display()),
            LoadError::Problems { path, problems } => {
                let count = problems.len();
                write!(f, "{}: {count} problem{}", path.display(), if count == 1 { "" } else { "s" })?;
                for problem in problems {
                    write!(f, "\n  {problem}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LoadError::Read { source, .. } => Some(source),
            LoadError::Problems { .. } => None,
        }
    }
}

/// Reads the document at `path` (JSON or YAML, told apart by its content).
/// A file larger than [`MAX_DOCUMENT_BYTES`] is refused before it is read.
pub fn load(path: &Path, reserved: &[Reserved]) -> Result<ApiSpec, LoadError> {
    let read_error = |source| LoadError::Read { path: path.to_owned(), source };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let len = file.metadata().map_err(read_error)?.len();
    if len > MAX_DOCUMENT_BYTES as u64 {
        let problems = vec![reader::too_large(len)];
        return Err(LoadError::Problems { path: path.to_owned(), problems });
    }
    // The file may grow between the look and the read: never take more.
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(MAX_DOCUMENT_BYTES as u64 + 1).read_to_end(&mut bytes).map_err(read_error)?;
    parse_bytes(&bytes, reserved).map_err(|problems| LoadError::Problems { path: path.to_owned(), problems })
}

/// [`parse`] for bytes that have yet to be shown to be UTF-8.
pub fn parse_bytes(bytes: &[u8], reserved: &[Reserved]) -> Result<ApiSpec, Vec<Problem>> {
    if bytes.len() > MAX_DOCUMENT_BYTES {
        return Err(vec![reader::too_large(bytes.len() as u64)]);
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => parse(text, reserved),
        Err(error) => Err(vec![Problem::new(
            "",
            format!(
                "the document is not UTF-8 text (invalid byte at offset {}); save it as UTF-8",
                error.valid_up_to()
            ),
        )]),
    }
}

/// Reads a document (JSON if it starts with `{` or `[`, else YAML) into the
/// route table and the scope catalogue, or names every problem, sorted by
/// pointer. `reserved` are keygate's own paths.
pub fn parse(text: &str, reserved: &[Reserved]) -> Result<ApiSpec, Vec<Problem>> {
    let tree = reader::read(text).map_err(|problem| vec![problem])?;
    let mut problems = Vec::new();
    let spec = build(&tree, reserved, &mut problems);
    match spec {
        Some(spec) if problems.is_empty() => Ok(spec),
        _ => {
            problems.sort_by(|a, b| pointer::compare(&a.pointer, &b.pointer).then_with(|| a.message.cmp(&b.message)));
            problems.dedup();
            Err(problems)
        }
    }
}

fn build(tree: &yaml_serde::Value, reserved: &[Reserved], problems: &mut Vec<Problem>) -> Option<ApiSpec> {
    let Some(root) = tree.as_mapping() else {
        problems.push(Problem::new(
            "",
            format!("the document must be a mapping (an OpenAPI object), not {}", reader::kind(tree)),
        ));
        return None;
    };
    // A document of another version is refused whole: read as 3.x it would
    // only give problems that are not the real one.
    let openapi = slices::openapi_version(root, problems)?;
    refs::check_all(tree, problems);
    let info = slices::info(root, problems);
    let base_path = routes::base_path(root, problems);
    let schemes = scheme::choose(tree, problems);
    let top_security = if routes::null_security(tree, "", problems) {
        None
    } else {
        slices::field::<Vec<slices::Requirement>>(root, "security", "", problems).flatten()
    };
    let default_access = match &top_security {
        Some(requirements) => security::access(requirements, "/security", &schemes, problems),
        None => Access::any_token(),
    };
    let operations = routes::operations(tree, &base_path, &schemes, &default_access, reserved, problems);
    let info = info?;
    let chosen = schemes.chosen?;
    // Keys are always strings (the reader makes them so), so this holds; say
    // so rather than hand back a document that is not the one read.
    let document = match serde_json::to_value(tree) {
        Ok(document) => document,
        Err(error) => {
            problems.push(Problem::new("", format!("the document cannot be written as JSON: {error}")));
            return None;
        }
    };
    Some(ApiSpec {
        title: info.title,
        version: info.version,
        openapi,
        base_path,
        scheme: chosen.name,
        catalogue: chosen.catalogue,
        operations,
        document,
    })
}
