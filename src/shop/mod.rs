//! The seller's shop data behind the API: products, inventory, orders and
//! sales totals. Every query takes the seller id, so one seller's token can
//! never reach another seller's rows.

pub mod sample;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::Serialize;
use utoipa::ToSchema;

use diesel::query_source::{Alias, AliasedField};
use diesel_async::AsyncPgConnection;

use crate::db::read::{load, load_pipelined, Read};
use crate::db::schema::{inventory, order_items, orders, products};
use crate::db::{self, DbConnection};

// The reads on the API's request path are `Read` values (see `db::read`):
// each query is built by one function below, and runs on a pooled
// connection (SQLite, or PostgreSQL through libpq) or on a shared pipelined
// PostgreSQL connection, whichever `Db::read` picks.

pub const ORDER_STATUSES: &[&str] = &["pending", "paid", "shipped", "cancelled"];

/// The demo API's scope catalogue, as its document declares it (the
/// `x-keygate-scopes` of its security scheme): name and what it lets an
/// integration do, in the words the consent page shows.
pub const SCOPES: &[(&str, &str)] = &[
    ("orders:read", "See your orders and their items"),
    ("orders:write", "Create orders (and see them)"),
    ("products:read", "See your products and prices"),
    ("products:write", "Create and change products and prices (and see them)"),
    ("inventory:read", "See your stock levels"),
    ("inventory:write", "Set your stock levels (and see them)"),
    ("reports:read", "See your sales totals"),
];

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
    s.serialize_str(&crate::time::rfc3339(*at))
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

/// A page of the seller's products, newest first: one query shape whatever
/// the cursor (`before` is `i64::MAX` on the first page), so the prepared
/// statement is reused.
#[diesel::dsl::auto_type(no_type_alias)]
fn products_page(seller_id: i64, before: i64, limit: i64) -> _ {
    let columns: <products::table as Table>::AllColumns = products::all_columns;
    products::table
        .filter(products::seller_id.eq(seller_id))
        .filter(products::id.lt(before))
        .order(products::id.desc())
        .limit(limit)
        .select(columns)
}

#[diesel::dsl::auto_type(no_type_alias)]
fn one_product(seller_id: i64, id: i64) -> _ {
    let columns: <products::table as Table>::AllColumns = products::all_columns;
    products::table.filter(products::seller_id.eq(seller_id)).filter(products::id.eq(id)).limit(1_i64).select(columns)
}

/// A page of rows after the cursor `before`, `limit` of them.
#[derive(Debug, Clone, Copy)]
pub struct PageOf {
    pub seller_id: i64,
    pub before: Option<i64>,
    pub limit: i64,
}

impl PageOf {
    fn before(&self) -> i64 {
        self.before.unwrap_or(i64::MAX)
    }
}

/// A page of the seller's products.
pub struct ProductsPage(pub PageOf);

impl Read for ProductsPage {
    type Output = Page<Product>;

    fn run(&self, conn: &mut DbConnection) -> QueryResult<Page<Product>> {
        let p = self.0;
        Ok(page(load(conn, products_page(p.seller_id, p.before(), p.limit + 1))?, p.limit))
    }

    async fn run_pipelined(&self, conn: &AsyncPgConnection) -> QueryResult<Page<Product>> {
        let p = self.0;
        Ok(page(load_pipelined(conn, products_page(p.seller_id, p.before(), p.limit + 1)).await?, p.limit))
    }
}

/// One of the seller's products.
pub struct OneProduct {
    pub seller_id: i64,
    pub id: i64,
}

impl Read for OneProduct {
    type Output = Option<Product>;

    fn run(&self, conn: &mut DbConnection) -> QueryResult<Option<Product>> {
        Ok(load(conn, one_product(self.seller_id, self.id))?.pop())
    }

    async fn run_pipelined(&self, conn: &AsyncPgConnection) -> QueryResult<Option<Product>> {
        Ok(load_pipelined(conn, one_product(self.seller_id, self.id)).await?.pop())
    }
}

pub fn find_product(conn: &mut DbConnection, seller_id: i64, id: i64) -> QueryResult<Option<Product>> {
    OneProduct { seller_id, id }.run(conn)
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
    Db(#[from] db::DbError),
}

impl From<diesel::result::Error> for ShopError {
    fn from(e: diesel::result::Error) -> Self {
        ShopError::Db(e.into())
    }
}

impl ShopError {
    /// Another request wrote the same unique key first (on PostgreSQL two
    /// transactions can both see it free).
    fn is_unique_violation(&self) -> bool {
        use diesel::result::{DatabaseErrorKind, Error};
        matches!(self, ShopError::Db(db::DbError::Query(Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _))))
    }
}

pub fn create_product(conn: &mut DbConnection, seller_id: i64, new: &NewProduct<'_>) -> Result<Product, ShopError> {
    let created = db::write_tx(conn, |conn| {
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
    });
    match created {
        Err(e) if e.is_unique_violation() => Err(ShopError::DuplicateSku(new.sku.to_owned())),
        other => other,
    }
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

#[diesel::dsl::auto_type(no_type_alias)]
fn inventory_page(seller_id: i64, before: i64, limit: i64) -> _ {
    let columns: <inventory::table as Table>::AllColumns = inventory::all_columns;
    inventory::table
        .filter(inventory::seller_id.eq(seller_id))
        .filter(inventory::id.lt(before))
        .order(inventory::id.desc())
        .limit(limit)
        .select(columns)
}

/// A page of the seller's stock levels.
pub struct InventoryPage(pub PageOf);

impl Read for InventoryPage {
    type Output = Page<StockLevel>;

    fn run(&self, conn: &mut DbConnection) -> QueryResult<Page<StockLevel>> {
        let p = self.0;
        Ok(page(load(conn, inventory_page(p.seller_id, p.before(), p.limit + 1))?, p.limit))
    }

    async fn run_pipelined(&self, conn: &AsyncPgConnection) -> QueryResult<Page<StockLevel>> {
        let p = self.0;
        Ok(page(load_pipelined(conn, inventory_page(p.seller_id, p.before(), p.limit + 1)).await?, p.limit))
    }
}

/// Sets the stock of a SKU the seller sells; creates the level if new.
pub fn set_stock(
    conn: &mut DbConnection,
    seller_id: i64,
    sku: &str,
    quantity: i64,
    location: &str,
) -> Result<StockLevel, ShopError> {
    let attempt = |conn: &mut DbConnection| {
        db::write_tx(conn, |conn| {
            if find_product_by_sku(conn, seller_id, sku)?.is_none() {
                return Err(ShopError::UnknownSku(sku.to_owned()));
            }
            let now = db::now();
            let updated = diesel::update(
                inventory::table.filter(inventory::seller_id.eq(seller_id)).filter(inventory::sku.eq(sku)),
            )
            .set((inventory::quantity.eq(quantity), inventory::location.eq(location), inventory::updated_at.eq(now)))
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
    };
    match attempt(conn) {
        // A concurrent first update inserted the level a moment ago: this
        // one updates it.
        Err(e) if e.is_unique_violation() => attempt(conn),
        other => other,
    }
}

// ---- orders ---------------------------------------------------------------

// A page of orders comes with its items (LEFT JOIN) in one round trip, the
// page chosen by a keyset subquery over an alias of `orders`. Two query
// shapes (with and without the status filter), each prepared once.
diesel::alias!(orders as page_orders: PageOrders);

type PageOrderId = AliasedField<PageOrders, orders::id>;
type PageOrderSeller = AliasedField<PageOrders, orders::seller_id>;
type PageOrderStatus = AliasedField<PageOrders, orders::status>;

/// An order's columns with its items' (none for an order without items),
/// as `OrderWithItem` reads them.
#[diesel::dsl::auto_type]
fn order_with_items() -> _ {
    let order: <orders::table as Table>::AllColumns = orders::all_columns;
    let item: <order_items::table as Table>::AllColumns = order_items::all_columns;
    (order, item.nullable())
}

#[diesel::dsl::auto_type(no_type_alias)]
fn orders_page(seller_id: i64, before: i64, limit: i64) -> _ {
    let source: Alias<PageOrders> = page_orders;
    let id: PageOrderId = page_orders.field(orders::id);
    let seller: PageOrderSeller = page_orders.field(orders::seller_id);
    let page_ids = source.filter(seller.eq(seller_id).and(id.lt(before))).order(id.desc()).limit(limit).select(id);
    orders::table
        .left_join(order_items::table)
        .filter(orders::id.eq_any(page_ids))
        .order((orders::id.desc(), order_items::id.asc()))
        .select(order_with_items())
}

#[diesel::dsl::auto_type(no_type_alias)]
fn orders_page_in_status(seller_id: i64, status: String, before: i64, limit: i64) -> _ {
    let source: Alias<PageOrders> = page_orders;
    let id: PageOrderId = page_orders.field(orders::id);
    let seller: PageOrderSeller = page_orders.field(orders::seller_id);
    let in_status: PageOrderStatus = page_orders.field(orders::status);
    let page_ids = source
        .filter(seller.eq(seller_id).and(id.lt(before)).and(in_status.eq(status)))
        .order(id.desc())
        .limit(limit)
        .select(id);
    orders::table
        .left_join(order_items::table)
        .filter(orders::id.eq_any(page_ids))
        .order((orders::id.desc(), order_items::id.asc()))
        .select(order_with_items())
}

type OrderWithItem = (OrderRow, Option<OrderItem>);

/// A page of the seller's orders with their items, optionally in one status.
pub struct OrdersPage {
    pub page: PageOf,
    pub status: Option<String>,
}

impl Read for OrdersPage {
    type Output = Page<Order>;

    fn run(&self, conn: &mut DbConnection) -> QueryResult<Page<Order>> {
        let p = self.page;
        let joined: Vec<OrderWithItem> = match &self.status {
            Some(status) => load(conn, orders_page_in_status(p.seller_id, status.clone(), p.before(), p.limit + 1))?,
            None => load(conn, orders_page(p.seller_id, p.before(), p.limit + 1))?,
        };
        Ok(page(group_items(joined), p.limit))
    }

    async fn run_pipelined(&self, conn: &AsyncPgConnection) -> QueryResult<Page<Order>> {
        let p = self.page;
        let joined: Vec<OrderWithItem> = match &self.status {
            Some(status) => {
                load_pipelined(conn, orders_page_in_status(p.seller_id, status.clone(), p.before(), p.limit + 1))
                    .await?
            }
            None => load_pipelined(conn, orders_page(p.seller_id, p.before(), p.limit + 1)).await?,
        };
        Ok(page(group_items(joined), p.limit))
    }
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
#[diesel::dsl::auto_type(no_type_alias)]
fn one_order(seller_id: i64, id: i64) -> _ {
    orders::table
        .left_join(order_items::table)
        .filter(orders::seller_id.eq(seller_id))
        .filter(orders::id.eq(id))
        .order(order_items::id.asc())
        .select(order_with_items())
}

/// One of the seller's orders with its items.
pub struct OneOrder {
    pub seller_id: i64,
    pub id: i64,
}

impl Read for OneOrder {
    type Output = Option<Order>;

    fn run(&self, conn: &mut DbConnection) -> QueryResult<Option<Order>> {
        let joined: Vec<OrderWithItem> = load(conn, one_order(self.seller_id, self.id))?;
        Ok(group_items(joined).pop())
    }

    async fn run_pipelined(&self, conn: &AsyncPgConnection) -> QueryResult<Option<Order>> {
        let joined: Vec<OrderWithItem> = load_pipelined(conn, one_order(self.seller_id, self.id)).await?;
        Ok(group_items(joined).pop())
    }
}

pub fn find_order(conn: &mut DbConnection, seller_id: i64, id: i64) -> QueryResult<Option<Order>> {
    OneOrder { seller_id, id }.run(conn)
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
        // The new row's own id, from the insert itself: with concurrent
        // orders of one seller, anything read afterwards may be another's.
        let id: i64 = diesel::insert_into(orders::table)
            .values((
                orders::seller_id.eq(seller_id),
                orders::customer_email.eq(customer_email),
                orders::status.eq(status),
                orders::currency.eq(currency.unwrap_or_else(|| "EUR".into())),
                orders::total_cents.eq(total),
                orders::created_at.eq(created_at.unwrap_or_else(db::now)),
            ))
            .returning(orders::id)
            .get_result(conn)?;
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
