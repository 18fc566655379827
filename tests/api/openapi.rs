//! The OpenAPI document: public, complete, and in step with the gate and
//! the handlers' rules. `contract.rs` holds the server to it with tools.

use serde_json::Value;

use crate::helpers::{create_service_token, spawn_app};

#[tokio::test]
async fn the_document_lists_every_route_with_its_scope_and_resolvable_schemas() {
    let app = spawn_app().await;
    let response = app.api_get("/api/openapi.json", None).await;
    assert_eq!(response.status(), reqwest::StatusCode::OK, "public, no token needed");
    let doc: Value = response.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["components"]["securitySchemes"]["keygate"]["scheme"], "bearer");

    for route in keygate::api::ROUTES {
        let operation = &doc["paths"][route.path][route.method.to_lowercase()];
        assert!(operation.is_object(), "{} {} is documented", route.method, route.path);
        let scopes: Vec<&str> =
            operation["security"][0]["keygate"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
        assert_eq!(scopes, route.scope.iter().copied().collect::<Vec<_>>(), "{}", route.path);
        let responses = &operation["responses"];
        for status in ["400", "401", "403", "404", "405", "429", "500", "503"] {
            assert!(responses[status].is_object(), "{} {} declares {status}", route.method, route.path);
            assert!(responses[status]["headers"]["X-Request-Id"].is_object());
        }
        assert!(responses["401"]["headers"]["WWW-Authenticate"].is_object());
        assert!(responses["405"]["headers"]["Allow"].is_object());
        assert!(responses["429"]["headers"]["Retry-After"].is_object());
        assert!(responses["503"]["headers"]["Retry-After"].is_object());
        assert!(responses[route.ok.0.to_string()]["headers"]["RateLimit"].is_object());
        if route.body.is_some() {
            for status in ["413", "415", "422"] {
                assert!(responses[status].is_object(), "{} {} declares {status}", route.method, route.path);
            }
        }
        for parameter in operation["parameters"].as_array().unwrap() {
            assert!(parameter["schema"]["type"].is_string(), "{} {}: {parameter}", route.method, route.path);
        }
    }
    // The API's operations, this document, and the OAuth server's five.
    let documented: usize =
        doc["paths"].as_object().unwrap().values().map(|item| item.as_object().unwrap().len()).sum();
    assert_eq!(documented, keygate::api::ROUTES.len() + 1 + 5);
    for (path, method) in [
        ("/oauth/token", "post"),
        ("/oauth/device_authorization", "post"),
        ("/oauth/revoke", "post"),
        ("/oauth/introspect", "post"),
        ("/.well-known/oauth-authorization-server", "get"),
    ] {
        assert!(doc["paths"][path][method]["responses"]["200"].is_object(), "{method} {path}");
    }

    // The limits are the handlers' own (one source: `api::rules`).
    use keygate::api::rules;
    let schemas = &doc["components"]["schemas"];
    let sku = &schemas["CreateProduct"]["properties"]["sku"];
    assert_eq!(sku["maxLength"], rules::SKU.max);
    assert_eq!(sku["pattern"], rules::SKU.pattern.unwrap());
    assert_eq!(schemas["CreateProduct"]["properties"]["price_cents"]["maximum"], rules::PRICE_CENTS.max);
    assert_eq!(schemas["CreateOrder"]["properties"]["items"]["maxItems"], rules::MAX_LINES);
    assert_eq!(schemas["CreateOrder"]["properties"]["items"]["minItems"], 1);
    assert_eq!(schemas["CreateOrder"]["additionalProperties"], false);
    assert_eq!(schemas["UpdateProduct"]["minProperties"], 1);
    let limit = &doc["paths"]["/api/v1/orders"]["get"]["parameters"][0];
    assert_eq!((limit["name"].as_str(), &limit["schema"]["maximum"]), (Some("limit"), &Value::from(rules::LIMIT.max)));

    // Every $ref points at a component that exists.
    let text = doc.to_string();
    for (i, _) in text.match_indices("\"$ref\":\"#/components/") {
        let rest: String = text[i + 21..].chars().take_while(|c| *c != '"').collect();
        let (kind, name) = rest.split_once('/').unwrap();
        assert!(doc["components"][kind][name].is_object(), "{rest} is referenced but missing");
    }
    assert_eq!(app.api_rows(1).await[0].outcome, "ok", "the document request is audited too");
}

/// What the document promises for answers actix would otherwise make itself.
#[tokio::test]
async fn refusals_outside_the_handlers_are_json_with_their_headers() {
    let app = spawn_app().await;
    let seller = app.seller("ana@shop.test").await;
    let (token, _) = create_service_token(&seller, "erp", &["products:write"]).await;
    let client = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", app.address);
    let json = |response: reqwest::Response| async move {
        assert!(response.headers()["x-request-id"].to_str().unwrap().len() == 32);
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        assert!(body["message"].is_string() && body["request_id"].is_string(), "{body}");
        (status, body["error"].as_str().unwrap().to_owned())
    };

    let wrong_method = client.delete(url("/api/v1/products")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(wrong_method.headers()["allow"], "GET, POST");
    assert_eq!(json(wrong_method).await, (405, "method_not_allowed".into()));
    let unknown = client.get(url("/api/v2/nothing/here")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(json(unknown).await, (404, "not_found".into()));

    let huge = "x".repeat(keygate::error::MAX_BODY_BYTES + 1);
    let too_large = client
        .post(url("/api/v1/products"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(format!("{{\"name\": \"{huge}\"}}"))
        .send()
        .await
        .unwrap();
    assert_eq!(json(too_large).await, (413, "payload_too_large".into()));
    let as_form = client.post(url("/api/v1/products")).bearer_auth(&token).form(&[("sku", "A")]).send().await.unwrap();
    assert_eq!(json(as_form).await, (415, "unsupported_media_type".into()));
    let float = client
        .post(url("/api/v1/products"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"sku": "MUG-9", "name": "Mug", "price_cents": 1200.0, "currency": "EUR"}))
        .send()
        .await
        .unwrap();
    assert_eq!(float.status(), 201, "1200.0 is an integer to JSON Schema, and so to the API");
    let null = client
        .patch(url("/api/v1/products/1"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"name": null, "active": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(json(null).await, (400, "invalid_request".into()), "null is not a string");

    // The OAuth form endpoints answer in their own shape.
    let oauth_huge = client.post(url("/oauth/token")).form(&[("code", huge.as_str())]).send().await.unwrap();
    assert_eq!(oauth_huge.status(), 413);
    let body: Value = oauth_huge.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");
}

/// As askama escapes text.
fn escaped(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// `/docs/api` renders the document the server serves, not a copy: every
/// path and method of it, and every response of an operation, with the
/// limits of its parameters and body; the JSON stays linked.
#[tokio::test]
async fn the_api_reference_page_renders_every_path_and_status_of_the_served_document() {
    let app = spawn_app().await;
    let seller = app.seller("ana@shop.test").await;
    let doc: Value = app.api_get("/api/openapi.json", None).await.json().await.unwrap();
    let html = seller.get_html("/docs/api").await;
    assert!(html.contains("href=\"/api/openapi.json\""), "the JSON is linked");
    assert!(html.contains("<a href=\"/docs/api\" class=\"nav-ref\" aria-current=\"page\">API reference</a>"));

    let section = |anchor: &str| {
        let start = html.find(&format!("<section class=\"card operation\" id=\"{anchor}\">")).unwrap_or_else(|| {
            panic!("no section for {anchor}");
        });
        html[start..start + html[start..].find("</section>").unwrap()].to_owned()
    };
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        assert!(html.contains(&format!("<code class=\"path\">{}</code>", escaped(path))), "{path} is on the page");
        for (method, operation) in item.as_object().unwrap() {
            let id = operation["operationId"].as_str().unwrap();
            let part = section(id);
            assert!(part.contains(&format!(
                ">{}</span> <code class=\"path\">{}</code>",
                method.to_uppercase(),
                escaped(path)
            )));
            assert!(part.contains(&escaped(operation["summary"].as_str().unwrap())), "{id}: its summary");
            for status in operation["responses"].as_object().unwrap().keys() {
                assert!(part.contains(&format!("\">{status}</span>")), "{id}: {status}");
            }
            operations += 1;
        }
    }
    assert_eq!(operations, keygate::api::ROUTES.len() + 1 + 5);

    // One operation in full: its scope, body fields with their limits, and
    // each response status with its description.
    let create = section("postV1Orders");
    let operation = &doc["paths"]["/api/v1/orders"]["post"];
    assert!(create.contains("<code class=\"scope\">orders:write</code>"));
    for (status, response) in operation["responses"].as_object().unwrap() {
        let row = &create[create.find(&format!("\">{status}</span>")).unwrap()..];
        let row = &row[..row.find("</tr>").unwrap()];
        // The description, its `code` spans rendered as <code>.
        let words = response["description"].as_str().unwrap().split('`').map(escaped).collect::<Vec<_>>();
        let mut rendered = String::new();
        for (i, part) in words.iter().enumerate() {
            if part.is_empty() {
                continue;
            }
            rendered.push_str(&if i % 2 == 1 { format!("<code>{part}</code>") } else { part.clone() });
        }
        assert!(row.contains(&rendered), "{status}: {rendered} not in {row}");
    }
    assert!(create
        .contains("<code>application/json</code>, <a class=\"in-text\" href=\"#schema-CreateOrder\">CreateOrder</a>"));
    let max_lines = keygate::api::rules::MAX_LINES;
    assert!(
        create.contains("<code class=\"field-name\">items</code>") && create.contains(&format!("1–{max_lines} items"))
    );
    assert!(create.contains("<code class=\"field-name\">items[].sku</code>"), "nested fields spelled out");
    let sku = keygate::api::rules::SKU;
    assert!(create.contains(&format!("{}–{} characters", sku.min, sku.max)));
    assert!(create.contains(&format!("pattern <code>{}</code>", escaped(sku.pattern.unwrap()))));
    let list = section("getV1Orders");
    let limit = keygate::api::rules::LIMIT;
    assert!(list.contains("<code class=\"field-name\">limit</code> <span class=\"kind\">query</span>"));
    assert!(list.contains(&format!("≥ {} and ≤ {}", limit.min, limit.max)));
    assert!(section("postOauthToken").contains("HTTP Basic"), "the OAuth endpoints' client authentication");
    assert!(section("getOpenapiJson").contains("None: anyone may call it."));
    // Every schema the operations refer to has its section.
    for name in doc["components"]["schemas"].as_object().unwrap().keys() {
        assert!(html.contains(&format!("id=\"schema-{name}\"")), "{name}");
    }
    // Offline: nothing from elsewhere, no script but the portal's own.
    assert!(!html.contains("<script src=\"http") && !html.contains("<link rel=\"stylesheet\" href=\"http"));
    assert_eq!(html.matches("<script").count(), 1);
}
