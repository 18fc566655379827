//! What every page shares: security headers, request ids, static assets, 404s.

use reqwest::StatusCode;

use crate::helpers::spawn_app;

#[tokio::test]
async fn every_response_carries_security_headers_and_a_request_id() {
    let app = spawn_app().await;
    let anon = app.user("x@shop.test");
    for (path, status) in [("/login", 200), ("/healthz", 200), ("/nope", 404), ("/settings/tokens", 303)] {
        let response = anon.get(path).await;
        assert_eq!(response.status().as_u16(), status, "{path}");
        let headers = response.headers();
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"));
        assert_eq!(headers["x-frame-options"], "DENY");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["referrer-policy"], "same-origin");
        assert_eq!(headers["x-request-id"].len(), 32);
    }
    let first = anon.get("/healthz").await.headers()["x-request-id"].clone();
    let second = anon.get("/healthz").await.headers()["x-request-id"].clone();
    assert_ne!(first, second);
}

#[tokio::test]
async fn pages_use_local_assets_and_no_inline_script() {
    let app = spawn_app().await;
    let html = app.admin.get_html("/settings/tokens/new").await;
    assert!(html.contains("/static/css/app.css") && html.contains("/static/js/app.js"));
    assert!(!html.contains("http://") && !html.contains("https://"), "no CDN");
    assert!(!html.contains("<script>") && !html.contains("onclick"), "CSP forbids inline script");
    assert!(html.contains("name=\"viewport\""));
    let css = app.admin.get("/static/css/app.css").await;
    assert_eq!(css.status(), StatusCode::OK);
    assert!(css.headers()["content-type"].to_str().unwrap().starts_with("text/css"));
    assert!(css.text().await.unwrap().contains("@media"), "responsive rules");
    assert_eq!(app.admin.get("/static/js/app.js").await.status(), StatusCode::OK);
    assert_eq!(app.admin.get("/static/../Cargo.toml").await.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.admin.get("/static/css/missing.css").await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_token_form_offers_the_whole_scope_catalogue() {
    let app = spawn_app().await;
    let html = app.admin.get_html("/settings/tokens/new").await;
    for (scope, description) in keygate::shop::SCOPES {
        assert!(html.contains(&format!("value=\"{scope}\"")), "{scope}");
        assert!(html.contains(description), "{description}");
    }
    for group in ["Orders", "Products", "Inventory", "Reports"] {
        assert!(html.contains(&format!("<h3>{group}</h3>")));
    }
    assert!(html.contains("<option value=\"90\" selected>"), "90 days is suggested");
}
