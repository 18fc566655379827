//! Third-party OAuth clients nobody here wrote, run unmodified against a
//! real keygate: authlib (PyPI). `.ci/run` installs the pinned versions and
//! sets `KEYGATE_INTEROP_PYTHON` and `KEYGATE_REQUIRE_INTEROP=1`; elsewhere
//! the tests skip when the client is not installed.

use crate::helpers::{spawn_app, PASSWORD};
use crate::oauth::{register, REDIRECT};

fn required() -> bool {
    std::env::var("KEYGATE_REQUIRE_INTEROP").is_ok_and(|v| v == "1")
}

/// A Python that has authlib and requests, or `None` (skip).
fn python() -> Option<String> {
    let python = std::env::var("KEYGATE_INTEROP_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let works = std::process::Command::new(&python)
        .args(["-c", "import authlib, requests"])
        .output()
        .is_ok_and(|o| o.status.success());
    match (works, required()) {
        (true, _) => Some(python),
        (false, true) => panic!("KEYGATE_REQUIRE_INTEROP=1 but {python} cannot import authlib and requests"),
        (false, false) => {
            eprintln!("skipping: {python} has no authlib (pip install authlib requests)");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authlib_completes_every_flow_unmodified() {
    let Some(python) = python() else { return };
    let app = spawn_app().await;
    app.seller("ana@shop.test").await;
    let client = register(&app, crate::helpers::ADMIN_EMAIL, &[REDIRECT], &[], false).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/authlib_flow.py");
    let output = tokio::process::Command::new(python)
        .arg(script)
        .args([
            app.config.public_url.as_str(),
            &client.client_id,
            client.secret.as_deref().unwrap(),
            "ana@shop.test",
            PASSWORD,
        ])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "authlib failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains(r#"{"passed": "authlib"}"#));
}
