//! Settings → API Tokens: create (shown once), list, statuses, rotate, revoke,
//! and every bad input.

use reqwest::StatusCode;

use crate::helpers::{
    captured_json_logs, captured_logs, create_service_token, extract_token, location, public_id_of, spawn_app,
    spawn_app_with,
};

#[tokio::test]
async fn a_service_token_is_shown_once_and_then_listed() {
    let app = spawn_app().await;
    let seller = app.seller("ana@shop.test").await;
    let response = seller
        .submit(
            "/settings/tokens",
            &[
                ("name", "Warehouse sync"),
                ("description", "WMS nightly"),
                ("kind", "service"),
                ("scope", "orders:read"),
                ("scope", "inventory:write"),
                ("expires", "30"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let html = response.text().await.unwrap();
    assert!(html.contains("You will not be able to see it again"));
    assert!(html.contains("data-copy-target=\"token-value\""), "a copy button");
    let token = extract_token(&html).unwrap();
    assert!(token.starts_with("kgs_"));
    let id = public_id_of(&token);

    let stored = app.token(&id);
    assert_eq!(stored.name, "Warehouse sync");
    assert_eq!(stored.description, "WMS nightly");
    assert_eq!(stored.scopes, "inventory:write orders:read", "sorted by name");
    assert_eq!(stored.created_by, app.account_id("ana@shop.test"));
    let days = (stored.expires_at.unwrap() - stored.created_at).num_days();
    assert_eq!(days, 30);

    // The list and the detail page show the token, never its secret.
    let list = seller.get_html("/settings/tokens").await;
    for expected in ["Warehouse sync", "service", "orders:read", "inventory:write", "active", id.as_str(), "never"] {
        assert!(list.contains(expected), "the list lacks {expected}");
    }
    assert!(!list.contains(&token));
    let detail = seller.get_html(&format!("/settings/tokens/{id}")).await;
    assert!(detail.contains("WMS nightly") && !detail.contains(&token));

    // Re-submitting the same form (reload / back) never shows a secret again.
    let replay = seller
        .post_form(
            "/settings/tokens",
            &[("name", "Warehouse sync"), ("kind", "service"), ("scope", "orders:read"), ("expires", "30")],
        )
        .await;
    assert_eq!(replay.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let replay = replay.text().await.unwrap();
    assert!(replay.contains("already have an active token named"));
    assert!(extract_token(&replay).is_none());
    assert_eq!(app.token_count(), 1);

    let created = app.events("token_created");
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].token_id.as_deref(), Some(id.as_str()));
    assert_eq!(created[0].actor_id, Some(app.account_id("ana@shop.test")));
    assert_eq!(created[0].seller_id, Some(app.account_id("ana@shop.test")));
}

#[tokio::test]
async fn a_personal_token_carries_the_account_scopes() {
    let app = spawn_app().await;
    let seller = app.seller("ana@shop.test").await;
    let response =
        seller.submit("/settings/tokens", &[("name", "my scripts"), ("kind", "personal"), ("expires", "never")]).await;
    assert_eq!(response.status(), StatusCode::OK);
    let token = extract_token(&response.text().await.unwrap()).unwrap();
    assert!(token.starts_with("kgp_"));
    let stored = app.token(&public_id_of(&token));
    assert_eq!(stored.kind, "personal");
    assert_eq!(stored.expires_at, None);
    assert!(seller.get_html("/settings/tokens").await.contains("all scopes of the account"));
}

#[tokio::test]
async fn a_custom_expiry_date_ends_with_that_day() {
    let app = spawn_app().await;
    let seller = app.seller("ana@shop.test").await;
    let date = (chrono::Utc::now().date_naive() + chrono::Duration::days(10)).format("%Y-%m-%d").to_string();
    let response = seller
        .submit(
            "/settings/tokens",
            &[
                ("name", "dated"),
                ("kind", "service"),
                ("scope", "reports:read"),
                ("expires", "custom"),
                ("expires_on", &date),
            ],
        )
        .await;
    let token = extract_token(&response.text().await.unwrap()).unwrap();
    let stored = app.token(&public_id_of(&token));
    assert_eq!(stored.expires_at.unwrap().format("%Y-%m-%d %H:%M").to_string(), {
        let end = chrono::Utc::now().date_naive() + chrono::Duration::days(11);
        format!("{} 00:00", end.format("%Y-%m-%d"))
    });
    assert_eq!(stored.lifetime_days, None);
}

#[tokio::test]
async fn bad_token_forms_are_rerendered_with_a_reason_and_change_nothing() {
    let app = spawn_app().await;
    let seller = app.seller("ana@shop.test").await;
    create_service_token(&seller, "taken", &["orders:read"]).await;
    let yesterday = (chrono::Utc::now().date_naive() - chrono::Duration::days(1)).format("%Y-%m-%d").to_string();
    let long_name = "n".repeat(65);
    let long_description = "x".repeat(501);
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![("name", ""), ("kind", "service"), ("scope", "orders:read"), ("expires", "90")],
            "Give the token a name.",
        ),
        (
            vec![("name", "   "), ("kind", "service"), ("scope", "orders:read"), ("expires", "90")],
            "Give the token a name.",
        ),
        (
            vec![("name", &long_name), ("kind", "service"), ("scope", "orders:read"), ("expires", "90")],
            "longer than 64 characters",
        ),
        (
            vec![("name", "taken"), ("kind", "service"), ("scope", "orders:read"), ("expires", "90")],
            "already have an active token named",
        ),
        (vec![("name", "no scope"), ("kind", "service"), ("expires", "90")], "needs at least one scope"),
        (
            vec![("name", "bogus"), ("kind", "service"), ("scope", "orders:delete"), ("expires", "90")],
            "Unknown scope `orders:delete`",
        ),
        (
            vec![
                ("name", "past"),
                ("kind", "service"),
                ("scope", "orders:read"),
                ("expires", "custom"),
                ("expires_on", &yesterday),
            ],
            "must be in the future",
        ),
        (
            vec![("name", "nodate"), ("kind", "service"), ("scope", "orders:read"), ("expires", "custom")],
            "Pick the date",
        ),
        (
            vec![
                ("name", "garbled"),
                ("kind", "service"),
                ("scope", "orders:read"),
                ("expires", "custom"),
                ("expires_on", "next week"),
            ],
            "is not a date",
        ),
        (
            vec![("name", "odd"), ("kind", "service"), ("scope", "orders:read"), ("expires", "45")],
            "not one of the offered expiry periods",
        ),
        (
            vec![("name", "kindless"), ("scope", "orders:read"), ("expires", "90")],
            "Choose a personal or a service token.",
        ),
        (vec![("name", "admin"), ("kind", "root"), ("expires", "90")], "is not a token kind"),
        (
            vec![
                ("name", "wordy"),
                ("kind", "service"),
                ("scope", "orders:read"),
                ("expires", "90"),
                ("description", &long_description),
            ],
            "description is longer",
        ),
    ];
    for (fields, message) in &cases {
        let response = seller.post_form("/settings/tokens", fields).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{fields:?}");
        let html = response.text().await.unwrap();
        assert!(html.contains(message), "expected “{message}” for {fields:?}");
        assert!(html.contains("The token was not created."));
        assert!(extract_token(&html).is_none());
    }
    // Several problems are reported together, and the form keeps what was typed.
    let response = seller
        .post_form(
            "/settings/tokens",
            &[("name", ""), ("kind", "service"), ("expires", "45"), ("description", "kept text")],
        )
        .await;
    let html = response.text().await.unwrap();
    assert!(
        html.contains("Give the token a name.")
            && html.contains("needs at least one scope")
            && html.contains("offered expiry")
    );
    assert!(html.contains("kept text"));

    // A missing or tampered CSRF token.
    let fields = [("name", "csrf"), ("kind", "service"), ("scope", "orders:read"), ("expires", "90")];
    let missing = seller.post_raw("/settings/tokens", &fields).await;
    assert_eq!(missing.status(), StatusCode::FORBIDDEN);
    assert!(missing.text().await.unwrap().contains("security token did not match"));
    let mut tampered = vec![("csrf_token", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")];
    tampered.extend(fields);
    assert_eq!(seller.post_raw("/settings/tokens", &tampered).await.status(), StatusCode::FORBIDDEN);

    assert_eq!(app.token_count(), 1, "only the first token exists");
    assert_eq!(app.events("token_created").len(), 1);
}

#[tokio::test]
async fn a_name_is_free_again_once_its_token_is_revoked() {
    let app = spawn_app().await;
    let seller = app.seller("ana@shop.test").await;
    let (_, id) = create_service_token(&seller, "erp", &["orders:read"]).await;
    seller.post_form(&format!("/settings/tokens/{id}/revoke"), &[]).await;
    create_service_token(&seller, "erp", &["orders:read"]).await;
    assert_eq!(app.token_count(), 2);
}

#[tokio::test]
async fn revoking_asks_first_then_takes_effect() {
    let app = spawn_app().await;
    let seller = app.seller("ana@shop.test").await;
    let (_, id) = create_service_token(&seller, "erp", &["orders:read"]).await;

    let confirm = seller.get_html(&format!("/settings/tokens/{id}/revoke")).await;
    assert!(confirm.contains("Revoke “erp”?"));
    assert!(app.token(&id).revoked_at.is_none(), "viewing the confirmation changes nothing");

    let no_csrf = seller.post_raw(&format!("/settings/tokens/{id}/revoke"), &[]).await;
    assert_eq!(no_csrf.status(), StatusCode::FORBIDDEN);
    assert!(app.token(&id).revoked_at.is_none());

    let response = seller.post_form(&format!("/settings/tokens/{id}/revoke"), &[]).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/settings/tokens", "the notice is not in the URL");
    let token = app.token(&id);
    assert!(token.revoked_at.is_some());
    assert_eq!(token.revoked_by, Some(app.account_id("ana@shop.test")));
    let list = seller.get_html(&location(&response)).await;
    assert!(list.contains("Token “erp” was revoked"));
    assert!(list.contains("badge-revoked"));
    // Shown once: a reload does not bring the notice back.
    let reloaded = seller.get_html("/settings/tokens").await;
    assert!(!reloaded.contains("was revoked") && reloaded.contains("badge-revoked"));

    let events = app.events("token_revoked");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].actor_id, Some(app.account_id("ana@shop.test")));

    // A revoked token cannot be rotated back to life.
    let csrf = seller.csrf_for("/settings/tokens/new").await;
    let issued = token.secret_issued_at.and_utc().timestamp_micros().to_string();
    let rotate = seller
        .post_raw(
            &format!("/settings/tokens/{id}/rotate"),
            &[("csrf_token", &csrf), ("grace_minutes", "0"), ("issued", &issued)],
        )
        .await;
    assert_eq!(rotate.status(), StatusCode::CONFLICT);
    assert!(extract_token(&rotate.text().await.unwrap()).is_none());
}

async fn rotate(seller: &crate::helpers::User, id: &str, grace: &str) -> reqwest::Response {
    let page = seller.get_html(&format!("/settings/tokens/{id}/rotate")).await;
    let csrf = crate::helpers::csrf_from(&page);
    let issued = field_value(&page, "issued");
    let response = seller
        .post_raw(
            &format!("/settings/tokens/{id}/rotate"),
            &[("csrf_token", &csrf), ("grace_minutes", grace), ("issued", &issued)],
        )
        .await;
    seller.follow(response).await
}

fn field_value(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).unwrap() + marker.len();
    html[start..start + html[start..].find('"').unwrap()].to_owned()
}

#[tokio::test]
async fn rotation_issues_a_new_secret_for_the_same_token() {
    let app = spawn_app().await;
    let seller = app.seller("ana@shop.test").await;
    let (old, id) = create_service_token(&seller, "erp", &["orders:read"]).await;
    app.age_token(&id, 91);
    let before = app.token(&id);

    let response = rotate(&seller, &id, "0").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let new = extract_token(&response.text().await.unwrap()).unwrap();
    assert_ne!(new, old);
    assert_eq!(public_id_of(&new), id, "same token id");

    let after = app.token(&id);
    assert_ne!(after.secret_hash, before.secret_hash);
    assert!(after.secret_issued_at > before.secret_issued_at);
    assert_eq!(after.previous_secret_hash, None, "the old secret stops at once");
    assert_eq!((after.name, after.scopes, after.kind), (before.name, before.scopes, before.kind));
    // A relative lifetime starts again from the rotation.
    assert!(after.expires_at.unwrap() > before.expires_at.unwrap());
    assert!(!seller.get_html("/settings/tokens").await.contains("rotation due"));

    let events = app.events("token_rotated");
    assert_eq!(events.len(), 1);
    assert!(events[0].detail.as_deref().unwrap().contains("revoked immediately"));
}

#[tokio::test]
async fn rotation_can_keep_the_old_secret_for_a_grace_period() {
    let app = spawn_app().await;
    let seller = app.seller("ana@shop.test").await;
    let (_, id) = create_service_token(&seller, "erp", &["orders:read"]).await;
    let before = app.token(&id);
    let response = rotate(&seller, &id, "360").await;
    assert!(response.text().await.unwrap().contains("keeps working until"));
    let after = app.token(&id);
    assert_eq!(after.previous_secret_hash.as_deref(), Some(before.secret_hash.as_str()));
    let grace = after.previous_secret_expires_at.unwrap() - after.secret_issued_at;
    assert_eq!(grace.num_minutes(), 360);
}

#[tokio::test]
async fn a_resubmitted_rotation_does_not_rotate_twice() {
    let app = spawn_app().await;
    let seller = app.seller("ana@shop.test").await;
    let (_, id) = create_service_token(&seller, "erp", &["orders:read"]).await;
    let page = seller.get_html(&format!("/settings/tokens/{id}/rotate")).await;
    let form = [
        ("csrf_token", crate::helpers::csrf_from(&page)),
        ("grace_minutes", "0".into()),
        ("issued", field_value(&page, "issued")),
    ];
    let first =
        seller.client.post(format!("{}/settings/tokens/{id}/rotate", app.address)).form(&form).send().await.unwrap();
    assert_eq!(first.status(), StatusCode::SEE_OTHER);
    let hash = app.token(&id).secret_hash;
    let again =
        seller.client.post(format!("{}/settings/tokens/{id}/rotate", app.address)).form(&form).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::CONFLICT);
    let html = again.text().await.unwrap();
    assert!(html.contains("rotated again since this page was opened"));
    assert!(extract_token(&html).is_none());
    assert_eq!(app.token(&id).secret_hash, hash);
}

#[tokio::test]
async fn bad_rotation_forms_change_nothing() {
    let app = spawn_app().await;
    let seller = app.seller("ana@shop.test").await;
    let (_, id) = create_service_token(&seller, "erp", &["orders:read"]).await;
    let hash = app.token(&id).secret_hash;
    for (grace, message) in [
        ("1441", "between 0 minutes and 24 hours"),
        ("-1", "between 0 minutes"),
        ("soon", "is not a grace period"),
        ("", "Choose when"),
    ] {
        let response = rotate(&seller, &id, grace).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{grace}");
        assert!(response.text().await.unwrap().contains(message), "{grace}");
    }
    let csrf = seller.csrf_for("/settings/tokens/new").await;
    let no_marker = seller
        .post_raw(&format!("/settings/tokens/{id}/rotate"), &[("csrf_token", &csrf), ("grace_minutes", "0")])
        .await;
    assert_eq!(no_marker.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let no_csrf = seller.post_raw(&format!("/settings/tokens/{id}/rotate"), &[("grace_minutes", "0")]).await;
    assert_eq!(no_csrf.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.token(&id).secret_hash, hash);
    assert!(app.events("token_rotated").is_empty());
}

#[tokio::test]
async fn statuses_and_the_rotation_banner_follow_the_token_age() {
    let app = spawn_app().await;
    let seller = app.seller("ana@shop.test").await;
    let (_, fresh) = create_service_token(&seller, "fresh", &["orders:read"]).await;
    let html = seller.get_html("/settings/tokens").await;
    assert!(html.contains("badge-active") && !html.contains("Rotation due."));

    app.age_token(&fresh, 85);
    let html = seller.get_html("/settings/tokens").await;
    assert!(html.contains("rotation due in 5 days"), "warning from day 80");
    assert!(html.contains("due for rotation within 5 days"), "banner");

    app.age_token(&fresh, 90);
    let html = seller.get_html("/settings/tokens").await;
    assert!(html.contains("badge-rotate"));
    assert!(html.contains("been in use for 90 days or more"));

    let (_, soon) = create_service_token(&seller, "soon", &["orders:read"]).await;
    app.set_token_expiry(&soon, 3);
    assert!(seller.get_html(&format!("/settings/tokens/{soon}")).await.contains("badge-expiring"));
    app.set_token_expiry(&soon, -1);
    let detail = seller.get_html(&format!("/settings/tokens/{soon}")).await;
    assert!(detail.contains("badge-expired"));
    assert!(!detail.contains("/revoke\""), "no actions on an expired token");
}

#[tokio::test]
async fn secrets_exist_only_as_argon2id_hashes() {
    let app = spawn_app().await;
    let seller = app.seller("ana@shop.test").await;
    let (token, id) = create_service_token(&seller, "erp", &["orders:read"]).await;
    let rotated = extract_token(&rotate(&seller, &id, "60").await.text().await.unwrap()).unwrap();
    let stored = app.token(&id);
    assert!(stored.secret_hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
    let secret = |t: &str| keygate::tokens::PlainToken::parse(t).unwrap().secret().to_owned();
    assert!(keygate::hashing::verify_blocking(&secret(&rotated), &stored.secret_hash));

    let db = app.database_bytes();
    let contains = |needle: &str| db.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(contains(&id), "the scan sees the token row");
    for plain in [&token, &rotated] {
        assert!(!contains(plain), "a token string is in the database");
        assert!(!contains(&secret(plain)), "a secret is in the database");
    }
    let logs = captured_logs();
    assert!(!logs.is_empty(), "the server logs are captured");
    let json = captured_json_logs();
    assert!(!json.is_empty(), "so are they as --log-format json writes them");
    for plain in [&token, &rotated] {
        assert!(!logs.contains(&secret(plain)), "a secret is in the logs");
        assert!(!json.contains(&secret(plain)), "a secret is in the JSON logs");
        // Nor escaped, as a JSON string could hold it.
        let escaped = serde_json::to_string(&secret(plain)).unwrap();
        assert!(!json.contains(escaped.trim_matches('"')), "a secret is in the JSON logs");
    }
}

#[tokio::test]
async fn many_sellers_write_at_once_without_lock_errors() {
    let app = spawn_app().await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..6 {
        let seller = app.seller(&format!("s{i}@shop.test")).await;
        let seller = std::sync::Arc::new(seller);
        for n in 0..4 {
            let seller = seller.clone();
            tasks.spawn(async move { create_service_token(&seller, &format!("t{n}"), &["orders:read"]).await });
        }
    }
    let created = tasks.join_all().await;
    assert_eq!(created.len(), 24);
    assert_eq!(app.token_count(), 24);
}

/// Issue 32, item 2: a seller can learn why an integrator gets 429. The
/// list and the token's page show each token's limit (its own, set by an
/// admin, or the server's), and a 429's log entry shows the limit it hit,
/// the window and when calls passed again.
#[tokio::test]
async fn sellers_see_each_tokens_rate_limit_and_what_a_429_hit() {
    let app = spawn_app_with(|c| c.rate_limit_per_minute = 40).await;
    let ana = app.seller("ana@shop.test").await;
    let (limited, limited_id) = create_service_token(&ana, "Integrator test", &["orders:read"]).await;
    let (_, default_id) = create_service_token(&ana, "Shop sync", &["orders:read"]).await;
    let page = format!("/admin/tokens/{limited_id}");
    let csrf = app.admin.csrf_for(&page).await;
    let saved = app
        .admin
        .post_raw(&format!("/admin/tokens/{limited_id}/rate-limit"), &[("csrf_token", &csrf), ("per_minute", "2")])
        .await;
    assert_eq!(location(&saved), format!("/admin/tokens/{limited_id}?saved=1"));

    // The list: one line under each token's id.
    let list = ana.get_html("/settings/tokens").await;
    let row = |id: &str| {
        let at = list.find(&format!("<div class=\"mono muted small\">{id}</div>")).expect("the token's row");
        list[at..list[at..].find("</tr>").unwrap() + at].to_owned()
    };
    assert!(row(&limited_id).contains("2/min, set by an admin"), "{}", row(&limited_id));
    assert!(row(&default_id).contains("40/min") && !row(&default_id).contains("set by an admin"));

    // The token's page.
    let own = ana.get_html(&format!("/settings/tokens/{limited_id}")).await;
    assert!(own.contains("<dt>Rate limit</dt>"), "{own}");
    assert!(own.contains("2 requests a minute, set by an admin for this token (the server's default is 40)"), "{own}");
    let default = ana.get_html(&format!("/settings/tokens/{default_id}")).await;
    assert!(default.contains("40 requests a minute, the server's default"), "{default}");

    // Over the limit: the 429's entry says which limit, the window and when it reset.
    for expected in [200, 200, 429] {
        assert_eq!(app.api_get("/api/v1/orders", Some(&limited)).await.status().as_u16(), expected);
    }
    let rows = app.api_rows(3).await;
    let refused = rows.iter().find(|r| r.outcome == "rate_limited").expect("the 429's row");
    let retry_after = keygate::audit::limit_note::LimitNote::find_in(refused.detail.as_deref().unwrap_or(""))
        .expect("the row records the limit it hit")
        .retry_after_secs;
    let resets = refused.occurred_at + chrono::Duration::seconds(retry_after as i64);
    let entry = ana.get_html(&format!("/settings/logs/{}", refused.id)).await;
    assert!(entry.contains("<dt>Rate limit</dt>"), "{entry}");
    assert!(entry.contains("2 requests per 60 s"), "the limit and its window: {entry}");
    assert!(entry.contains(&format!("<code>Retry-After: {retry_after}</code>")), "what the client was told: {entry}");
    assert!(entry.contains(&resets.format("%Y-%m-%d %H:%M:%S UTC").to_string()), "when it reset: {entry}");
    assert!(entry.contains("<dt>Error code</dt><dd><code>rate_limited</code></dd>"), "{entry}");
    assert!(entry.contains(&format!("<dt>Retry-After</dt><dd class=\"mono\">{retry_after}</dd>")), "{entry}");
    // An entry that passed says nothing about the limit.
    let passed = rows.iter().find(|r| r.outcome == "ok").unwrap();
    assert!(!ana.get_html(&format!("/settings/logs/{}", passed.id)).await.contains("<dt>Rate limit</dt>"));
}
