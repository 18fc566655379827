//! The OpenAPI document: public, complete, and in step with the gate.

use serde_json::Value;

use crate::helpers::spawn_app;

#[tokio::test]
async fn the_document_lists_every_route_with_its_scope_and_resolvable_schemas() {
    let app = spawn_app().await;
    let response = app.api_get("/api/openapi.json", None).await;
    assert_eq!(response.status(), reqwest::StatusCode::OK, "public, no token needed");
    let doc: Value = response.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");

    for route in keygate::api::ROUTES {
        let operation = &doc["paths"][route.path][route.method.to_lowercase()];
        assert!(operation.is_object(), "{} {} is documented", route.method, route.path);
        let scopes: Vec<&str> =
            operation["security"][0]["bearer"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
        assert_eq!(scopes, route.scope.iter().map(|s| s.as_str()).collect::<Vec<_>>(), "{}", route.path);
        assert!(operation["responses"]["401"].is_object());
    }
    let documented: usize =
        doc["paths"].as_object().unwrap().values().map(|item| item.as_object().unwrap().len()).sum();
    assert_eq!(documented, keygate::api::ROUTES.len());

    // Every $ref points at a schema that exists.
    let text = doc.to_string();
    for (i, _) in text.match_indices("#/components/schemas/") {
        let name: String = text[i + 21..].chars().take_while(|c| *c != '"').collect();
        assert!(doc["components"]["schemas"][&name].is_object(), "{name} is referenced but missing");
    }
    assert_eq!(app.api_rows(1).await[0].outcome, "ok", "the document request is audited too");
}
