//! JSON pointers (RFC 6901): building them, following them through the
//! document tree, and ordering problems by them.

use std::cmp::Ordering;

use yaml_serde::Value;

/// `pointer` with one more reference token: "/paths" + "/items" is
/// "/paths/~1items".
pub(super) fn push(pointer: &str, token: &str) -> String {
    let mut out = String::with_capacity(pointer.len() + token.len() + 1);
    out.push_str(pointer);
    out.push('/');
    for c in token.chars() {
        match c {
            '~' => out.push_str("~0"),
            '/' => out.push_str("~1"),
            c => out.push(c),
        }
    }
    out
}

pub(super) fn push_index(pointer: &str, index: usize) -> String {
    format!("{pointer}/{index}")
}

/// The node at `pointer`, if there is one. A pointer is followed as written:
/// a `$ref` on the way is not resolved (as in RFC 6901).
pub(super) fn resolve<'a>(root: &'a Value, pointer: &str) -> Option<&'a Value> {
    if pointer.is_empty() {
        return Some(root);
    }
    let rest = pointer.strip_prefix('/')?;
    let mut node = root;
    for raw in rest.split('/') {
        let token = unescape(raw)?;
        node = match node {
            Value::Mapping(mapping) => mapping.get(token.as_str())?,
            Value::Sequence(items) => {
                // RFC 6901: an index has no leading zero and no sign.
                let ok = !token.is_empty()
                    && token.bytes().all(|b| b.is_ascii_digit())
                    && (token == "0" || !token.starts_with('0'));
                if !ok {
                    return None;
                }
                items.get(token.parse::<usize>().ok()?)?
            }
            _ => return None,
        };
    }
    Some(node)
}

/// `~1` → `/`, `~0` → `~`; any other `~` makes the token invalid.
fn unescape(token: &str) -> Option<String> {
    let mut out = String::with_capacity(token.len());
    let mut chars = token.chars();
    while let Some(c) = chars.next() {
        if c == '~' {
            match chars.next() {
                Some('0') => out.push('~'),
                Some('1') => out.push('/'),
                _ => return None,
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// Document order for people: token by token, numbers as numbers, so that
/// "/security/2" comes before "/security/10".
pub(super) fn compare(a: &str, b: &str) -> Ordering {
    let mut left = a.split('/');
    let mut right = b.split('/');
    loop {
        match (left.next(), right.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let order = match (x.parse::<u64>(), y.parse::<u64>()) {
                    (Ok(m), Ok(n)) => m.cmp(&n).then_with(|| x.cmp(y)),
                    _ => x.cmp(y),
                };
                if order != Ordering::Equal {
                    return order;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slashes_and_tildes_are_escaped_and_followed_back() {
        assert_eq!(push("/paths", "/items/{sku}"), "/paths/~1items~1{sku}");
        assert_eq!(push("", "a~b"), "/a~0b");
        let tree: Value = yaml_serde::from_str("paths:\n  /items/{sku}:\n    get: [a, b]\n  a~b: 1\n").unwrap();
        assert_eq!(resolve(&tree, "/paths/~1items~1{sku}/get/1"), Some(&Value::from("b")));
        assert_eq!(resolve(&tree, "/paths/a~0b"), Some(&Value::from(1)));
        assert_eq!(resolve(&tree, ""), Some(&tree));
        assert_eq!(resolve(&tree, "/paths/~1items~1{sku}/get/01"), None, "no leading zero in an index");
        assert_eq!(resolve(&tree, "/paths/~2"), None, "~2 is not an escape");
        assert_eq!(resolve(&tree, "paths"), None, "a pointer starts with /");
    }

    #[test]
    fn pointers_sort_in_document_order_with_numbers_as_numbers() {
        let mut pointers = vec!["/security/10", "/security/2", "/paths", "", "/security/2/keygate"];
        pointers.sort_by(|a, b| compare(a, b));
        assert_eq!(pointers, vec!["", "/paths", "/security/2", "/security/2/keygate", "/security/10"]);
    }
}
