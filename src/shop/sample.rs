//! Sample data for a new seller, so the API answers something on the first
//! call. `--sample-data false` turns it off.

use chrono::Duration;

use super::{create_order, create_product, set_stock, NewOrderLine, NewProduct, ShopError};
use crate::db::{self, DbConnection};

const PRODUCTS: &[(&str, &str, i64, i64)] = &[
    ("MUG-001", "Enamel camping mug", 1_290, 140),
    ("TEE-BLK-M", "Organic T-shirt, black, M", 2_490, 60),
    ("TEE-BLK-L", "Organic T-shirt, black, L", 2_490, 45),
    ("BAG-TOTE", "Canvas tote bag", 1_590, 210),
    ("BTL-750", "Insulated bottle 750 ml", 3_290, 0),
];

/// Customer, status, (SKU, quantity) lines, and how many days ago.
type SampleOrder = (&'static str, &'static str, &'static [(&'static str, i64)], i64);

pub fn seed(conn: &mut DbConnection, seller_id: i64) -> Result<(), ShopError> {
    for (sku, name, price_cents, stock) in PRODUCTS {
        let product =
            NewProduct { sku, name, description: "", price_cents: *price_cents, currency: "EUR", active: true };
        create_product(conn, seller_id, &product)?;
        set_stock(conn, seller_id, sku, *stock, "main")?;
    }
    let now = db::now();
    let orders: &[SampleOrder] = &[
        ("lea@example.com", "shipped", &[("MUG-001", 2), ("BAG-TOTE", 1)], 12),
        ("sam@example.com", "paid", &[("TEE-BLK-M", 1)], 6),
        ("kim@example.com", "pending", &[("TEE-BLK-L", 2), ("MUG-001", 1)], 2),
        ("ola@example.com", "cancelled", &[("BTL-750", 1)], 1),
        ("noor@example.com", "paid", &[("BAG-TOTE", 3)], 0),
    ];
    for (email, status, lines, days_ago) in orders {
        let lines: Vec<NewOrderLine> =
            lines.iter().map(|(sku, quantity)| NewOrderLine { sku: (*sku).to_owned(), quantity: *quantity }).collect();
        create_order(conn, seller_id, email, status, &lines, Some(now - Duration::days(*days_ago)))?;
    }
    Ok(())
}
