//! `$ref`s: every one in the document must point inside it (`#/…`), and to
//! something that is there. keygate reads one file; a reference to another
//! file or a URL is refused (bundle the document first).
//!
//! The whole tree is walked, examples included: a string `$ref` anywhere is
//! taken for a reference. A `$ref` whose value is not a string (a schema
//! property named `$ref`) is data and is skipped.

use yaml_serde::Value;

use super::pointer;
use super::Problem;

/// The most `$ref`s followed one after the other (a path item that is a
/// `$ref` to a `$ref` …) before giving up on a cycle.
const MAX_HOPS: usize = 16;

/// Names every `$ref` that does not resolve inside the document.
pub(super) fn check_all(root: &Value, problems: &mut Vec<Problem>) {
    // Depth is bounded by the reader; a stack instead of recursion all the same.
    let mut stack: Vec<(&Value, String)> = vec![(root, String::new())];
    while let Some((node, at)) = stack.pop() {
        match node {
            Value::Mapping(mapping) => {
                for (key, value) in mapping {
                    let Some(key) = key.as_str() else { continue };
                    let here = pointer::push(&at, key);
                    match (key, value) {
                        ("$ref", Value::String(reference)) => {
                            if let Err(message) = target(root, reference) {
                                problems.push(Problem::new(here, message));
                            }
                        }
                        _ => stack.push((value, here)),
                    }
                }
            }
            Value::Sequence(items) => {
                for (index, item) in items.iter().enumerate() {
                    stack.push((item, pointer::push_index(&at, index)));
                }
            }
            _ => {}
        }
    }
}

/// What the `$ref` `reference` points to, with its pointer.
pub(super) fn target<'a>(root: &'a Value, reference: &str) -> Result<(&'a Value, String), String> {
    let Some(fragment) = reference.strip_prefix('#') else {
        return Err(format!(
            "external $ref is not supported (`{reference}`): keygate reads one file; \
             bundle the document first (e.g. redocly bundle)"
        ));
    };
    // A URI fragment is percent-encoded; the JSON pointer is what it decodes to.
    let Some(decoded) = percent_decode(fragment) else {
        return Err(format!("`{reference}` is not a valid URI fragment (a bad %-escape)"));
    };
    if !decoded.is_empty() && !decoded.starts_with('/') {
        return Err(format!("`{reference}` is not a JSON pointer (`#/components/…`); named anchors are not supported"));
    }
    match pointer::resolve(root, &decoded) {
        Some(node) => Ok((node, decoded)),
        None => Err(format!("$ref target `{reference}` does not exist in the document")),
    }
}

/// `node` itself, or what its `$ref` leads to (following `$ref`s to `$ref`s),
/// with the pointer of the object reached. `None` when a `$ref` does not
/// resolve: [`check_all`] names those; a cycle is named here.
pub(super) fn follow<'a>(
    root: &'a Value,
    node: &'a Value,
    at: &str,
    problems: &mut Vec<Problem>,
) -> Option<(&'a Value, String)> {
    let mut node = node;
    let mut here = at.to_owned();
    for _ in 0..MAX_HOPS {
        let Some(Value::String(reference)) = node.as_mapping().and_then(|m| m.get("$ref")) else {
            return Some((node, here));
        };
        (node, here) = target(root, reference).ok()?;
    }
    problems.push(Problem::new(
        pointer::push(at, "$ref"),
        format!("more than {MAX_HOPS} $refs one after the other (a cycle?)"),
    ));
    None
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(yaml: &str) -> Value {
        yaml_serde::from_str(yaml).unwrap()
    }

    #[test]
    fn local_refs_resolve_through_escapes_and_percent_encoding() {
        let root = tree("components:\n  schemas:\n    Item Type: {type: string}\n    a/b: {type: integer}\n");
        let (node, at) = target(&root, "#/components/schemas/Item%20Type").unwrap();
        assert_eq!(at, "/components/schemas/Item Type");
        assert_eq!(node.get("type"), Some(&Value::from("string")));
        assert!(target(&root, "#/components/schemas/a~1b").is_ok());
        assert!(target(&root, "#").is_ok(), "the whole document");
    }

    #[test]
    fn every_ref_that_does_not_resolve_is_named_at_its_own_pointer() {
        let root = tree(
            "a:\n  - $ref: '#/nowhere'\n  - $ref: 'other.yaml#/x'\n  - $ref: '#/a/0'\n\
             b:\n  properties:\n    $ref: {type: string}\n  c: {$ref: '#anchor'}\n",
        );
        let mut problems = Vec::new();
        check_all(&root, &mut problems);
        problems.sort_by(|a, b| pointer::compare(&a.pointer, &b.pointer));
        let at: Vec<&str> = problems.iter().map(|p| p.pointer.as_str()).collect();
        assert_eq!(at, vec!["/a/0/$ref", "/a/1/$ref", "/b/c/$ref"]);
        assert!(problems[0].message.contains("`#/nowhere` does not exist"), "{problems:?}");
        assert!(problems[1].message.contains("external $ref is not supported"), "{problems:?}");
        assert!(problems[1].message.contains("bundle the document first"), "{problems:?}");
        assert!(problems[2].message.contains("named anchors are not supported"), "{problems:?}");
    }

    #[test]
    fn a_cycle_of_refs_is_named_instead_of_followed_forever() {
        let root = tree("a: {$ref: '#/b'}\nb: {$ref: '#/a'}\nc: {$ref: '#/b'}\nd: 1\n");
        let mut problems = Vec::new();
        assert!(follow(&root, root.get("c").unwrap(), "/c", &mut problems).is_none());
        assert!(problems[0].message.contains("a cycle?"), "{problems:?}");
        let (node, at) = follow(&root, root.get("d").unwrap(), "/d", &mut problems).unwrap();
        assert_eq!((node, at.as_str()), (&Value::from(1), "/d"));
    }
}
