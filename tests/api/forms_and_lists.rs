//! Forms and lists (issue 18): errors beside their fields, the expiry
//! preview, the token list's menu and folded revoked tokens, the settings
//! navigation.

use reqwest::StatusCode;

use crate::helpers::{create_service_token, spawn_app};

#[tokio::test]
async fn token_form_errors_sit_beside_their_fields_all_at_once() {
    let app = spawn_app().await;
    let ana = app.seller("ana@shop.test").await;
    let response = ana
        .post_form("/settings/tokens", &[("name", ""), ("kind", "service"), ("expires", "45"), ("allowed_ips", "nope")])
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = response.text().await.unwrap();
    // The summary lists every problem, in the form's order…
    let summary = &html[html.find("id=\"form-errors\"").unwrap()
        ..html.find("<form method=\"post\" action=\"/settings/tokens\"").unwrap()];
    let at = |text: &str| summary.find(text).unwrap_or_else(|| panic!("{text} not in the summary: {summary}"));
    assert!(at("Give the token a name.") < at("needs at least one scope"));
    assert!(at("needs at least one scope") < at("offered expiry"));
    assert!(summary.contains("nope"), "the allowlist's problem too");
    // …and each field says its own, marked invalid, for the focus script.
    let form = &html[html.find("<form method=\"post\" action=\"/settings/tokens\"").unwrap()..];
    assert!(form.contains(
        "name=\"name\" value=\"\" required maxlength=\"64\" placeholder=\"e.g. Warehouse sync\" aria-invalid=\"true\""
    ));
    assert!(form.contains("<small class=\"field-error\">Give the token a name.</small>"), "{form}");
    assert!(form.contains("<fieldset class=\"scopes invalid\">"));
    assert!(form.contains("data-focus-first-error"));
    let duplicate = create_service_token(&ana, "erp", &["orders:read"]).await;
    let again = ana
        .post_form(
            "/settings/tokens",
            &[("name", "erp"), ("kind", "service"), ("scope", "orders:read"), ("expires", "90")],
        )
        .await
        .text()
        .await
        .unwrap();
    assert!(again.contains("<small class=\"field-error\">You already have an active token named “erp”"), "{again}");
    assert!(!again.contains(&duplicate.0));
}

#[tokio::test]
async fn the_token_form_previews_the_expiry_and_warns_about_a_personal_token_forever() {
    let app = spawn_app().await;
    let ana = app.seller("ana@shop.test").await;
    let form = ana.get_html("/settings/tokens/new").await;
    let day = (chrono::Utc::now().date_naive() + chrono::Duration::days(90)).format("%a, %b %-d %Y").to_string();
    assert!(form.contains(&format!("This token will expire on {day} (UTC).")), "{form}");
    assert!(form.contains("data-never-warning hidden"), "no warning for the default");
    let html = ana
        .post_form("/settings/tokens", &[("name", ""), ("kind", "personal"), ("expires", "never")])
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("This token will never expire."));
    assert!(html.contains("<div class=\"alert warning\" data-never-warning>A personal token that never expires"));
}

#[tokio::test]
async fn the_token_list_has_a_menu_per_row_and_folds_revoked_tokens_away() {
    let app = spawn_app().await;
    let ana = app.seller("ana@shop.test").await;
    let (_, live) = create_service_token(&ana, "live", &["orders:read"]).await;
    let (_, gone) = create_service_token(&ana, "gone", &["orders:read"]).await;
    ana.post_form(&format!("/settings/tokens/{gone}/revoke"), &[]).await;
    let html = ana.get_html("/settings/tokens").await;
    assert!(!html.contains("button small danger"), "no red button per row");
    assert!(
        html.contains("<details class=\"menu\">") && html.contains(&format!("href=\"/settings/tokens/{live}/revoke\""))
    );
    let folded = html.find("<details class=\"ended-tokens\">").expect("revoked tokens folded away");
    assert!(html[folded..].contains("Revoked and expired tokens (1)") && html[folded..].contains(&gone));
    assert!(!html[..folded].contains(&gone), "not among the live ones");
    assert!(ana.get_html("/settings/tokens?show=ended").await.contains("<details class=\"ended-tokens\" open>"));
}

#[tokio::test]
async fn the_navigation_groups_settings_and_admin_and_links_the_api_reference() {
    let app = spawn_app().await;
    let ana = app.seller("ana@shop.test").await;
    let seller = ana.get_html("/settings/tokens").await;
    assert!(seller.contains("aria-label=\"Settings\""));
    let settings = &seller[seller.find("aria-label=\"Settings\"").unwrap()..seller.find("</nav>").unwrap()];
    for link in
        ["/settings/tokens", "/settings/logs", "/settings/apps", "/settings/authorized-apps", "/settings/account"]
    {
        assert!(settings.contains(&format!("<a href=\"{link}\"")), "{link} in the settings group");
    }
    assert!(settings.contains(">Account</a>"));
    // The API reference is the rendered page, which links the JSON.
    assert!(settings.contains("<a href=\"/docs/api\" class=\"nav-ref\">API reference</a>"));
    assert!(ana.get_html("/docs/api").await.contains("href=\"/api/openapi.json\""));
    assert!(!seller.contains("aria-label=\"Admin\""), "sellers see no admin section");
    let admin = app.admin.get_html("/settings/tokens").await;
    assert!(admin.contains("aria-label=\"Admin\"") && admin.contains("href=\"/admin/logs\""));
    let missing = ana.get("/settings/nothing-here").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let html = missing.text().await.unwrap();
    assert!(html.contains("href=\"/settings/tokens\">API Tokens</a>"), "the 404 page keeps the navigation");
    assert_eq!(app.admin.get("/api/openapi.json").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_rotation_banner_names_every_token_that_needs_attention() {
    let app = spawn_app().await;
    let ana = app.seller("ana@shop.test").await;
    let (_, overdue) = create_service_token(&ana, "overdue", &["orders:read"]).await;
    let (_, soon) = create_service_token(&ana, "soon", &["orders:read"]).await;
    app.age_token(&overdue, 95);
    app.age_token(&soon, 85);
    let html = ana.get_html("/settings/tokens").await;
    let banner = &html[html.find("Rotation due.").expect("a banner")..];
    let banner = &banner[..banner.find("</div>").unwrap()];
    assert!(banner.contains("“overdue” has been in use for 90 days or more"), "{banner}");
    assert!(banner.contains("“soon” will be due for rotation within 5 days"), "{banner}");
    assert!(banner.contains("“overdue”, “soon” will rotate themselves when their client next calls"), "{banner}");

    // A token that may not rotate itself is not said to.
    let page = ana.get_html(&format!("/settings/tokens/{soon}")).await;
    let csrf = crate::helpers::csrf_from(&page);
    ana.post_raw(
        &format!("/settings/tokens/{soon}/self-rotation"),
        &[("csrf_token", &csrf), ("self_rotation_shown", "1")],
    )
    .await;
    let html = ana.get_html("/settings/tokens").await;
    let banner = &html[html.find("Rotation due.").expect("a banner")..];
    let banner = &banner[..banner.find("</div>").unwrap()];
    assert!(banner.contains("“overdue” will rotate itself when its client next calls"), "{banner}");
}
