//! Scopes as data. The catalogue is read from the API's document (the
//! demo's, or the operator's with `--api-spec`) into one [`ScopeCatalogue`]:
//! the forms, the consent page, the gate, `scopes_supported` and the API
//! reference all read it. A [`Scope`] is a name; what it means, whether it
//! still exists and what it implies is the catalogue's to say, so a token
//! keeps the scopes it was given when the catalogue changes, and one the
//! catalogue no longer has ("retired") grants nothing.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// The longest scope name (it travels in headers and space-separated lists).
pub const MAX_SCOPE_LEN: usize = 64;

/// A scope's name, such as `orders:read`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope(Arc<str>);

impl Scope {
    /// A name that can be a scope: 1 to 64 of `A-Z a-z 0-9 : . _ -`.
    pub fn named(name: &str) -> Option<Scope> {
        let valid = !name.is_empty()
            && name.len() <= MAX_SCOPE_LEN
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b":._-".contains(&b));
        valid.then(|| Scope(Arc::from(name)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `G:write` (which implies `G:read` where both exist).
    pub fn is_write(&self) -> bool {
        self.0.ends_with(":write")
    }

    /// The resource group: what comes before the last `:` (`orders`).
    pub fn group(&self) -> &str {
        self.0.rsplit_once(':').map_or(&self.0, |(group, _)| group)
    }

    /// `Read and write` or `Read`, for the forms.
    pub fn label(&self) -> &'static str {
        if self.is_write() {
            "Read and write"
        } else {
            "Read"
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scope({})", self.0)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown scope `{0}`")]
pub struct UnknownScope(pub String);

/// One scope of the catalogue and what it lets its holder do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogueEntry {
    pub scope: Scope,
    pub description: String,
}

/// The scopes the API offers, in the document's order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeCatalogue {
    entries: Vec<CatalogueEntry>,
    index: HashMap<Scope, usize>,
}

impl ScopeCatalogue {
    /// From `(name, description)` pairs; a name that cannot be a scope, or
    /// one given twice, is left out (the document loader refuses both).
    pub fn new<'a>(entries: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut catalogue = Self::default();
        for (name, description) in entries {
            let Some(scope) = Scope::named(name) else { continue };
            if catalogue.index.contains_key(&scope) {
                continue;
            }
            catalogue.index.insert(scope.clone(), catalogue.entries.len());
            catalogue.entries.push(CatalogueEntry { scope, description: description.to_owned() });
        }
        catalogue
    }

    /// `name` as a scope of this catalogue.
    pub fn parse(&self, name: &str) -> Result<Scope, UnknownScope> {
        Scope::named(name)
            .and_then(|scope| self.index.get_key_value(&scope).map(|(known, _)| known.clone()))
            .ok_or_else(|| UnknownScope(name.to_owned()))
    }

    pub fn contains(&self, scope: &Scope) -> bool {
        self.index.contains_key(scope)
    }

    pub fn entries(&self) -> &[CatalogueEntry] {
        &self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// What the scope lets its holder do, in the document's words; for a
    /// retired scope, that it is retired.
    pub fn describe(&self, scope: &Scope) -> &str {
        match self.index.get(scope) {
            Some(&i) => &self.entries[i].description,
            None => "Retired: the API no longer offers this scope; it grants nothing.",
        }
    }

    /// Every scope of the catalogue.
    pub fn all(&self) -> ScopeSet {
        ScopeSet::new(self.entries.iter().map(|e| e.scope.clone()))
    }

    /// The catalogue by resource group (`orders`, `products`…), in the
    /// order the groups first appear.
    pub fn groups(&self) -> Vec<(&str, Vec<&CatalogueEntry>)> {
        let mut groups: Vec<(&str, Vec<&CatalogueEntry>)> = Vec::new();
        for entry in &self.entries {
            let group = entry.scope.group();
            match groups.iter_mut().find(|(name, _)| *name == group) {
                Some((_, members)) => members.push(entry),
                None => groups.push((group, vec![entry])),
            }
        }
        groups
    }

    /// Whether holding `held` allows what needs `required`: the same scope,
    /// or `G:write` for `G:read` where both exist. A scope the catalogue no
    /// longer has grants nothing.
    pub fn implies(&self, held: &Scope, required: &Scope) -> bool {
        if !self.contains(held) {
            return false;
        }
        if held == required {
            return true;
        }
        held.is_write()
            && required.as_str().strip_suffix(":read").is_some_and(|group| group == held.group())
            && self.contains(required)
    }
}

/// A sorted, duplicate-free set of scopes, stored as space-separated text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeSet(Vec<Scope>);

impl ScopeSet {
    pub fn new(scopes: impl IntoIterator<Item = Scope>) -> Self {
        let mut scopes: Vec<Scope> = scopes.into_iter().collect();
        scopes.sort();
        scopes.dedup();
        Self(scopes)
    }

    /// The stored form, as it is: retired scopes are kept (and grant
    /// nothing); a word that cannot be a scope at all is left out.
    pub fn parse(stored: &str) -> Self {
        Self::new(stored.split_whitespace().filter_map(Scope::named))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Scope> + '_ {
        self.0.iter()
    }

    pub fn contains(&self, scope: &Scope) -> bool {
        self.0.binary_search(scope).is_ok()
    }

    /// Whether a holder of this set may call what needs `required`.
    pub fn grants(&self, required: &Scope, catalogue: &ScopeCatalogue) -> bool {
        self.0.iter().any(|held| catalogue.implies(held, required))
    }

    /// The scopes the catalogue still has.
    pub fn current(&self, catalogue: &ScopeCatalogue) -> ScopeSet {
        Self(self.0.iter().filter(|s| catalogue.contains(s)).cloned().collect())
    }

    /// Those also in `other`.
    pub fn within(&self, other: &ScopeSet) -> ScopeSet {
        Self(self.0.iter().filter(|s| other.contains(s)).cloned().collect())
    }

    pub fn to_stored(&self) -> String {
        self.0.iter().map(Scope::as_str).collect::<Vec<_>>().join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn catalogue() -> ScopeCatalogue {
        ScopeCatalogue::new([
            ("orders:read", "See your orders"),
            ("orders:write", "Create orders"),
            ("products:read", "See your products"),
            ("reports:read", "See your sales totals"),
            ("stock:write", "Set stock (no read scope exists)"),
        ])
    }

    fn scope(name: &str) -> Scope {
        Scope::named(name).unwrap()
    }

    #[test]
    fn names_are_checked_and_the_catalogue_says_what_exists() {
        let catalogue = catalogue();
        assert_eq!(catalogue.parse("orders:read"), Ok(scope("orders:read")));
        assert_eq!(catalogue.parse("orders:delete"), Err(UnknownScope("orders:delete".into())));
        for bad in ["", "a b", "x\"y", &"a".repeat(65), "é:read"] {
            assert!(Scope::named(bad).is_none(), "{bad:?}");
        }
        assert_eq!(ScopeCatalogue::new([("a", "1"), ("a", "2"), ("bad name", "3")]).entries().len(), 1);
        assert_eq!(scope("orders:write").group(), "orders");
        assert_eq!(scope("plain").group(), "plain");
    }

    #[test]
    fn write_implies_read_of_the_same_group_where_both_exist() {
        let catalogue = catalogue();
        let set = ScopeSet::new([scope("orders:write")]);
        assert!(set.grants(&scope("orders:write"), &catalogue));
        assert!(set.grants(&scope("orders:read"), &catalogue));
        assert!(!set.grants(&scope("products:read"), &catalogue));
        assert!(!ScopeSet::new([scope("orders:read")]).grants(&scope("orders:write"), &catalogue));
        assert!(!ScopeSet::new([scope("stock:write")]).grants(&scope("stock:read"), &catalogue), "no stock:read");
    }

    #[test]
    fn a_retired_scope_is_kept_but_grants_nothing() {
        let catalogue = catalogue();
        let stored = ScopeSet::parse("inventory:write orders:read not/a/scope");
        assert_eq!(stored.to_stored(), "inventory:write orders:read");
        assert!(!stored.grants(&scope("inventory:write"), &catalogue));
        assert!(!stored.grants(&scope("inventory:read"), &catalogue));
        assert_eq!(stored.current(&catalogue).to_stored(), "orders:read");
        assert!(catalogue.describe(&scope("inventory:write")).starts_with("Retired"));
    }

    #[test]
    fn stored_form_is_sorted_and_deduplicated_and_groups_keep_the_documents_order() {
        assert_eq!(ScopeSet::parse("products:read orders:read products:read").to_stored(), "orders:read products:read");
        let catalogue = catalogue();
        let groups: Vec<&str> = catalogue.groups().into_iter().map(|(g, _)| g).collect();
        assert_eq!(groups, ["orders", "products", "reports", "stock"]);
    }
}
