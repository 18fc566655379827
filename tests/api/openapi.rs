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
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");

    for route in keygate::api::ROUTES {
        let operation = &doc["paths"][route.path][route.method.to_lowercase()];
        assert!(operation.is_object(), "{} {} is documented", route.method, route.path);
        let scopes: Vec<&str> =
            operation["security"][0]["bearer"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
        assert_eq!(scopes, route.scope.iter().map(|s| s.as_str()).collect::<Vec<_>>(), "{}", route.path);
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
    // The API's operations, this document, and the OAuth server's four.
    let documented: usize =
        doc["paths"].as_object().unwrap().values().map(|item| item.as_object().unwrap().len()).sum();
    assert_eq!(documented, keygate::api::ROUTES.len() + 1 + 4);
    for (path, method) in [
        ("/oauth/token", "post"),
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
