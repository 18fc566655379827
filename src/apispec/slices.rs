//! The typed slices of the OpenAPI model that keygate reads, deserialized
//! with serde from the tree one object at a time, so that one bad object is
//! one problem (at the exact pointer serde_path_to_error gives) and the rest
//! of the document is still checked. Only the fields keygate uses are named:
//! everything else (schemas, responses, 3.0 and 3.1 differences) is left to
//! the document and never refused here.

use indexmap::IndexMap;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use yaml_serde::{Mapping, Value};

use super::pointer;
use super::Problem;

#[derive(Debug, Deserialize)]
pub(super) struct Info {
    pub title: String,
    pub version: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct Server {
    pub url: String,
}

/// A Security Scheme Object (after its `$ref`, if it is one).
#[derive(Debug, Deserialize)]
pub(super) struct SecurityScheme {
    #[serde(rename = "type")]
    pub kind: String,
    /// For `type: http`: "bearer", "basic", …
    pub scheme: Option<String>,
    /// For `type: oauth2`: flow name → flow, in document order; read one by
    /// one (a flows object may also hold `x-` extensions).
    pub flows: Option<Mapping>,
    /// keygate's extension on a bearer scheme: scope → description.
    #[serde(rename = "x-keygate-scopes")]
    pub keygate_scopes: Option<IndexMap<String, String>>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Flow {
    /// REQUIRED by OpenAPI, but a flow without it simply adds no scope.
    #[serde(default)]
    pub scopes: IndexMap<String, String>,
}

/// A Security Requirement Object: scheme name → scopes (all needed).
pub(super) type Requirement = IndexMap<String, Vec<String>>;

#[derive(Debug, Deserialize)]
pub(super) struct Operation {
    #[serde(rename = "operationId")]
    pub operation_id: Option<String>,
    pub summary: Option<String>,
    /// `None`: the document's `security` applies; `Some([])`: public.
    pub security: Option<Vec<Requirement>>,
}

/// `value` (found at `at`) as a `T`, or the problem at the exact pointer.
pub(super) fn typed<T: DeserializeOwned>(value: &Value, at: &str) -> Result<T, Problem> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let mut here = at.to_owned();
        for segment in error.path().iter() {
            here = match segment {
                serde_path_to_error::Segment::Seq { index } => pointer::push_index(&here, *index),
                serde_path_to_error::Segment::Map { key } => pointer::push(&here, key),
                serde_path_to_error::Segment::Enum { .. } | serde_path_to_error::Segment::Unknown => here,
            };
        }
        Problem::new(here, error.into_inner().to_string())
    })
}

/// The field `key` of `object` (at `at`) as a `T`: `Some(None)` when it is
/// absent, `None` (and a problem) when it is not a `T`.
pub(super) fn field<T: DeserializeOwned>(
    object: &Mapping,
    key: &str,
    at: &str,
    problems: &mut Vec<Problem>,
) -> Option<Option<T>> {
    let Some(value) = object.get(key) else {
        return Some(None);
    };
    match typed(value, &pointer::push(at, key)) {
        Ok(value) => Some(Some(value)),
        Err(problem) => {
            problems.push(problem);
            None
        }
    }
}

/// `openapi`: "3.0.x" or "3.1.x". `None` when the document is of another
/// version (or says none): it is then not read further.
pub(super) fn openapi_version(root: &Mapping, problems: &mut Vec<Problem>) -> Option<String> {
    if root.contains_key("swagger") {
        problems.push(Problem::new(
            "/swagger",
            "this is a Swagger 2.0 document; keygate reads OpenAPI 3.0 and 3.1: convert it first \
             (e.g. swagger2openapi, or the Swagger Editor's \"Convert to OpenAPI 3\")",
        ));
        return None;
    }
    let Some(value) = root.get("openapi") else {
        problems.push(Problem::new("", "no `openapi` field: keygate reads OpenAPI 3.0 and 3.1 documents"));
        return None;
    };
    let Some(version) = value.as_str() else {
        problems.push(Problem::new(
            "/openapi",
            "`openapi` must be a string such as \"3.1.0\" (quote it in YAML: openapi: \"3.1.0\")",
        ));
        return None;
    };
    let supported = ["3.0.", "3.1."].iter().any(|minor| {
        version.strip_prefix(minor).is_some_and(|patch| {
            let digits = patch.split('-').next().unwrap_or("");
            !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
        })
    });
    if !supported {
        problems.push(Problem::new(
            "/openapi",
            format!("OpenAPI {version:?} is not supported; keygate reads OpenAPI 3.0.x and 3.1.x"),
        ));
        return None;
    }
    Some(version.to_owned())
}

pub(super) fn info(root: &Mapping, problems: &mut Vec<Problem>) -> Option<Info> {
    match field::<Info>(root, "info", "", problems)? {
        Some(info) => Some(info),
        None => {
            problems.push(Problem::new("", "no `info` object (with `title` and `version`)"));
            None
        }
    }
}
