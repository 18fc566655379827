//! The security scheme keygate checks and its scope catalogue.
//!
//! The scheme is the one named `keygate` in `components.securitySchemes`, else
//! the document's only OAuth 2.0 (`type: oauth2`) or HTTP bearer scheme. The
//! catalogue is the union of an OAuth 2.0 scheme's `flows.*.scopes` (a name in
//! two flows keeps its first description), or a bearer scheme's
//! `x-keygate-scopes` map.

use yaml_serde::Value;

use super::slices::{self, Flow, SecurityScheme};
use super::{pointer, refs, Problem, ScopeEntry};

/// The name keygate looks for first.
pub(super) const PREFERRED: &str = "keygate";
/// A scope name: it travels in headers (`Keygate-Scopes`) and in
/// space-separated lists (`scope`), so only characters safe in both.
pub(super) const MAX_SCOPE_LEN: usize = 64;

const FLOWS: [&str; 4] = ["implicit", "password", "clientCredentials", "authorizationCode"];

/// The schemes the document declares, and the one keygate checks.
#[derive(Debug, Default)]
pub(super) struct Schemes {
    /// Every name under `components.securitySchemes`.
    pub declared: Vec<String>,
    /// `None` when there is no scheme keygate can check (a problem says why).
    pub chosen: Option<Chosen>,
}

#[derive(Debug)]
pub(super) struct Chosen {
    pub name: String,
    pub catalogue: Vec<ScopeEntry>,
}

impl Chosen {
    pub(super) fn has_scope(&self, name: &str) -> bool {
        self.catalogue.iter().any(|entry| entry.name == name)
    }
}

struct Candidate {
    name: String,
    /// Where the scheme object is (its `$ref`'s target if it is one).
    at: String,
    scheme: Option<SecurityScheme>,
}

impl Candidate {
    fn is_checkable(&self) -> bool {
        self.scheme.as_ref().is_some_and(|s| is_oauth2(s) || is_bearer(s))
    }
}

fn is_oauth2(scheme: &SecurityScheme) -> bool {
    scheme.kind == "oauth2"
}

fn is_bearer(scheme: &SecurityScheme) -> bool {
    scheme.kind == "http" && scheme.scheme.as_deref().is_some_and(|s| s.eq_ignore_ascii_case("bearer"))
}

pub(super) fn choose(root: &Value, problems: &mut Vec<Problem>) -> Schemes {
    const AT: &str = "/components/securitySchemes";
    let Some(declared) = pointer::resolve(root, AT) else {
        problems.push(Problem::new(
            AT,
            "no security scheme: declare the one keygate checks (type oauth2, or http with scheme bearer) \
             under components.securitySchemes, named `keygate`",
        ));
        return Schemes::default();
    };
    let Some(declared) = declared.as_mapping() else {
        problems.push(Problem::new(AT, "components.securitySchemes must be a mapping of name → scheme"));
        return Schemes::default();
    };
    let mut candidates = Vec::new();
    for (name, value) in declared {
        let Some(name) = name.as_str() else { continue };
        let here = pointer::push(AT, name);
        let scheme = refs::follow(root, value, &here, problems).and_then(|(node, at)| {
            slices::typed::<SecurityScheme>(node, &at).map_err(|problem| problems.push(problem)).ok().map(|s| (s, at))
        });
        let (scheme, at) = match scheme {
            Some((scheme, at)) => (Some(scheme), at),
            None => (None, here),
        };
        candidates.push(Candidate { name: name.to_owned(), at, scheme });
    }
    let declared_names = candidates.iter().map(|c| c.name.clone()).collect();
    let chosen = pick(&candidates, problems)
        .map(|candidate| Chosen { name: candidate.name.clone(), catalogue: catalogue(candidate, problems) });
    Schemes { declared: declared_names, chosen }
}

fn pick<'c>(candidates: &'c [Candidate], problems: &mut Vec<Problem>) -> Option<&'c Candidate> {
    const AT: &str = "/components/securitySchemes";
    if let Some(named) = candidates.iter().find(|c| c.name == PREFERRED) {
        return match &named.scheme {
            _ if named.is_checkable() => Some(named),
            // Its own problem (a bad object, a `$ref` that does not resolve) is named already.
            None => None,
            Some(scheme) => {
                problems.push(Problem::new(
                    pointer::push(&named.at, "type"),
                    format!(
                        "the scheme `{PREFERRED}` must be of type oauth2, or http with scheme bearer \
                         (it is {}): keygate checks bearer tokens",
                        describe_kind(scheme)
                    ),
                ));
                None
            }
        };
    }
    let checkable: Vec<&Candidate> = candidates.iter().filter(|c| c.is_checkable()).collect();
    match checkable.as_slice() {
        [only] => Some(only),
        [] => {
            // A scheme that failed to read has its own problem; that may be the one meant.
            if candidates.iter().all(|c| c.scheme.is_some()) {
                problems.push(Problem::new(
                    AT,
                    format!(
                        "no security scheme keygate can check: none of {} is oauth2 or http bearer; \
                         declare one, named `{PREFERRED}`",
                        names(candidates.iter().map(|c| c.name.as_str()))
                    ),
                ));
            }
            None
        }
        several => {
            problems.push(Problem::new(
                AT,
                format!(
                    "several schemes keygate could check ({}): name the one keygate checks `{PREFERRED}`",
                    names(several.iter().map(|c| c.name.as_str()))
                ),
            ));
            None
        }
    }
}

fn names<'n>(names: impl Iterator<Item = &'n str>) -> String {
    let listed: Vec<String> = names.map(|n| format!("`{n}`")).collect();
    if listed.is_empty() {
        "the schemes".to_owned()
    } else {
        listed.join(", ")
    }
}

fn describe_kind(scheme: &SecurityScheme) -> String {
    match (&*scheme.kind, &scheme.scheme) {
        ("http", Some(http)) => format!("http {http}"),
        (kind, _) => kind.to_owned(),
    }
}

fn catalogue(candidate: &Candidate, problems: &mut Vec<Problem>) -> Vec<ScopeEntry> {
    let Some(scheme) = &candidate.scheme else { return Vec::new() };
    let mut catalogue: Vec<ScopeEntry> = Vec::new();
    let mut add = |name: &str, description: &str, at: String, problems: &mut Vec<Problem>| {
        if let Err(message) = check_scope_name(name) {
            problems.push(Problem::new(at, message));
        }
        // Kept even when refused: an operation naming it is then not also
        // told that the scope is unknown.
        if !catalogue.iter().any(|entry| entry.name == name) {
            catalogue.push(ScopeEntry { name: name.to_owned(), description: description.to_owned() });
        }
    };
    if is_oauth2(scheme) {
        let flows_at = pointer::push(&candidate.at, "flows");
        let Some(flows) = &scheme.flows else {
            problems.push(Problem::new(flows_at, "an oauth2 scheme needs `flows` (with their scopes)"));
            return catalogue;
        };
        for (flow_name, flow) in flows {
            let Some(flow_name) = flow_name.as_str().filter(|name| FLOWS.contains(name)) else { continue };
            let flow_at = pointer::push(&flows_at, flow_name);
            let Ok(flow) = slices::typed::<Flow>(flow, &flow_at).map_err(|problem| problems.push(problem)) else {
                continue;
            };
            let scopes_at = pointer::push(&flow_at, "scopes");
            for (name, description) in &flow.scopes {
                add(name, description, pointer::push(&scopes_at, name), problems);
            }
        }
    } else if let Some(scopes) = &scheme.keygate_scopes {
        let scopes_at = pointer::push(&candidate.at, "x-keygate-scopes");
        for (name, description) in scopes {
            add(name, description, pointer::push(&scopes_at, name), problems);
        }
    }
    catalogue
}

/// 1 to 64 characters of `A-Z a-z 0-9 : . _ -`.
pub(super) fn check_scope_name(name: &str) -> Result<(), String> {
    let fine = (1..=MAX_SCOPE_LEN).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'.' | b'_' | b'-'));
    if fine {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a scope name keygate can use: 1 to {MAX_SCOPE_LEN} characters of \
             A-Z a-z 0-9 : . _ - (a scope travels in headers and in space-separated lists)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_names_are_short_and_safe_in_headers_and_lists() {
        for fine in ["items:read", "a", "org.example_stock-write", &"x".repeat(64)] {
            assert_eq!(check_scope_name(fine), Ok(()), "{fine}");
        }
        for bad in ["", "items read", "items/read", "é", "a,b", "x\n", &"x".repeat(65)] {
            assert!(check_scope_name(bad).is_err(), "{bad:?}");
        }
    }
}
