//! Who may call an operation, from its `security` (an array of alternatives;
//! each alternative a requirement object naming schemes and the scopes they
//! need, all of them).

use super::scheme::Schemes;
use super::slices::Requirement;
use super::{pointer, Access, Problem};

/// The access that `requirements` (found at `at`) grant.
///
/// - `[]`, or an alternative that is `{}`: public.
/// - An alternative naming keygate's scheme: a token with all its scopes.
///   Any other scheme named in the same alternative is ignored: keygate
///   checks its own part and the upstream can still check the rest.
/// - An alternative naming only other schemes: a problem, since keygate
///   could neither let it through nor check it.
///
/// A scope that is not in the catalogue is a problem at its own pointer
/// (`…/security/0/keygate/1`). Without a chosen scheme (a problem already)
/// scopes and scheme names are not checked.
pub(super) fn access(requirements: &[Requirement], at: &str, schemes: &Schemes, problems: &mut Vec<Problem>) -> Access {
    let mut public = requirements.is_empty();
    let mut any_of: Vec<Vec<String>> = Vec::new();
    for (index, requirement) in requirements.iter().enumerate() {
        let alternative_at = pointer::push_index(at, index);
        if requirement.is_empty() {
            public = true;
            continue;
        }
        let Some(chosen) = &schemes.chosen else { continue };
        let Some(scopes) = requirement.get(&chosen.name) else {
            for name in requirement.keys() {
                let message = if schemes.declared.contains(name) {
                    format!(
                        "keygate cannot check the security scheme `{name}`: an alternative must name `{}` \
                         (the scheme keygate checks), alone or with `{name}`",
                        chosen.name
                    )
                } else {
                    format!("no security scheme named `{name}` in components.securitySchemes")
                };
                problems.push(Problem::new(pointer::push(&alternative_at, name), message));
            }
            continue;
        };
        let scopes_at = pointer::push(&alternative_at, &chosen.name);
        let mut needed: Vec<String> = Vec::new();
        for (position, scope) in scopes.iter().enumerate() {
            if !chosen.has_scope(scope) {
                let known = if chosen.catalogue.is_empty() {
                    format!("the scheme `{}` declares no scopes", chosen.name)
                } else {
                    format!(
                        "the catalogue has {}",
                        chosen.catalogue.iter().map(|e| e.name.as_str()).collect::<Vec<_>>().join(", ")
                    )
                };
                problems.push(Problem::new(
                    pointer::push_index(&scopes_at, position),
                    format!("unknown scope `{scope}`: {known}"),
                ));
            }
            if !needed.contains(scope) {
                needed.push(scope.clone());
            }
        }
        if !any_of.contains(&needed) {
            any_of.push(needed);
        }
    }
    if public {
        Access::Public
    } else if any_of.is_empty() {
        // Only alternatives keygate cannot check (each a problem already),
        // or no scheme: never public by accident.
        Access::any_token()
    } else {
        Access::Token { any_of }
    }
}
