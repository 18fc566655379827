//! Settings → Account: the account's facts and sessions, changing the
//! password (throttled like sign-in), signing out other sessions, and a
//! seller never seeing or ending another's sessions.

use diesel::prelude::*;
use futures_util::future::join_all;
use keygate::db::schema::{accounts, sessions};
use reqwest::StatusCode;

use crate::helpers::{csrf_from, location, spawn_app, TestApp, User, PASSWORD};

const NEW_PASSWORD: &str = "a brand new passphrase";
const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

/// A browser from `from` (a loopback address) that says it is `agent`.
fn browser(app: &TestApp, email: &str, from: [u8; 4], agent: &str) -> User {
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .local_address(std::net::IpAddr::from(from))
        .user_agent(agent)
        .build()
        .unwrap();
    User { email: email.to_owned(), client, address: app.address.clone() }
}

/// Another signed-in session of `email`, in a browser of its own.
async fn second_session(app: &TestApp, email: &str, from: [u8; 4], agent: &str) -> User {
    let user = browser(app, email, from, agent);
    assert_eq!(user.login(PASSWORD).await.status(), StatusCode::SEE_OTHER, "{email} signs in");
    user
}

fn password_hash(app: &TestApp, email: &str) -> String {
    accounts::table
        .filter(accounts::email.eq(email))
        .select(accounts::password_hash)
        .first(&mut app.pool.get().unwrap())
        .unwrap()
}

fn session_count(app: &TestApp, email: &str) -> i64 {
    let id = app.account_id(email);
    sessions::table.filter(sessions::account_id.eq(id)).count().get_result(&mut app.pool.get().unwrap()).unwrap()
}

/// Whether `user`'s session still opens a page (a dead one is sent to sign in).
async fn signed_in(user: &User) -> bool {
    let response = user.get("/settings/tokens").await;
    match response.status() {
        StatusCode::OK => true,
        StatusCode::SEE_OTHER => {
            assert_eq!(location(&response), "/login?next=%2Fsettings%2Ftokens");
            false
        }
        other => panic!("unexpected {other}"),
    }
}

/// The rows of the sessions table on the account page.
fn session_rows(html: &str) -> Vec<&str> {
    let start = html.find("<table class=\"sessions responsive\">").expect("the sessions table");
    let table = &html[start..start + html[start..].find("</table>").unwrap()];
    table.split("<tr").skip(2).collect()
}

/// The summary of the password form's problems.
fn summary(html: &str) -> &str {
    let start = html.find("id=\"form-errors\"").expect("a summary of the problems");
    &html[start..start + html[start..].find("</div>").unwrap()]
}

fn change(current: &str, new: &str, confirm: &str) -> Vec<(&'static str, String)> {
    vec![
        ("current_password", current.to_owned()),
        ("new_password", new.to_owned()),
        ("new_password_confirm", confirm.to_owned()),
    ]
}

async fn post(user: &User, path: &str, fields: &[(&'static str, String)]) -> reqwest::Response {
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    user.post_form(path, &fields).await
}

#[tokio::test]
async fn the_account_page_shows_the_account_and_only_its_own_sessions() {
    let app = spawn_app().await;
    let ana = app.seller("ana@shop.test").await;
    let _laptop = second_session(&app, "ana@shop.test", [127, 0, 0, 5], FIREFOX).await;
    let bob = app.seller("bob@shop.test").await;
    let _bobs_phone = second_session(&app, "bob@shop.test", [127, 0, 0, 9], "BobBrowser/1.0").await;

    let html = ana.get_html("/settings/account").await;
    assert!(html.contains("<dt>Email</dt><dd>ana@shop.test</dd>") && html.contains("<dt>Role</dt><dd>Seller</dd>"));
    // Created: relative, with the exact UTC time on hover.
    let created = &html[html.find("<dt>Created</dt>").unwrap()..];
    assert!(created.contains("<time datetime=\"") && created.contains("UTC\">just now</time>"), "{created}");
    // Ana's two sessions, hers only, this one marked.
    let rows = session_rows(&html);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(html.matches(">this session</span>").count(), 1);
    assert!(rows.iter().any(|r| r.contains("Firefox on Linux") && r.contains("127.0.0.5")), "{rows:?}");
    assert!(html.contains(&format!("title=\"{FIREFOX}\"")), "the whole user agent on hover");
    assert!(!html.contains("127.0.0.9") && !html.contains("BobBrowser") && !html.contains("bob@shop.test"));
    assert!(html.contains("Sign out 1 other session</button>"));
    // The navigation marks the page.
    assert!(html.contains("<a href=\"/settings/account\" aria-current=\"page\">Account</a>"));

    let bobs = bob.get_html("/settings/account").await;
    assert_eq!(session_rows(&bobs).len(), 2);
    assert!(bobs.contains("BobBrowser/1.0") && !bobs.contains("127.0.0.5") && !bobs.contains("ana@shop.test"));
    let admin = app.admin.get_html("/settings/account").await;
    assert!(admin.contains("<dt>Role</dt><dd>Admin</dd>") && admin.contains("You are signed in only here."));
}

#[tokio::test]
async fn a_wrong_current_password_is_named_beside_its_field_and_changes_nothing() {
    let app = spawn_app().await;
    let ana = app.seller("ana@shop.test").await;
    let before = password_hash(&app, "ana@shop.test");
    let response =
        post(&ana, "/settings/account/password", &change("not my password", NEW_PASSWORD, NEW_PASSWORD)).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = response.text().await.unwrap();
    assert!(html.contains(
        "<small class=\"field-error\" id=\"current_password-error\">That is not your current password.</small>"
    ));
    assert!(html.contains("name=\"current_password\" required autocomplete=\"current-password\" aria-invalid=\"true\""));
    assert!(summary(&html).contains("That is not your current password."));
    assert!(!html.contains("not my password") && !html.contains(NEW_PASSWORD), "passwords are never echoed");
    assert_eq!(password_hash(&app, "ana@shop.test"), before, "the hash is unchanged");
    let failed = app.events("password_change_failed");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].seller_id, Some(app.account_id("ana@shop.test")));
    assert!(app.events("password_changed").is_empty());
    assert_eq!(app.user("ana@shop.test").login(PASSWORD).await.status(), StatusCode::SEE_OTHER, "old still works");
}

#[tokio::test]
async fn a_mismatched_confirmation_changes_nothing() {
    let app = spawn_app().await;
    let ana = app.seller("ana@shop.test").await;
    let before = password_hash(&app, "ana@shop.test");
    let response =
        post(&ana, "/settings/account/password", &change(PASSWORD, NEW_PASSWORD, "a different new passphrase")).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = response.text().await.unwrap();
    assert!(html.contains(
        "<small class=\"field-error\" id=\"new_password_confirm-error\">The two new passwords do not match.</small>"
    ));
    assert!(!html.contains("id=\"current_password-error\""), "the current password was right");
    assert_eq!(password_hash(&app, "ana@shop.test"), before);
    assert!(app.events("password_changed").is_empty());
}

#[tokio::test]
async fn a_too_short_new_password_is_refused_by_the_sign_up_rule() {
    let app = spawn_app().await;
    let ana = app.seller("ana@shop.test").await;
    let before = password_hash(&app, "ana@shop.test");
    let response = post(&ana, "/settings/account/password", &change(PASSWORD, "short", "short")).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = response.text().await.unwrap();
    let rule = keygate::accounts::Password::parse("short".into()).unwrap_err();
    assert!(html.contains(&format!("<small class=\"field-error\" id=\"new_password-error\">{rule}</small>")), "{rule}");
    // The same password again is not a change.
    let same = post(&ana, "/settings/account/password", &change(PASSWORD, PASSWORD, PASSWORD)).await;
    assert_eq!(same.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(same.text().await.unwrap().contains("Choose a new password, not the one you use now."));
    assert_eq!(password_hash(&app, "ana@shop.test"), before);
}

#[tokio::test]
async fn every_problem_of_the_password_form_is_named_at_once() {
    let app = spawn_app().await;
    let ana = app.seller("ana@shop.test").await;
    let before = password_hash(&app, "ana@shop.test");
    let response = post(&ana, "/settings/account/password", &change("wrong", "short", "other")).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = response.text().await.unwrap();
    let summary = summary(&html);
    let at = |text: &str| summary.find(text).unwrap_or_else(|| panic!("{text} not in {summary}"));
    assert!(at("That is not your current password.") < at("at least 12 characters"));
    assert!(at("at least 12 characters") < at("do not match"));
    for field in ["current_password", "new_password", "new_password_confirm"] {
        assert!(html.contains(&format!("id=\"{field}-error\"")), "{field} has its message");
    }
    let empty = post(&ana, "/settings/account/password", &change("", "", "")).await;
    let html = empty.text().await.unwrap();
    assert!(html.contains("Enter your current password.") && html.contains("Repeat the new password."));
    assert_eq!(password_hash(&app, "ana@shop.test"), before);
}

#[tokio::test]
async fn without_the_sessions_csrf_token_nothing_changes() {
    let app = spawn_app().await;
    let ana = app.seller("ana@shop.test").await;
    let other = second_session(&app, "ana@shop.test", [127, 0, 0, 5], FIREFOX).await;
    let before = password_hash(&app, "ana@shop.test");
    let fields = change(PASSWORD, NEW_PASSWORD, NEW_PASSWORD);
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut forged = vec![("csrf_token", "x".repeat(43))];
    forged.extend(fields.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let forged: Vec<(&str, &str)> = forged.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // Another session's token is not this one's either.
    let others_csrf = other.csrf_for("/settings/account").await;
    let mut borrowed = vec![("csrf_token", others_csrf.as_str())];
    borrowed.extend(fields.iter().copied());
    for body in [&fields, &forged, &borrowed] {
        let response = ana.post_raw("/settings/account/password", body).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert!(response.text().await.unwrap().contains("security token did not match"));
        let response = ana.post_raw("/settings/account/sessions/revoke-others", &body[..body.len() - 3]).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
    }
    assert_eq!(password_hash(&app, "ana@shop.test"), before, "the password is unchanged");
    assert!(signed_in(&other).await, "the other session lives on");
    assert_eq!(session_count(&app, "ana@shop.test"), 2);
    assert!(app.events("password_changed").is_empty() && app.events("sessions_revoked").is_empty());
    assert!(app.events("password_change_failed").is_empty(), "not even a check");
}

#[tokio::test]
async fn a_password_change_ends_the_other_sessions_and_keeps_this_one() {
    let app = spawn_app().await;
    let ana = app.seller("ana@shop.test").await;
    let laptop = second_session(&app, "ana@shop.test", [127, 0, 0, 5], FIREFOX).await;
    let phone = second_session(&app, "ana@shop.test", [127, 0, 0, 6], "Phone/1.0").await;
    let bob = app.seller("bob@shop.test").await;
    let before = password_hash(&app, "ana@shop.test");

    let response = post(&ana, "/settings/account/password", &change(PASSWORD, NEW_PASSWORD, NEW_PASSWORD)).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/settings/account", "no notice in the URL");
    let page = ana.get_html("/settings/account").await;
    assert!(page.contains("Your password was changed, and your 2 other sessions were signed out."), "shown once");
    assert!(!ana.get_html("/settings/account").await.contains("Your password was changed"), "and not again");
    assert_eq!(session_rows(&page).len(), 1, "only this session is left");

    assert_ne!(password_hash(&app, "ana@shop.test"), before);
    assert!(signed_in(&ana).await, "this session still works");
    assert!(!signed_in(&laptop).await && !signed_in(&phone).await, "the others are gone");
    assert!(signed_in(&bob).await, "another seller's session is untouched");
    let old = app.user("ana@shop.test").login(PASSWORD).await;
    assert_eq!(old.status(), StatusCode::UNPROCESSABLE_ENTITY, "the old password no longer signs in");
    assert_eq!(app.user("ana@shop.test").login(NEW_PASSWORD).await.status(), StatusCode::SEE_OTHER, "the new does");

    let changed = app.events("password_changed");
    assert_eq!(changed.len(), 1);
    let row = &changed[0];
    let ana_id = app.account_id("ana@shop.test");
    assert_eq!((row.seller_id, row.actor_id), (Some(ana_id), Some(ana_id)));
    assert_eq!(row.detail.as_deref(), Some("2 other sessions ended"));
    assert_eq!(row.ip.as_deref(), Some("127.0.0.1"));
    assert!(ana.get_html("/settings/logs").await.contains("password changed"), "in API Logs");
}

#[tokio::test]
async fn signing_out_other_sessions_ends_them_all_but_this_one() {
    let app = spawn_app().await;
    let ana = app.seller("ana@shop.test").await;
    let laptop = second_session(&app, "ana@shop.test", [127, 0, 0, 5], FIREFOX).await;
    let phone = second_session(&app, "ana@shop.test", [127, 0, 0, 6], "Phone/1.0").await;
    assert!(ana.get_html("/settings/account").await.contains("Sign out 2 other sessions</button>"));

    let response = ana.post_form("/settings/account/sessions/revoke-others", &[]).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/settings/account");
    let page = ana.get_html("/settings/account").await;
    assert!(page.contains("2 other sessions were signed out."));
    assert!(page.contains("You are signed in only here."));
    assert!(!ana.get_html("/settings/account").await.contains("other sessions were signed out"), "shown once");
    assert!(signed_in(&ana).await && !signed_in(&laptop).await && !signed_in(&phone).await);
    assert_eq!(session_count(&app, "ana@shop.test"), 1);
    let events = app.events("sessions_revoked");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].detail.as_deref(), Some("2 other sessions ended"));
    assert_eq!(events[0].seller_id, Some(app.account_id("ana@shop.test")));

    // Nothing left to end: it says so.
    ana.post_form("/settings/account/sessions/revoke-others", &[]).await;
    assert!(ana.get_html("/settings/account").await.contains("There were no other sessions to sign out."));
}

#[tokio::test]
async fn a_seller_never_sees_or_ends_another_sellers_sessions() {
    let app = spawn_app().await;
    let ana = app.seller("ana@shop.test").await;
    let bob = browser(&app, "bob@shop.test", [127, 0, 0, 9], "BobBrowser/1.0");
    assert_eq!(bob.signup(PASSWORD).await.status(), StatusCode::SEE_OTHER);
    let bobs_laptop = second_session(&app, "bob@shop.test", [127, 0, 0, 10], FIREFOX).await;

    let page = ana.get_html("/settings/account").await;
    assert_eq!(session_rows(&page).len(), 1, "ana's one session");
    assert!(!page.contains("127.0.0.9") && !page.contains("127.0.0.10") && !page.contains("BobBrowser"));
    assert!(!page.contains("bob@shop.test"));

    ana.post_form("/settings/account/sessions/revoke-others", &[]).await;
    assert!(ana.get_html("/settings/account").await.contains("There were no other sessions to sign out."));
    assert!(signed_in(&bob).await && signed_in(&bobs_laptop).await, "bob's sessions are untouched");
    assert_eq!(session_count(&app, "bob@shop.test"), 2);
    // Nor does ana's password change touch them.
    post(&ana, "/settings/account/password", &change(PASSWORD, NEW_PASSWORD, NEW_PASSWORD)).await;
    assert!(signed_in(&bob).await && signed_in(&bobs_laptop).await);
    assert_eq!(app.events("sessions_revoked")[0].detail.as_deref(), Some("0 other sessions ended"));
}

/// A session cookie as a thief holds it, played from any address.
struct Stolen {
    cookie: String,
    csrf: String,
    base: String,
}

impl Stolen {
    async fn of(app: &TestApp, email: &str) -> Self {
        let response = app.user(email).login(PASSWORD).await;
        let cookie = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
            .find(|c| c.starts_with("kg_session="))
            .expect("a session cookie");
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let page = client.get(format!("{}/settings/account", app.address)).header("cookie", &cookie).send().await;
        let csrf = csrf_from(&page.unwrap().text().await.unwrap());
        Self { cookie, csrf, base: app.address.clone() }
    }

    /// Submits the password form with `current` from `from`.
    async fn try_password(&self, from: [u8; 4], current: &str) -> StatusCode {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .local_address(std::net::IpAddr::from(from))
            .build()
            .unwrap();
        let fields = [
            ("csrf_token", self.csrf.as_str()),
            ("current_password", current),
            ("new_password", "the thief's own password"),
            ("new_password_confirm", "the thief's own password"),
        ];
        let request = client.post(format!("{}/settings/account/password", self.base)).header("cookie", &self.cookie);
        request.form(&fields).send().await.unwrap().status()
    }
}

/// The thief of a session cookie cannot use the password form to guess the
/// account's password faster than the sign-in form allows: each check is
/// claimed in the same throttle (per account and address, per account),
/// before argon2 runs, so parallel guesses count each other, and more
/// addresses only reach the account's own limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_current_password_check_is_throttled_in_parallel_and_from_several_addresses() {
    use keygate::sign_in::{PER_ACCOUNT, PER_ACCOUNT_AND_ADDRESS};
    let app = spawn_app().await;
    app.seller("ana@shop.test").await;
    let before = password_hash(&app, "ana@shop.test");
    let thief = Stolen::of(&app, "ana@shop.test").await;
    let tally = |statuses: &[StatusCode]| {
        let count = |s: StatusCode| statuses.iter().filter(|x| **x == s).count();
        (count(StatusCode::UNPROCESSABLE_ENTITY), count(StatusCode::TOO_MANY_REQUESTS))
    };

    // 20 wrong guesses at once from one address: 5 are checked.
    let first = [127, 0, 2, 1];
    let guesses = (0..20).map(|i| format!("guess number {i}")).collect::<Vec<_>>();
    let statuses = join_all(guesses.iter().map(|g| thief.try_password(first, g))).await;
    assert_eq!(tally(&statuses), (PER_ACCOUNT_AND_ADDRESS as usize, 20 - PER_ACCOUNT_AND_ADDRESS as usize));
    // Even the right password is refused there now, unchecked.
    assert_eq!(thief.try_password(first, PASSWORD).await, StatusCode::TOO_MANY_REQUESTS);
    let throttled_page = {
        let client = reqwest::Client::builder().local_address(std::net::IpAddr::from(first)).build().unwrap();
        let fields = [("csrf_token", thief.csrf.as_str()), ("current_password", "x"), ("new_password", "y")];
        let request = client.post(format!("{}/settings/account/password", app.address)).header("cookie", &thief.cookie);
        request.form(&fields).send().await.unwrap().text().await.unwrap()
    };
    assert!(throttled_page.contains("Too many wrong passwords. Wait 15 minutes"), "said beside the field");

    // From more addresses, four at a time, six guesses each at once: five
    // per address are checked, until the account's own limit.
    let addresses: Vec<[u8; 4]> = (2..=20).map(|n| [127, 0, 2, n]).collect();
    for wave in addresses.chunks(4) {
        let attempts = wave.iter().flat_map(|&from| (0..6).map(move |i| (from, format!("wave guess {i}"))));
        let attempts: Vec<_> = attempts.collect();
        let statuses = join_all(attempts.iter().map(|(from, g)| thief.try_password(*from, g))).await;
        let (checked, throttled) = tally(&statuses);
        assert_eq!((checked, throttled), (5 * wave.len(), wave.len()), "{statuses:?}");
    }
    let checked = app.events("password_change_failed").len();
    assert_eq!(checked, PER_ACCOUNT as usize, "{checked} checks in all");
    // The account's limit is reached: a fresh address is refused unchecked,
    // and so is sign-in (one budget for both forms).
    assert_eq!(thief.try_password([127, 0, 3, 1], "one more guess").await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(app.events("password_change_failed").len(), checked, "no check past the limit");
    let fresh = User::from_address("ana@shop.test", &app.address, [127, 0, 3, 2]);
    assert_eq!(fresh.login(PASSWORD).await.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(password_hash(&app, "ana@shop.test"), before, "never changed");
    assert_eq!(
        app.events("password_change_throttled").len(),
        (20 - PER_ACCOUNT_AND_ADDRESS as usize) + 2 + addresses.len() + 1,
        "every refusal is in the trail"
    );
}
