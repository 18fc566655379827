//! First run, sign-up, sign-in (with throttling) and sign-out.

use reqwest::StatusCode;

use crate::helpers::{location, spawn_app, spawn_app_with, spawn_empty_app, ADMIN_EMAIL, PASSWORD};

#[tokio::test]
async fn first_run_offers_setup_once_and_creates_the_admin() {
    let app = spawn_empty_app().await;
    let visitor = app.user("owner@shop.test");
    assert_eq!(location(&visitor.get("/").await), "/setup");
    assert_eq!(location(&visitor.get("/login").await), "/setup");

    let response = visitor
        .post_form("/setup", &[("email", "owner@shop.test"), ("password", PASSWORD), ("password_confirm", PASSWORD)])
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/settings/tokens");
    assert_eq!(app.account_count(), 1);
    let html = visitor.get_html("/settings/tokens").await;
    assert!(html.contains("All tokens"), "the first account is an admin");

    // Setup is gone for good: a second visitor is sent to sign in, and a
    // replayed setup form creates nothing.
    let late = app.user("late@shop.test");
    assert_eq!(location(&late.get("/setup").await), "/login");
    let replay = late
        .post_raw("/setup", &[("email", "late@shop.test"), ("password", PASSWORD), ("password_confirm", PASSWORD)])
        .await;
    assert_eq!(location(&replay), "/login");
    assert_eq!(app.account_count(), 1);
}

#[tokio::test]
async fn setup_rejects_bad_input_and_creates_nothing() {
    let app = spawn_empty_app().await;
    let visitor = app.user("owner@shop.test");
    type Case<'a> = (&'a [(&'a str, &'a str)], StatusCode, &'a str);
    let cases: &[Case] = &[
        (
            &[("email", "not-an-email"), ("password", PASSWORD), ("password_confirm", PASSWORD)],
            StatusCode::UNPROCESSABLE_ENTITY,
            "is not an email address",
        ),
        (
            &[("email", ""), ("password", PASSWORD), ("password_confirm", PASSWORD)],
            StatusCode::UNPROCESSABLE_ENTITY,
            "Enter your email address",
        ),
        (
            &[("email", "a@b.test"), ("password", "short"), ("password_confirm", "short")],
            StatusCode::UNPROCESSABLE_ENTITY,
            "at least 12 characters",
        ),
        (
            &[("email", "a@b.test"), ("password", PASSWORD), ("password_confirm", "something else entirely")],
            StatusCode::UNPROCESSABLE_ENTITY,
            "do not match",
        ),
    ];
    for (fields, status, message) in cases {
        let response = visitor.post_form("/setup", fields).await;
        assert_eq!(response.status(), *status, "{fields:?}");
        let html = response.text().await.unwrap();
        assert!(html.contains(message), "{message} missing for {fields:?}");
    }
    // Without, or with a tampered, CSRF token.
    let fields = [("email", "a@b.test"), ("password", PASSWORD), ("password_confirm", PASSWORD)];
    let missing = visitor.post_raw("/setup", &fields).await;
    assert_eq!(missing.status(), StatusCode::FORBIDDEN);
    assert!(missing.text().await.unwrap().contains("security token did not match"));
    let tampered =
        visitor.post_raw("/setup", &[("csrf_token", "x".repeat(43).as_str()), fields[0], fields[1], fields[2]]).await;
    assert_eq!(tampered.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.account_count(), 0);
}

#[tokio::test]
async fn a_seller_signs_up_with_a_safe_session_cookie() {
    let app = spawn_app().await;
    let seller = app.user("ana@shop.test");
    let response = seller.signup(PASSWORD).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let cookie = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("kg_session="))
        .expect("a session cookie");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(!cookie.contains("Secure"), "plain HTTP test server: {cookie}");

    let html = seller.get_html("/settings/tokens").await;
    assert!(html.contains("ana@shop.test"));
    assert!(!html.contains("All tokens"), "sellers get no admin links");
    let created = app.events("account_created");
    assert!(created.iter().any(|e| e.subject.as_deref() == Some("ana@shop.test")));
}

#[tokio::test]
async fn the_session_cookie_is_secure_when_configured() {
    let app = spawn_app_with(|c| c.secure_cookies = true).await;
    let response = app.user("ana@shop.test").signup(PASSWORD).await;
    let cookies: Vec<String> =
        response.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect();
    assert!(cookies.iter().any(|c| c.starts_with("kg_session=") && c.contains("Secure")), "{cookies:?}");
}

#[tokio::test]
async fn signup_rejects_bad_input_and_duplicates() {
    let app = spawn_app().await;
    let seller = app.user("ana@shop.test");
    let response = seller
        .post_form("/signup", &[("email", ADMIN_EMAIL), ("password", PASSWORD), ("password_confirm", PASSWORD)])
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(response.text().await.unwrap().contains("already exists"));
    let response = seller
        .post_form("/signup", &[("email", "ana@shop.test"), ("password", "short"), ("password_confirm", "short")])
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let response = seller
        .post_raw("/signup", &[("email", "ana@shop.test"), ("password", PASSWORD), ("password_confirm", PASSWORD)])
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.events("account_created").len(), 1, "only the admin exists");
}

#[tokio::test]
async fn signup_can_be_turned_off() {
    let app = spawn_app_with(|c| c.allow_signup = false).await;
    let visitor = app.user("ana@shop.test");
    assert_eq!(visitor.get("/signup").await.status(), StatusCode::NOT_FOUND);
    let response = visitor
        .post_raw("/signup", &[("email", "ana@shop.test"), ("password", PASSWORD), ("password_confirm", PASSWORD)])
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(!visitor.get_html("/login").await.contains("/signup"));
}

#[tokio::test]
async fn sign_in_succeeds_and_failures_are_recorded() {
    let app = spawn_app().await;
    app.seller("ana@shop.test").await;
    let browser = app.user("ana@shop.test");

    let wrong = browser.login("wrong password here").await;
    assert_eq!(wrong.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(wrong.text().await.unwrap().contains("Incorrect email or password."));
    let unknown = app.user("nobody@shop.test").login(PASSWORD).await;
    assert!(unknown.text().await.unwrap().contains("Incorrect email or password."), "same answer for unknown emails");

    let ok = browser.login(PASSWORD).await;
    assert_eq!(ok.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&ok), "/settings/tokens");

    let failures = app.events("login_failed");
    assert_eq!(failures.len(), 2);
    assert_eq!(failures[0].seller_id, Some(app.account_id("ana@shop.test")));
    assert_eq!(failures[1].subject.as_deref(), Some("nobody@shop.test"));
    assert_eq!(failures[1].seller_id, None);
    assert!(failures.iter().all(|e| e.ip.as_deref() == Some("127.0.0.1")));
    let successes = app.events("login_succeeded");
    assert!(successes.iter().any(|e| e.subject.as_deref() == Some("ana@shop.test")));
}

#[tokio::test]
async fn sign_in_rejects_bad_input() {
    let app = spawn_app().await;
    let browser = app.user("ana@shop.test");
    let no_password = browser.post_form("/login", &[("email", "ana@shop.test"), ("password", "")]).await;
    assert_eq!(no_password.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(no_password.text().await.unwrap().contains("Enter your password."));
    let bad_email = browser.post_form("/login", &[("email", "ana"), ("password", PASSWORD)]).await;
    assert!(bad_email.text().await.unwrap().contains("is not an email address"));
    let no_csrf = browser.post_raw("/login", &[("email", ADMIN_EMAIL), ("password", PASSWORD)]).await;
    assert_eq!(no_csrf.status(), StatusCode::FORBIDDEN);
    assert!(app.events("login_succeeded").len() == 1, "only the helper's admin sign-in");
}

#[tokio::test]
async fn sign_in_is_throttled_per_account() {
    let app = spawn_app().await;
    app.seller("ana@shop.test").await;
    let attacker = app.user("ana@shop.test");
    for _ in 0..5 {
        assert_eq!(attacker.login("not the password").await.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }
    // Even the right password is refused now, without being checked.
    let throttled = attacker.login(PASSWORD).await;
    assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(throttled.text().await.unwrap().contains("Too many failed sign-in attempts"));
    assert_eq!(app.events("login_throttled").len(), 1);
    // Other accounts are unaffected.
    let admin = app.user(ADMIN_EMAIL);
    assert_eq!(admin.login(PASSWORD).await.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn sign_in_is_throttled_per_address() {
    let app = spawn_app().await;
    let attacker = app.user("spray@shop.test");
    for i in 0..20 {
        let email = format!("victim{i}@shop.test");
        let response = attacker.post_form("/login", &[("email", &email), ("password", "guess guess guess")]).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }
    let blocked = attacker.post_form("/login", &[("email", ADMIN_EMAIL), ("password", PASSWORD)]).await;
    assert_eq!(blocked.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn pages_need_a_session_and_come_back_after_sign_in() {
    let app = spawn_app().await;
    let visitor = app.user(ADMIN_EMAIL);
    let response = visitor.get("/settings/tokens/new").await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/login?next=%2Fsettings%2Ftokens%2Fnew");
    let login_page = visitor.get_html("/login?next=%2Fsettings%2Ftokens%2Fnew").await;
    let csrf = crate::helpers::csrf_from(&login_page);
    let response = visitor
        .post_raw(
            "/login",
            &[("csrf_token", &csrf), ("email", ADMIN_EMAIL), ("password", PASSWORD), ("next", "/settings/tokens/new")],
        )
        .await;
    assert_eq!(location(&response), "/settings/tokens/new");
    // An absolute URL in `next` never leads off the site.
    let other = app.user(ADMIN_EMAIL);
    let csrf = other.csrf_for("/login").await;
    let response = other
        .post_raw(
            "/login",
            &[("csrf_token", &csrf), ("email", ADMIN_EMAIL), ("password", PASSWORD), ("next", "//evil.test/")],
        )
        .await;
    assert_eq!(location(&response), "/settings/tokens");
}

#[tokio::test]
async fn sign_out_ends_the_session_on_the_server() {
    let app = spawn_app().await;
    let seller = app.seller("ana@shop.test").await;
    // Keep the raw cookie, as a thief would.
    let jar_cookie = {
        let login = app.user("ana@shop.test");
        let response = login.login(PASSWORD).await;
        response
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
            .find(|c| c.starts_with("kg_session="))
            .unwrap()
    };
    let stolen = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let get_with_cookie =
        || stolen.get(format!("{}/settings/tokens", app.address)).header("cookie", &jar_cookie).send();
    assert_eq!(get_with_cookie().await.unwrap().status(), StatusCode::OK);

    // Sign-out needs the session's CSRF token…
    let refused = seller.post_raw("/logout", &[]).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    // …then ends only that session. Sign out the stolen one through its own page.
    let html = stolen
        .get(format!("{}/settings/tokens", app.address))
        .header("cookie", &jar_cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = crate::helpers::csrf_from(&html);
    let out = stolen
        .post(format!("{}/logout", app.address))
        .header("cookie", &jar_cookie)
        .form(&[("csrf_token", csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(location(&out), "/login");
    assert_eq!(location(&get_with_cookie().await.unwrap()), "/login?next=%2Fsettings%2Ftokens");
    assert_eq!(seller.get("/settings/tokens").await.status(), StatusCode::OK, "the other session lives on");
    assert_eq!(app.events("logout").len(), 1);
}

/// Opening an account is one transaction: when its sample data cannot be
/// written, neither the account nor its audit row stays behind.
#[tokio::test]
async fn a_failed_sign_up_leaves_no_account_behind() {
    use diesel::prelude::*;
    let app = spawn_app().await;
    let mut conn = app.pool.get().unwrap();
    if crate::helpers::suite_on_postgres() {
        diesel::sql_query(
            "CREATE FUNCTION refuse_products() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'no products today'; END $$",
        )
        .execute(&mut conn)
        .unwrap();
        diesel::sql_query(
            "CREATE TRIGGER refuse_products BEFORE INSERT ON products FOR EACH ROW EXECUTE FUNCTION refuse_products()",
        )
        .execute(&mut conn)
        .unwrap();
    } else {
        diesel::sql_query(
            "CREATE TRIGGER refuse_products BEFORE INSERT ON products BEGIN SELECT RAISE(ABORT, 'no products today'); END",
        )
        .execute(&mut conn)
        .unwrap();
    }
    let accounts_before = keygate::accounts::count(&mut conn).unwrap();
    let created_before = app.events("account_created").len();
    let response = app.user("ana@shop.test").signup(PASSWORD).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(keygate::accounts::count(&mut conn).unwrap(), accounts_before, "no account");
    assert_eq!(app.events("account_created").len(), created_before, "no audit row for it");
    // The same email can sign up once the cause is gone.
    diesel::sql_query("DROP TRIGGER refuse_products ON products")
        .execute(&mut conn)
        .or_else(|_| diesel::sql_query("DROP TRIGGER refuse_products").execute(&mut conn))
        .unwrap();
    assert_eq!(app.user("ana@shop.test").signup(PASSWORD).await.status(), StatusCode::SEE_OTHER);
}
