//! What keygate reads from a verified ID token: who the person is at the
//! provider, their email, and whether the admin claim holds. No HTTP, no
//! database: unit-tested here.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::AdminClaim;

/// Every claim of the ID token beyond the standard ones, as the provider
/// sent it: the admin claim's name is the operator's choice.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OtherClaims {
    #[serde(flatten)]
    pub claims: serde_json::Map<String, Value>,
}

impl openidconnect::AdditionalClaims for OtherClaims {}

/// The person the provider vouched for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub issuer: String,
    pub subject: String,
    /// The `email` claim, if any (not yet parsed as keygate's `Email`).
    pub email: Option<String>,
    /// `email_verified` is `true` (absent: not verified).
    pub email_verified: bool,
    /// Whether the admin claim holds; `None` without `--oidc-admin-claim`
    /// (the role is then keygate's own business).
    pub admin: Option<bool>,
}

/// Does the claim hold? `NAME` is looked up as a top-level claim first,
/// then as a dotted path into nested objects (Keycloak's
/// `realm_access.roles`). It holds when the value is the string `VALUE` or
/// an array with that string among its elements; any other type (a number,
/// an object, `true`) does not hold.
pub fn admin_claim_holds(claims: &serde_json::Map<String, Value>, rule: &AdminClaim) -> bool {
    let found = claims.get(&rule.name).or_else(|| {
        let mut parts = rule.name.split('.');
        let first = claims.get(parts.next()?)?;
        parts.try_fold(first, |value, part| value.as_object()?.get(part))
    });
    match found {
        Some(Value::String(s)) => *s == rule.value,
        Some(Value::Array(items)) => items.iter().any(|item| item.as_str() == Some(rule.value.as_str())),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(s: &str) -> AdminClaim {
        s.parse().unwrap()
    }

    fn claims(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn the_admin_claim_matches_a_string_or_an_array_element_and_nothing_else() {
        let r = rule("groups=keygate-admins");
        assert!(admin_claim_holds(&claims(json!({"groups": "keygate-admins"})), &r));
        assert!(admin_claim_holds(&claims(json!({"groups": ["staff", "keygate-admins"]})), &r));
        assert!(!admin_claim_holds(&claims(json!({"groups": ["staff"]})), &r));
        assert!(!admin_claim_holds(&claims(json!({"groups": {"keygate-admins": true}})), &r));
        assert!(!admin_claim_holds(&claims(json!({"groups": 1})), &r));
        assert!(!admin_claim_holds(&claims(json!({})), &r));
        assert!(!admin_claim_holds(&claims(json!({"groups": "keygate-admins-not"})), &r));
    }

    #[test]
    fn a_dotted_name_reaches_into_nested_claims_but_a_literal_name_comes_first() {
        let r = rule("realm_access.roles=keygate-admin");
        assert!(admin_claim_holds(&claims(json!({"realm_access": {"roles": ["keygate-admin"]}})), &r));
        assert!(!admin_claim_holds(&claims(json!({"realm_access": ["keygate-admin"]})), &r));
        let r = rule("https://acme.example/roles=admin");
        assert!(admin_claim_holds(&claims(json!({"https://acme.example/roles": ["admin"]})), &r));
    }

    #[test]
    fn a_rule_needs_a_name_and_a_value() {
        for bad in ["groups", "=x", "groups="] {
            assert!(bad.parse::<AdminClaim>().is_err(), "{bad}");
        }
        assert_eq!(rule("role=a=b").value, "a=b");
    }
}
