//! The OpenAPI document as a contract, checked by tools nobody here wrote:
//! openapi-spec-validator validates it against the OpenAPI 3.1 schema, and
//! schemathesis (property-based) calls every operation of it against a
//! running keygate with a personal token: all checks, a fixed seed, a
//! bounded number of examples, zero failures and zero errors. `.ci/run`
//! installs the pinned versions (`tests/interop/requirements.txt`) and sets
//! `KEYGATE_INTEROP_PYTHON` and `KEYGATE_REQUIRE_INTEROP=1`; elsewhere the
//! test skips when they are not installed. The suite runs on SQLite and
//! (`KEYGATE_TEST_BACKEND=postgres`) on PostgreSQL, and this test with it.

use std::path::PathBuf;

use reqwest::StatusCode;

use crate::helpers::{extract_token, spawn_app_with};

/// Examples per operation and phase: enough to find a schema that lies,
/// few enough that a run takes well under a minute here.
const MAX_EXAMPLES: &str = "25";
const SEED: &str = "20261202";

fn interop_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop"))
}

/// A Python with schemathesis and openapi-spec-validator, or `None` (skip).
fn python() -> Option<String> {
    let python = std::env::var("KEYGATE_INTEROP_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let works = std::process::Command::new(&python)
        .args(["-c", "import schemathesis, openapi_spec_validator"])
        .output()
        .is_ok_and(|o| o.status.success());
    if works {
        return Some(python);
    }
    let why = format!(
        "{python} cannot import schemathesis and openapi_spec_validator (pip install -r tests/interop/requirements.txt)"
    );
    match std::env::var("KEYGATE_REQUIRE_INTEROP").is_ok_and(|v| v == "1") {
        true => panic!("KEYGATE_REQUIRE_INTEROP=1 but {why}"),
        false => {
            eprintln!("skipping: {why}");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_validates_and_the_server_keeps_it() {
    let Some(python) = python() else { return };
    // Thousands of calls in a minute from one token: the rate limit is not
    // what this test is about (it has its own tests).
    let app = spawn_app_with(|c| c.rate_limit_per_minute = 100_000_000).await;
    let seller = app.seller("contract@shop.test").await;
    let response =
        seller.post_form("/settings/tokens", &[("name", "contract"), ("kind", "personal"), ("expires", "30")]).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER, "show-once: POST, then 303 to the secret's page");
    let page = seller.get_html(&crate::helpers::location(&response)).await;
    let token = extract_token(&page).expect("the created page shows the token");

    let dir = tempfile::tempdir().unwrap();
    let document = dir.path().join("openapi.json");
    let body = app.api_get("/api/openapi.json", None).await.bytes().await.unwrap();
    std::fs::write(&document, &body).unwrap();

    let validator = tokio::process::Command::new(&python)
        .args(["-m", "openapi_spec_validator"])
        .arg(&document)
        .output()
        .await
        .unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&validator.stdout), String::from_utf8_lossy(&validator.stderr));
    eprintln!("openapi-spec-validator: {said}");
    assert!(
        validator.status.success() && said.trim_end().ends_with(": OK"),
        "the document is not valid OpenAPI:\n{said}"
    );
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");

    let schemathesis = tokio::process::Command::new(&python)
        // Its state directory (.schemathesis) goes to the temporary directory.
        .current_dir(dir.path())
        .args(["-m", "schemathesis.cli", "--config-file"])
        .arg(interop_dir().join("schemathesis.toml"))
        .arg("run")
        .arg(&document)
        .args(["--url", &app.address, "--checks", "all", "--max-examples", MAX_EXAMPLES, "--seed", SEED])
        .args(["--workers", "1", "--no-color", "--request-timeout", "20"])
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&schemathesis.stdout);
    let stderr = String::from_utf8_lossy(&schemathesis.stderr);
    eprintln!("{stdout}{stderr}");
    let summary = stdout.lines().rev().find(|l| l.starts_with("===")).unwrap_or_default();
    assert!(schemathesis.status.success(), "schemathesis found the server off its contract: {summary}");
    // Every operation the document has was tested, and nothing failed.
    let operations: usize = doc["paths"].as_object().unwrap().values().map(|i| i.as_object().unwrap().len()).sum();
    assert!(stdout.contains(&format!("Tested: {operations}")), "not every operation was tested:\n{stdout}");
    assert!(!summary.contains("failure") && !summary.contains("error"), "{summary}");
    let passed = stdout.lines().find(|l| l.contains(" generated, ")).unwrap_or_default();
    assert!(passed.contains(" passed"), "{passed}");
    assert!(!token.is_empty() && !stdout.contains(&token), "the token is filtered from the report");
}
