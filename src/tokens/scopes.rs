//! The scope catalogue: one list that feeds the forms, the gate, the OpenAPI
//! document and the docs.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    OrdersRead,
    OrdersWrite,
    ProductsRead,
    ProductsWrite,
    InventoryRead,
    InventoryWrite,
    ReportsRead,
}

/// An API group and the scopes it offers, in display order.
pub struct ScopeGroup {
    pub name: &'static str,
    pub description: &'static str,
    pub scopes: &'static [Scope],
}

pub const CATALOGUE: &[ScopeGroup] = &[
    ScopeGroup {
        name: "Orders",
        description: "List, read and create orders.",
        scopes: &[Scope::OrdersRead, Scope::OrdersWrite],
    },
    ScopeGroup {
        name: "Products",
        description: "List, read, create and update products.",
        scopes: &[Scope::ProductsRead, Scope::ProductsWrite],
    },
    ScopeGroup {
        name: "Inventory",
        description: "Read and set stock levels per SKU.",
        scopes: &[Scope::InventoryRead, Scope::InventoryWrite],
    },
    ScopeGroup { name: "Reports", description: "Sales totals computed from orders.", scopes: &[Scope::ReportsRead] },
];

impl Scope {
    pub const ALL: [Scope; 7] = [
        Scope::OrdersRead,
        Scope::OrdersWrite,
        Scope::ProductsRead,
        Scope::ProductsWrite,
        Scope::InventoryRead,
        Scope::InventoryWrite,
        Scope::ReportsRead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::OrdersRead => "orders:read",
            Scope::OrdersWrite => "orders:write",
            Scope::ProductsRead => "products:read",
            Scope::ProductsWrite => "products:write",
            Scope::InventoryRead => "inventory:read",
            Scope::InventoryWrite => "inventory:write",
            Scope::ReportsRead => "reports:read",
        }
    }

    pub fn is_write(self) -> bool {
        self.as_str().ends_with(":write")
    }

    /// `X:write` implies `X:read`.
    pub fn implies(self, required: Scope) -> bool {
        self == required || (self.is_write() && self.write_implies_read() == Some(required))
    }

    fn write_implies_read(self) -> Option<Scope> {
        match self {
            Scope::OrdersWrite => Some(Scope::OrdersRead),
            Scope::ProductsWrite => Some(Scope::ProductsRead),
            Scope::InventoryWrite => Some(Scope::InventoryRead),
            _ => None,
        }
    }

    /// What the scope lets an app do, in plain words (the consent page).
    pub fn sentence(self) -> &'static str {
        match self {
            Scope::OrdersRead => "See your orders and their items",
            Scope::OrdersWrite => "Create orders (and see them)",
            Scope::ProductsRead => "See your products and prices",
            Scope::ProductsWrite => "Create and change products and prices (and see them)",
            Scope::InventoryRead => "See your stock levels",
            Scope::InventoryWrite => "Set your stock levels (and see them)",
            Scope::ReportsRead => "See your sales totals",
        }
    }

    pub fn label(self) -> &'static str {
        if self.is_write() {
            "Read and write"
        } else {
            "Read"
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown scope `{0}`")]
pub struct UnknownScope(pub String);

impl FromStr for Scope {
    type Err = UnknownScope;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == s).ok_or_else(|| UnknownScope(s.to_owned()))
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

    pub fn all() -> Self {
        Self::new(Scope::ALL)
    }

    /// Parses the stored form; an unknown word is an error, never ignored.
    pub fn parse(stored: &str) -> Result<Self, UnknownScope> {
        stored.split_whitespace().map(Scope::from_str).collect::<Result<Vec<_>, _>>().map(Self::new)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = Scope> + '_ {
        self.0.iter().copied()
    }

    pub fn contains(&self, scope: Scope) -> bool {
        self.0.contains(&scope)
    }

    /// Whether a holder of this set may call a route that needs `required`.
    pub fn grants(&self, required: Scope) -> bool {
        self.0.iter().any(|held| held.implies(required))
    }

    pub fn to_stored(&self) -> String {
        self.0.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scope_round_trips_through_its_name() {
        for scope in Scope::ALL {
            assert_eq!(scope.as_str().parse::<Scope>(), Ok(scope));
        }
        assert_eq!("orders:delete".parse::<Scope>(), Err(UnknownScope("orders:delete".into())));
    }

    #[test]
    fn the_catalogue_lists_every_scope_once() {
        let listed: Vec<Scope> = CATALOGUE.iter().flat_map(|g| g.scopes.iter().copied()).collect();
        assert_eq!(ScopeSet::new(listed.clone()), ScopeSet::all());
        assert_eq!(listed.len(), Scope::ALL.len());
    }

    #[test]
    fn write_implies_read_of_the_same_group_only() {
        let set = ScopeSet::new([Scope::OrdersWrite]);
        assert!(set.grants(Scope::OrdersWrite));
        assert!(set.grants(Scope::OrdersRead));
        assert!(!set.grants(Scope::ProductsRead));
        let read_only = ScopeSet::new([Scope::OrdersRead]);
        assert!(!read_only.grants(Scope::OrdersWrite));
    }

    #[test]
    fn stored_form_is_sorted_and_deduplicated() {
        let set = ScopeSet::parse("products:read orders:read products:read").unwrap();
        assert_eq!(set.to_stored(), "orders:read products:read");
        assert!(ScopeSet::parse("orders:read bogus").is_err());
    }
}
