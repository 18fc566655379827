//! The seller's shop data behind the API: products, inventory, orders and
//! sales totals. Every query takes the seller id, so one seller's token can
//! never reach another seller's rows.

pub mod sample;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::Serialize;
use utoipa::ToSchema;

use crate::db::schema::{inventory, order_items, orders, products};
use crate::db::{self, DbConnection};

// Each read on the API's request path comes twice: `x(conn, …)` on a pooled
// connection (SQLite, or PostgreSQL through libpq), and `x_pg(conn, …)` on a
// shared pipelined PostgreSQL connection (see `db::pg_async`). Both run the
// same query, written once in a macro.
type SharedPg = std::sync::Arc<diesel_async::AsyncPgConnection>;

pub const ORDER_STATUSES: &[&str] = &["pending", "paid", "shipped", "cancelled"];

#[derive(Debug, Clone, Queryable, Selectable, Serialize, ToSchema)]
#[diesel(table_name = products)]
pub struct Product {
    pub id: i64,
    #[serde(skip)]
    pub seller_id: i64,
    pub sku: String,
    pub name: String,
    pub description: String,
    pub price_cents: i64,
    pub currency: String,
    #[serde(serialize_with = "as_bool")]
    #[schema(value_type = bool)]
    pub active: i32,
    #[serde(serialize_with = "as_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: NaiveDateTime,
    #[serde(serialize_with = "as_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize, ToSchema)]
#[diesel(table_name = inventory)]
pub struct StockLevel {
    #[serde(skip)]
    pub id: i64,
    #[serde(skip)]
    pub seller_id: i64,
    pub sku: String,
    pub quantity: i64,
    pub location: String,
    #[serde(serialize_with = "as_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = orders)]
pub struct OrderRow {
    pub id: i64,
    pub seller_id: i64,
    pub customer_email: String,
    pub status: String,
    pub currency: String,
    pub total_cents: i64,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize, ToSchema)]
#[diesel(table_name = order_items)]
pub struct OrderItem {
    #[serde(skip)]
    pub id: i64,
    #[serde(skip)]
    pub order_id: i64,
    pub sku: String,
    pub quantity: i64,
    pub unit_price_cents: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Order {
    pub id: i64,
    pub customer_email: String,
    pub status: String,
    pub currency: String,
    pub total_cents: i64,
    #[serde(serialize_with = "as_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: NaiveDateTime,
    pub items: Vec<OrderItem>,
}

fn as_rfc3339<S: serde::Serializer>(at: &NaiveDateTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::gate::error::rfc3339(*at))
}

fn as_bool<S: serde::Serializer>(flag: &i32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_bool(*flag != 0)
}

/// A page of rows, newest id first, after `before` when paging on.
pub struct Page<T> {
    pub rows: Vec<T>,
    pub more: bool,
}

fn page<T>(mut rows: Vec<T>, limit: i64) -> Page<T> {
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    Page { rows, more }
}

// ---- products -----------------------------------------------------------

/// A page of the seller's rows of `$table`, newest first: one query shape
/// whatever the cursor, so the prepared statement is reused.
macro_rules! keyset_page {
    ($table:ident, $row:ty, $seller_id:expr, $before:expr, $limit:expr) => {
        $table::table
            .filter($table::seller_id.eq($seller_id))
            .filter($table::id.lt($before.unwrap_or(i64::MAX)))
            .order($table::id.desc())
            .limit($limit + 1)
            .select(<$row>::as_select())
    };
}

macro_rules! one_product {
    ($seller_id:expr, $id:expr) => {
        products::table
            .filter(products::seller_id.eq($seller_id))
            .filter(products::id.eq($id))
            .select(Product::as_select())
            .limit(1)
    };
}

pub fn list_products(
    conn: &mut DbConnection,
    seller_id: i64,
    before: Option<i64>,
    limit: i64,
) -> QueryResult<Page<Product>> {
    let rows = crate::on_backend!(conn, |c| keyset_page!(products, Product, seller_id, before, limit).load(c)?);
    Ok(page(rows, limit))
}

pub async fn list_products_pg(
    conn: SharedPg,
    seller_id: i64,
    before: Option<i64>,
    limit: i64,
) -> QueryResult<Page<Product>> {
    let rows =
        diesel_async::RunQueryDsl::load(keyset_page!(products, Product, seller_id, before, limit), &mut &*conn).await?;
    Ok(page(rows, limit))
}

pub fn find_product(conn: &mut DbConnection, seller_id: i64, id: i64) -> QueryResult<Option<Product>> {
    crate::on_backend!(conn, |c| one_product!(seller_id, id).get_result(c).optional())
}

pub async fn find_product_pg(conn: SharedPg, seller_id: i64, id: i64) -> QueryResult<Option<Product>> {
    diesel_async::RunQueryDsl::get_result(one_product!(seller_id, id), &mut &*conn).await.optional()
}

pub fn find_product_by_sku(conn: &mut DbConnection, seller_id: i64, sku: &str) -> QueryResult<Option<Product>> {
    products::table
        .filter(products::seller_id.eq(seller_id))
        .filter(products::sku.eq(sku))
        .select(Product::as_select())
        .first(conn)
        .optional()
}

pub struct NewProduct<'a> {
    pub sku: &'a str,
    pub name: &'a str,
    pub description: &'a str,
    pub price_cents: i64,
    pub currency: &'a str,
    pub active: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ShopError {
    #[error("a product with SKU `{0}` already exists")]
    DuplicateSku(String),
    #[error("no product has SKU `{0}`")]
    UnknownSku(String),
    #[error(transparent)]
    Db(#[from] diesel::result::Error),
}

pub fn create_product(conn: &mut DbConnection, seller_id: i64, new: &NewProduct<'_>) -> Result<Product, ShopError> {
    db::write_tx(conn, |conn| {
        if find_product_by_sku(conn, seller_id, new.sku)?.is_some() {
            return Err(ShopError::DuplicateSku(new.sku.to_owned()));
        }
        let now = db::now();
        diesel::insert_into(products::table)
            .values((
                products::seller_id.eq(seller_id),
                products::sku.eq(new.sku),
                products::name.eq(new.name),
                products::description.eq(new.description),
                products::price_cents.eq(new.price_cents),
                products::currency.eq(new.currency),
                products::active.eq(i32::from(new.active)),
                products::created_at.eq(now),
                products::updated_at.eq(now),
            ))
            .execute(conn)?;
        Ok(find_product_by_sku(conn, seller_id, new.sku)?.ok_or(diesel::result::Error::NotFound)?)
    })
}

/// Fields a PATCH may change; `None` leaves the field as it is.
#[derive(Default)]
pub struct ProductChanges {
    pub name: Option<String>,
    pub description: Option<String>,
    pub price_cents: Option<i64>,
    pub active: Option<bool>,
}

pub fn update_product(
    conn: &mut DbConnection,
    seller_id: i64,
    id: i64,
    changes: ProductChanges,
) -> QueryResult<Option<Product>> {
    db::write_tx(conn, |conn| {
        let Some(current) = find_product(conn, seller_id, id)? else { return Ok(None) };
        diesel::update(products::table.find(current.id))
            .set((
                products::name.eq(changes.name.unwrap_or(current.name)),
                products::description.eq(changes.description.unwrap_or(current.description)),
                products::price_cents.eq(changes.price_cents.unwrap_or(current.price_cents)),
                products::active.eq(changes.active.map_or(current.active, i32::from)),
                products::updated_at.eq(db::now()),
            ))
            .execute(conn)?;
        find_product(conn, seller_id, id)
    })
}

// ---- inventory ----------------------------------------------------------

pub fn list_inventory(
    conn: &mut DbConnection,
    seller_id: i64,
    before: Option<i64>,
    limit: i64,
) -> QueryResult<Page<StockLevel>> {
    let rows = crate::on_backend!(conn, |c| keyset_page!(inventory, StockLevel, seller_id, before, limit).load(c)?);
    Ok(page(rows, limit))
}

pub async fn list_inventory_pg(
    conn: SharedPg,
    seller_id: i64,
    before: Option<i64>,
    limit: i64,
) -> QueryResult<Page<StockLevel>> {
    let rows =
        diesel_async::RunQueryDsl::load(keyset_page!(inventory, StockLevel, seller_id, before, limit), &mut &*conn)
            .await?;
    Ok(page(rows, limit))
}

/// Sets the stock of a SKU the seller sells; creates the level if new.
pub fn set_stock(
    conn: &mut DbConnection,
    seller_id: i64,
    sku: &str,
    quantity: i64,
    location: &str,
) -> Result<StockLevel, ShopError> {
    db::write_tx(conn, |conn| {
        if find_product_by_sku(conn, seller_id, sku)?.is_none() {
            return Err(ShopError::UnknownSku(sku.to_owned()));
        }
        let now = db::now();
        let updated =
            diesel::update(inventory::table.filter(inventory::seller_id.eq(seller_id)).filter(inventory::sku.eq(sku)))
                .set((
                    inventory::quantity.eq(quantity),
                    inventory::location.eq(location),
                    inventory::updated_at.eq(now),
                ))
                .execute(conn)?;
        if updated == 0 {
            diesel::insert_into(inventory::table)
                .values((
                    inventory::seller_id.eq(seller_id),
                    inventory::sku.eq(sku),
                    inventory::quantity.eq(quantity),
                    inventory::location.eq(location),
                    inventory::updated_at.eq(now),
                ))
                .execute(conn)?;
        }
        Ok(inventory::table
            .filter(inventory::seller_id.eq(seller_id))
            .filter(inventory::sku.eq(sku))
            .select(StockLevel::as_select())
            .first(conn)?)
    })
}

// ---- orders ---------------------------------------------------------------

/// The query behind a page of orders, for either way of running it: the
/// page's orders with their items (LEFT JOIN) in one round trip, the page
/// chosen by a keyset subquery. Two fixed query shapes (with and without the
/// status filter), so each backend prepares each statement once. `$load`
/// runs the query, bound as `$q`, and yields the loaded rows.
macro_rules! orders_page {
    ($seller_id:expr, $status:expr, $before:expr, $limit:expr, |$q:ident| $load:expr) => {{
        let page_orders = diesel::alias!(orders as page_orders);
        let (id, seller, order_status) =
            (page_orders.field(orders::id), page_orders.field(orders::seller_id), page_orders.field(orders::status));
        let mine = seller.eq($seller_id).and(id.lt($before.unwrap_or(i64::MAX)));
        let page_ids = page_orders.order(id.desc()).limit($limit + 1).select(id);
        macro_rules! with_items {
            ($page_ids:expr) => {
                orders::table
                    .left_join(order_items::table)
                    .filter(orders::id.eq_any($page_ids))
                    .order((orders::id.desc(), order_items::id.asc()))
                    .select((OrderRow::as_select(), Option::<OrderItem>::as_select()))
            };
        }
        match $status {
            Some(status) => {
                let $q = with_items!(page_ids.filter(mine.and(order_status.eq(status))));
                $load
            }
            None => {
                let $q = with_items!(page_ids.filter(mine));
                $load
            }
        }
    }};
}

type OrderWithItem = (OrderRow, Option<OrderItem>);

pub fn list_orders(
    conn: &mut DbConnection,
    seller_id: i64,
    status: Option<&str>,
    before: Option<i64>,
    limit: i64,
) -> QueryResult<Page<Order>> {
    let joined =
        crate::on_backend!(conn, |c| orders_page!(seller_id, status, before, limit, |q| q.load::<OrderWithItem>(c)))?;
    Ok(page(group_items(joined), limit))
}

pub async fn list_orders_pg(
    conn: SharedPg,
    seller_id: i64,
    status: Option<String>,
    before: Option<i64>,
    limit: i64,
) -> QueryResult<Page<Order>> {
    let joined = orders_page!(seller_id, status.as_deref(), before, limit, |q| {
        diesel_async::RunQueryDsl::load::<OrderWithItem>(q, &mut &*conn).await
    })?;
    Ok(page(group_items(joined), limit))
}

/// Folds joined rows, ordered by order id, into orders with their items.
fn group_items(joined: Vec<OrderWithItem>) -> Vec<Order> {
    let mut orders: Vec<Order> = Vec::new();
    for (row, item) in joined {
        if orders.last().is_none_or(|o| o.id != row.id) {
            orders.push(Order {
                id: row.id,
                customer_email: row.customer_email,
                status: row.status,
                currency: row.currency,
                total_cents: row.total_cents,
                created_at: row.created_at,
                items: Vec::new(),
            });
        }
        if let (Some(item), Some(order)) = (item, orders.last_mut()) {
            order.items.push(item);
        }
    }
    orders
}

/// One order with its items (LEFT JOIN), in one round trip.
macro_rules! one_order {
    ($seller_id:expr, $id:expr) => {
        orders::table
            .left_join(order_items::table)
            .filter(orders::seller_id.eq($seller_id))
            .filter(orders::id.eq($id))
            .order(order_items::id.asc())
            .select((OrderRow::as_select(), Option::<OrderItem>::as_select()))
    };
}

pub fn find_order(conn: &mut DbConnection, seller_id: i64, id: i64) -> QueryResult<Option<Order>> {
    let joined = crate::on_backend!(conn, |c| one_order!(seller_id, id).load::<OrderWithItem>(c))?;
    Ok(group_items(joined).pop())
}

pub async fn find_order_pg(conn: SharedPg, seller_id: i64, id: i64) -> QueryResult<Option<Order>> {
    let joined = diesel_async::RunQueryDsl::load::<OrderWithItem>(one_order!(seller_id, id), &mut &*conn).await?;
    Ok(group_items(joined).pop())
}

pub struct NewOrderLine {
    pub sku: String,
    pub quantity: i64,
}

/// Creates an order priced from the seller's catalogue.
pub fn create_order(
    conn: &mut DbConnection,
    seller_id: i64,
    customer_email: &str,
    status: &str,
    lines: &[NewOrderLine],
    created_at: Option<NaiveDateTime>,
) -> Result<Order, ShopError> {
    db::write_tx(conn, |conn| {
        let mut priced = Vec::with_capacity(lines.len());
        let mut currency = None;
        for line in lines {
            let product = find_product_by_sku(conn, seller_id, &line.sku)?
                .ok_or_else(|| ShopError::UnknownSku(line.sku.clone()))?;
            currency.get_or_insert(product.currency.clone());
            priced.push((line, product.price_cents));
        }
        let total: i64 = priced.iter().map(|(line, price)| line.quantity.saturating_mul(*price)).sum();
        diesel::insert_into(orders::table)
            .values((
                orders::seller_id.eq(seller_id),
                orders::customer_email.eq(customer_email),
                orders::status.eq(status),
                orders::currency.eq(currency.unwrap_or_else(|| "EUR".into())),
                orders::total_cents.eq(total),
                orders::created_at.eq(created_at.unwrap_or_else(db::now)),
            ))
            .execute(conn)?;
        let id: i64 = orders::table
            .filter(orders::seller_id.eq(seller_id))
            .select(diesel::dsl::max(orders::id))
            .first::<Option<i64>>(conn)?
            .ok_or(diesel::result::Error::NotFound)?;
        for (line, price) in &priced {
            diesel::insert_into(order_items::table)
                .values((
                    order_items::order_id.eq(id),
                    order_items::sku.eq(&line.sku),
                    order_items::quantity.eq(line.quantity),
                    order_items::unit_price_cents.eq(price),
                ))
                .execute(conn)?;
        }
        Ok(find_order(conn, seller_id, id)?.ok_or(diesel::result::Error::NotFound)?)
    })
}

// ---- reports --------------------------------------------------------------

#[derive(Debug, Clone, Serialize, PartialEq, Eq, ToSchema)]
pub struct SalesTotals {
    pub orders: i64,
    pub units: i64,
    pub revenue_cents: i64,
    pub cancelled_orders: i64,
}

/// Totals of the seller's orders created in `[from, to)`; cancelled orders
/// count only in `cancelled_orders`.
pub fn sales_totals(
    conn: &mut DbConnection,
    seller_id: i64,
    from: NaiveDateTime,
    to: NaiveDateTime,
) -> QueryResult<SalesTotals> {
    let in_range = orders::seller_id.eq(seller_id).and(orders::created_at.ge(from)).and(orders::created_at.lt(to));
    let rows: Vec<(i64, String, i64)> =
        orders::table.filter(in_range).select((orders::id, orders::status, orders::total_cents)).load(conn)?;
    let counted: Vec<i64> = rows.iter().filter(|(_, status, _)| status != "cancelled").map(|(id, _, _)| *id).collect();
    // SUM's type differs per backend (numeric on PostgreSQL); add up here.
    let items: Vec<i64> =
        order_items::table.filter(order_items::order_id.eq_any(&counted)).select(order_items::quantity).load(conn)?;
    Ok(SalesTotals {
        orders: counted.len() as i64,
        units: items.iter().sum(),
        revenue_cents: rows.iter().filter(|(_, status, _)| status != "cancelled").map(|(_, _, total)| total).sum(),
        cancelled_orders: (rows.len() - counted.len()) as i64,
    })
}
