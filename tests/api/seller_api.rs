//! The seller API: data, pagination, validation, the scope matrix and
//! isolation between sellers on every route.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{create_service_token, spawn_app, TestApp, User};

async fn call(app: &TestApp, token: &str, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new().request(method, format!("{}{path}", app.address)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn personal_token(user: &User) -> String {
    let response = user.submit("/settings/tokens", &[("name", "me"), ("kind", "personal"), ("expires", "30")]).await;
    crate::helpers::extract_token(&response.text().await.unwrap()).unwrap()
}

/// Every operation: method, path, body, required scope. `{order}`, `{product}`
/// are replaced with one of the caller's own ids.
fn operations(order: i64, product: i64) -> Vec<(Method, String, Option<Value>, &'static str)> {
    vec![
        (Method::GET, "/api/v1/orders".into(), None, "orders:read"),
        (Method::GET, format!("/api/v1/orders/{order}"), None, "orders:read"),
        (
            Method::POST,
            "/api/v1/orders".into(),
            Some(json!({"customer_email": "x@y.test", "items": [{"sku": "MUG-001", "quantity": 1}]})),
            "orders:write",
        ),
        (Method::GET, "/api/v1/products".into(), None, "products:read"),
        (Method::GET, format!("/api/v1/products/{product}"), None, "products:read"),
        (
            Method::POST,
            "/api/v1/products".into(),
            Some(json!({"sku": "NEW-1", "name": "New", "price_cents": 100, "currency": "EUR"})),
            "products:write",
        ),
        (Method::PATCH, format!("/api/v1/products/{product}"), Some(json!({"price_cents": 999})), "products:write"),
        (Method::GET, "/api/v1/inventory".into(), None, "inventory:read"),
        (Method::PUT, "/api/v1/inventory/MUG-001".into(), Some(json!({"quantity": 7})), "inventory:write"),
        (Method::GET, "/api/v1/reports/sales".into(), None, "reports:read"),
    ]
}

async fn first_ids(app: &TestApp, token: &str) -> (i64, i64) {
    let (_, orders) = call(app, token, Method::GET, "/api/v1/orders?limit=1", None).await;
    let (_, products) = call(app, token, Method::GET, "/api/v1/products?limit=1", None).await;
    (orders["data"][0]["id"].as_i64().unwrap(), products["data"][0]["id"].as_i64().unwrap())
}

#[tokio::test]
async fn a_new_seller_gets_sample_data_and_pages_through_it() {
    let app = spawn_app().await;
    let ana = app.seller("ana@shop.test").await;
    let token = personal_token(&ana).await;
    let (status, page) = call(&app, &token, Method::GET, "/api/v1/orders", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["data"].as_array().unwrap().len(), 5);
    assert_eq!(page["next_cursor"], Value::Null);
    assert!(page["data"][0]["items"].as_array().is_some_and(|items| !items.is_empty()));

    let mut seen = Vec::new();
    let mut path = "/api/v1/orders?limit=2".to_owned();
    loop {
        let (status, page) = call(&app, &token, Method::GET, &path, None).await;
        assert_eq!(status, StatusCode::OK);
        let ids: Vec<i64> = page["data"].as_array().unwrap().iter().map(|o| o["id"].as_i64().unwrap()).collect();
        assert!(ids.len() <= 2);
        seen.extend(ids);
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/orders?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5);
    assert!(seen.windows(2).all(|w| w[0] > w[1]), "newest first, no repeats: {seen:?}");
    // Every order comes with exactly its own items, whatever the page size.
    let (_, all) = call(&app, &token, Method::GET, "/api/v1/orders", None).await;
    for order in all["data"].as_array().unwrap() {
        let (_, one) = call(&app, &token, Method::GET, &format!("/api/v1/orders/{}", order["id"]), None).await;
        assert_eq!(order, &one, "the list and the order itself agree");
        let units: i64 = order["items"].as_array().unwrap().iter().map(|i| i["quantity"].as_i64().unwrap()).sum();
        let total: i64 = order["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["quantity"].as_i64().unwrap() * i["unit_price_cents"].as_i64().unwrap())
            .sum();
        assert!(units > 0);
        assert_eq!(order["total_cents"], total);
    }
    // The status filter keeps the keyset and the items.
    let (_, cancelled) = call(&app, &token, Method::GET, "/api/v1/orders?status=cancelled&limit=1", None).await;
    let cancelled = cancelled["data"].as_array().unwrap();
    assert_eq!(cancelled.len(), 1);
    assert_eq!(cancelled[0]["status"], "cancelled");
    assert!(!cancelled[0]["items"].as_array().unwrap().is_empty());

    let (_, report) = call(&app, &token, Method::GET, "/api/v1/reports/sales", None).await;
    assert_eq!(report["orders"], 4);
    assert_eq!(report["units"], 10);
    assert_eq!(report["revenue_cents"], 17_700);
    assert_eq!(report["cancelled_orders"], 1);
}

#[tokio::test]
async fn sample_data_can_be_turned_off() {
    let app = crate::helpers::spawn_app_with(|c| c.sample_data = false).await;
    let ana = app.seller("ana@shop.test").await;
    let token = personal_token(&ana).await;
    let (_, page) = call(&app, &token, Method::GET, "/api/v1/products", None).await;
    assert_eq!(page["data"], json!([]));
}

#[tokio::test]
async fn the_scope_matrix_holds_on_every_route() {
    let app = spawn_app().await;
    let ana = app.seller("ana@shop.test").await;
    let personal = personal_token(&ana).await;
    let (order, product) = first_ids(&app, &personal).await;
    let mut sku = 0;
    let mut fresh = |body: &Option<Value>| {
        // Each product creation needs a SKU of its own.
        let mut body = body.clone();
        if let Some(Value::Object(map)) = body.as_mut() {
            if map.contains_key("sku") {
                sku += 1;
                map.insert("sku".into(), json!(format!("NEW-{sku}")));
            }
        }
        body
    };
    for (method, path, body, scope) in operations(order, product) {
        // A personal token may do everything the account may.
        let (status, _) = call(&app, &personal, method.clone(), &path, fresh(&body)).await;
        assert!(status.is_success(), "personal {method} {path}: {status}");

        // A service token with exactly that scope may; one without it may not.
        let (with, _) = create_service_token(&ana, &format!("with {method} {path}"), &[scope]).await;
        let (status, _) = call(&app, &with, method.clone(), &path, fresh(&body)).await;
        assert!(status.is_success(), "with {scope}: {method} {path}: {status}");
        let other = if scope.starts_with("reports") { "orders:write" } else { "reports:read" };
        let (without, _) = create_service_token(&ana, &format!("without {method} {path}"), &[other]).await;
        let (status, body) = call(&app, &without, method.clone(), &path, fresh(&body)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "without {scope}: {method} {path}");
        assert_eq!(body["error"], "insufficient_scope");
        assert_eq!(body["required_scope"], scope);

        // A write token may read its group.
        if let Some(group) = scope.strip_suffix(":read") {
            if group != "reports" {
                let (writer, _) =
                    create_service_token(&ana, &format!("writer {method} {path}"), &[&format!("{group}:write")]).await;
                let (status, _) = call(&app, &writer, method.clone(), &path, None).await;
                assert!(status.is_success(), "{group}:write reads {path}");
            }
        }
    }
    let rows = app.api_rows(1).await;
    assert!(rows
        .iter()
        .any(|r| r.outcome == "insufficient_scope" && r.required_scope.as_deref() == Some("orders:write")));
}

#[tokio::test]
async fn no_route_reaches_another_sellers_data() {
    let app = spawn_app().await;
    let ana = app.seller("ana@shop.test").await;
    let mallory = app.seller("mallory@shop.test").await;
    let ana_token = personal_token(&ana).await;
    let mallory_token = personal_token(&mallory).await;
    let (ana_order, ana_product) = first_ids(&app, &ana_token).await;
    let (_, ana_before) = call(&app, &ana_token, Method::GET, "/api/v1/inventory?limit=200", None).await;

    // By id: 404, and nothing changes.
    for (method, path, body) in [
        (Method::GET, format!("/api/v1/orders/{ana_order}"), None),
        (Method::GET, format!("/api/v1/products/{ana_product}"), None),
        (Method::PATCH, format!("/api/v1/products/{ana_product}"), Some(json!({"name": "pwned"}))),
    ] {
        let (status, body) = call(&app, &mallory_token, method.clone(), &path, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}");
        assert_eq!(body["error"], "not_found");
    }
    let (_, product) = call(&app, &ana_token, Method::GET, &format!("/api/v1/products/{ana_product}"), None).await;
    assert_ne!(product["name"], "pwned");

    // Lists, reports and writes see only the caller's own rows.
    let (_, ana_orders) = call(&app, &ana_token, Method::GET, "/api/v1/orders", None).await;
    let (_, mallory_orders) = call(&app, &mallory_token, Method::GET, "/api/v1/orders", None).await;
    let ids = |v: &Value| v["data"].as_array().unwrap().iter().map(|o| o["id"].as_i64().unwrap()).collect::<Vec<_>>();
    assert!(ids(&ana_orders).iter().all(|id| !ids(&mallory_orders).contains(id)));
    let (_, ana_products) = call(&app, &ana_token, Method::GET, "/api/v1/products?limit=200", None).await;
    let (_, mallory_products) = call(&app, &mallory_token, Method::GET, "/api/v1/products?limit=200", None).await;
    assert!(ids(&ana_products).iter().all(|id| !ids(&mallory_products).contains(id)));
    let (status, _) =
        call(&app, &mallory_token, Method::PUT, "/api/v1/inventory/MUG-001", Some(json!({"quantity": 0}))).await;
    assert_eq!(status, StatusCode::OK, "mallory sets her own stock");
    let (_, ana_after) = call(&app, &ana_token, Method::GET, "/api/v1/inventory?limit=200", None).await;
    assert_eq!(ana_before["data"], ana_after["data"], "ana's stock is untouched");
    let (_, created) = call(
        &app,
        &mallory_token,
        Method::POST,
        "/api/v1/orders",
        Some(json!({"customer_email": "m@x.test", "items": [{"sku": "MUG-001", "quantity": 1}]})),
    )
    .await;
    let (status, _) = call(&app, &ana_token, Method::GET, &format!("/api/v1/orders/{}", created["id"]), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_json_bodies_name_the_field_and_write_nothing() {
    let app = spawn_app().await;
    let ana = app.seller("ana@shop.test").await;
    let token = personal_token(&ana).await;
    let (_, before) = call(&app, &token, Method::GET, "/api/v1/products?limit=200", None).await;
    let cases = [
        (json!({"sku": "A-1", "name": "A", "price_cents": "ten", "currency": "EUR"}), 400, "price_cents"),
        (json!({"sku": "A-1", "name": "A", "currency": "EUR"}), 400, "price_cents"),
        (json!({"sku": "A-1", "name": "A", "price_cents": 1, "currency": "EUR", "colour": "red"}), 400, "colour"),
        (json!({"sku": "A-1", "name": "A", "price_cents": -1, "currency": "EUR"}), 422, "price_cents"),
        (json!({"sku": "A 1", "name": "A", "price_cents": 1, "currency": "EUR"}), 422, "sku"),
        (json!({"sku": "A-1", "name": " ", "price_cents": 1, "currency": "EUR"}), 422, "name"),
        (json!({"sku": "A-1", "name": "A", "price_cents": 1, "currency": "euro"}), 422, "currency"),
        (json!({"sku": "MUG-001", "name": "A", "price_cents": 1, "currency": "EUR"}), 409, "sku"),
        (json!([1, 2]), 400, "body"),
    ];
    for (body, status, field) in cases {
        let (got, answer) = call(&app, &token, Method::POST, "/api/v1/products", Some(body.clone())).await;
        assert_eq!(got.as_u16(), status, "{body}");
        assert_eq!(answer["field"], field, "{body}: {answer}");
        assert!(answer["request_id"].as_str().is_some_and(|id| id.len() == 32));
    }
    let order_cases = [
        (json!({"customer_email": "x@y.test", "items": []}), 422, "items"),
        (json!({"customer_email": "x@y.test", "items": [{"sku": "MUG-001", "quantity": 0}]}), 422, "items[0].quantity"),
        (
            json!({"customer_email": "x@y.test", "items": [{"sku": "MUG-001", "quantity": "1"}]}),
            400,
            "items[0].quantity",
        ),
        (json!({"customer_email": "nope", "items": [{"sku": "MUG-001", "quantity": 1}]}), 422, "customer_email"),
        (
            json!({"customer_email": "x@y.test", "status": "lost", "items": [{"sku": "MUG-001", "quantity": 1}]}),
            422,
            "status",
        ),
        (json!({"customer_email": "x@y.test", "items": [{"sku": "NOPE", "quantity": 1}]}), 422, "items"),
    ];
    for (body, status, field) in order_cases {
        let (got, answer) = call(&app, &token, Method::POST, "/api/v1/orders", Some(body.clone())).await;
        assert_eq!(got.as_u16(), status, "{body}");
        assert_eq!(answer["field"], field, "{body}: {answer}");
    }
    let (got, answer) =
        call(&app, &token, Method::PUT, "/api/v1/inventory/MUG-001", Some(json!({"quantity": -5}))).await;
    assert_eq!((got.as_u16(), answer["field"].as_str()), (422, Some("quantity")));
    let (got, _) = call(&app, &token, Method::PATCH, "/api/v1/products/1", Some(json!({}))).await;
    assert!(got == StatusCode::UNPROCESSABLE_ENTITY || got == StatusCode::NOT_FOUND);
    let plain = reqwest::Client::new()
        .post(format!("{}/api/v1/products", app.address))
        .bearer_auth(&token)
        .header("content-type", "text/plain")
        .body("sku=A")
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let (_, after) = call(&app, &token, Method::GET, "/api/v1/products?limit=200", None).await;
    assert_eq!(before, after, "nothing was written");
    let (_, orders) = call(&app, &token, Method::GET, "/api/v1/orders?limit=200", None).await;
    assert_eq!(orders["data"].as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn bad_query_strings_are_refused_by_name() {
    let app = spawn_app().await;
    let ana = app.seller("ana@shop.test").await;
    let token = personal_token(&ana).await;
    for (path, status, field) in [
        ("/api/v1/orders?limit=0", 422, "limit"),
        ("/api/v1/orders?limit=201", 422, "limit"),
        ("/api/v1/orders?limit=ten", 400, "limit"),
        ("/api/v1/orders?cursor=bogus", 400, "cursor"),
        ("/api/v1/orders?status=lost", 422, "status"),
        ("/api/v1/orders?sort=name", 400, "sort"),
        ("/api/v1/orders?limit=1&limit=2", 400, "limit"),
        ("/api/v1/reports/sales?from=2026-13-01", 400, "from"),
        ("/api/v1/reports/sales?from=2026-05-02&to=2026-05-01", 422, "from"),
        ("/api/v1/reports/sales?from=2020-01-01&to=2026-01-01", 422, "to"),
    ] {
        let (got, body) = call(&app, &token, Method::GET, path, None).await;
        assert_eq!(got.as_u16(), status, "{path}");
        assert_eq!(body["field"], field, "{path}");
    }
}

#[tokio::test]
async fn writes_create_and_update_rows() {
    let app = spawn_app().await;
    let ana = app.seller("ana@shop.test").await;
    let token = personal_token(&ana).await;
    let (status, product) = call(
        &app,
        &token,
        Method::POST,
        "/api/v1/products",
        Some(json!({"sku": "CAP-1", "name": "Cap", "price_cents": 1500, "currency": "EUR"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let id = product["id"].as_i64().unwrap();
    let (status, patched) = call(
        &app,
        &token,
        Method::PATCH,
        &format!("/api/v1/products/{id}"),
        Some(json!({"price_cents": 1750, "active": false})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (patched["price_cents"].as_i64(), patched["active"].as_bool(), patched["name"].as_str()),
        (Some(1750), Some(false), Some("Cap"))
    );
    let (status, stock) =
        call(&app, &token, Method::PUT, "/api/v1/inventory/CAP-1", Some(json!({"quantity": 12, "location": "B2"})))
            .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stock["quantity"], 12);
    let (status, order) = call(
        &app,
        &token,
        Method::POST,
        "/api/v1/orders",
        Some(json!({"customer_email": "Buyer@Example.com", "items": [{"sku": "CAP-1", "quantity": 2}]})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(order["total_cents"], 3500);
    assert_eq!(order["customer_email"], "buyer@example.com");
    assert_eq!(order["status"], "pending");
}

/// Concurrent orders of one seller each keep their own items (on
/// PostgreSQL an order once found its id with `max(id)` and took another's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_orders_keep_their_own_items() {
    let app = spawn_app().await;
    let seller = app.seller("ana@shop.test").await;
    let token = personal_token(&seller).await;
    let skus = ["MUG-001", "TEE-BLK-M", "TEE-BLK-L", "BAG-TOTE"];
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(24));
    let mut orders = tokio::task::JoinSet::new();
    for i in 0..24 {
        let (address, token, barrier) = (app.address.clone(), token.clone(), barrier.clone());
        let sku = skus[i % skus.len()];
        let quantity = i as i64 + 1;
        orders.spawn(async move {
            barrier.wait().await;
            let response = reqwest::Client::new()
                .post(format!("{address}/api/v1/orders"))
                .bearer_auth(&token)
                .json(&json!({"customer_email": format!("c{i}@example.com"), "items": [{"sku": sku, "quantity": quantity}]}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::CREATED);
            (sku, quantity, response.json::<Value>().await.unwrap())
        });
    }
    for (sku, quantity, created) in orders.join_all().await {
        let expected =
            json!([{"sku": sku, "quantity": quantity, "unit_price_cents": created["items"][0]["unit_price_cents"]}]);
        assert_eq!(created["items"], expected, "{created}");
        let (status, stored) =
            call(&app, &token, Method::GET, &format!("/api/v1/orders/{}", created["id"]), None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(stored["items"], expected, "the stored order has exactly its own item");
    }
}
