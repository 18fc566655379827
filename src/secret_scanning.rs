//! Leaked-token reports (SPEC §2): `POST /secret-scanning/report` in the
//! secret-scanning partner format. The body is a JSON array of
//! `{token, type, url, source}`, signed with ECDSA P-256/SHA-256 over the raw
//! bytes; `Github-Public-Key-Identifier` names the key (from
//! `--leak-report-keys`) and `Github-Public-Key-Signature` carries the
//! base64 DER signature. A live keygate token in a report is revoked at once
//! and its seller told by email and by a banner naming the URL; the answer
//! labels each token `true_positive` or `false_positive`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use anyhow::Context;
use base64::Engine;
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::audit::{self, EventContext, SecurityEvent};
use crate::db;
use crate::error::json_error;
use crate::gate::anonymous::Source;
use crate::mail::Mail;
use crate::oauth::apps;
use crate::state::AppState;
use crate::tokens::leaks;
use crate::tokens::store;
use crate::tokens::{PlainToken, Prefix, TokenKind};

pub const KEY_ID_HEADER: &str = "github-public-key-identifier";
pub const SIGNATURE_HEADER: &str = "github-public-key-signature";
/// The largest report body read.
pub const MAX_BODY: usize = 1 << 20;
/// The most tokens one report may name.
pub const MAX_TOKENS: usize = 1000;
/// Rejected reports per client address per minute before 429.
pub const REJECTED_PER_MINUTE: u32 = 20;

/// The verifying keys, by identifier.
#[derive(Debug)]
pub struct LeakReportKeys(HashMap<String, VerifyingKey>);

#[derive(Deserialize)]
struct KeysFile {
    public_keys: Vec<KeyEntry>,
}

#[derive(Deserialize)]
struct KeyEntry {
    key_identifier: String,
    key: String,
    #[allow(dead_code)]
    is_current: Option<bool>,
}

impl LeakReportKeys {
    /// Reads the partner program's own key document.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let raw = std::fs::read_to_string(path).with_context(|| format!("--leak-report-keys {}", path.display()))?;
        Self::parse(&raw).with_context(|| format!("--leak-report-keys {}", path.display()))
    }

    pub fn parse(raw: &str) -> anyhow::Result<Self> {
        let file: KeysFile = serde_json::from_str(raw)
            .context(r#"expected {"public_keys": [{"key_identifier": …, "key": "-----BEGIN PUBLIC KEY-----…", "is_current": …}]}"#)?;
        let mut keys = HashMap::new();
        for entry in file.public_keys {
            let key = VerifyingKey::from_public_key_pem(entry.key.trim())
                .map_err(|e| anyhow::anyhow!("key {}: not a P-256 public key in PEM ({e})", entry.key_identifier))?;
            keys.insert(entry.key_identifier, key);
        }
        anyhow::ensure!(!keys.is_empty(), "the file holds no public key");
        Ok(Self(keys))
    }

    /// Whether `signature` (base64 DER) by key `key_id` signs `body`.
    fn verify(&self, key_id: &str, signature: &str, body: &[u8]) -> Result<(), &'static str> {
        let key = self.0.get(key_id).ok_or("the key identifier names no key keygate knows")?;
        let der = base64::engine::general_purpose::STANDARD
            .decode(signature.trim())
            .map_err(|_| "the signature is not base64")?;
        let signature = Signature::from_der(&der).map_err(|_| "the signature is not a DER-encoded ECDSA signature")?;
        // (r, n - s) verifies as well as (r, s), and both are accepted: P-256
        // signers (Go's crypto/ecdsa, OpenSSL, this crate's own) do not
        // normalise s, so a low-S rule would refuse about half of the
        // genuine reports. Nothing here is keyed by the signature's bytes,
        // so a mauled copy gains nothing a replay of the original would not.
        key.verify(body, &signature).map_err(|_| "the signature does not match the body")
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Reported {
    token: String,
    #[serde(rename = "type")]
    kind: String,
    url: String,
    source: String,
}

#[derive(Serialize)]
struct Labelled {
    token_hash: String,
    token_type: String,
    label: &'static str,
}

fn refuse(req: &HttpRequest, status: StatusCode, code: &str, message: &str) -> HttpResponse {
    json_error(status, code, message, &crate::request_id::of(req), None)
}

pub async fn report(req: HttpRequest, state: web::Data<AppState>, payload: web::Payload) -> HttpResponse {
    let Some(keys) = state.leak_keys.as_deref() else {
        return refuse(
            &req,
            StatusCode::NOT_FOUND,
            "not_found",
            "Leak reports are off here: keygate runs without --leak-report-keys.",
        );
    };
    let from = crate::remote::of_request(&req, &state.config.trusted_proxies).ip;
    let ip_key = crate::remote::throttle_key(from);
    let ctx = EventContext { ip: from.map(|ip| ip.to_string()), ..EventContext::default() };
    if let Some(wait) = state.leak_report_failures.exhausted(&ip_key) {
        record_rejection(&state, from, StatusCode::TOO_MANY_REQUESTS, "too many rejected reports", &ctx).await;
        let mut response = refuse(
            &req,
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            &format!("Too many rejected reports from your address; wait {wait} s."),
        );
        response.headers_mut().insert(actix_web::http::header::RETRY_AFTER, wait.into());
        return response;
    }
    let body = match payload.to_bytes_limited(MAX_BODY).await {
        Ok(Ok(body)) => body,
        Ok(Err(_)) => {
            return refuse(&req, StatusCode::BAD_REQUEST, "invalid_request", "The report body could not be read.")
        }
        Err(_) => {
            return refuse(
                &req,
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                &format!("A report may be at most {MAX_BODY} bytes; send the tokens in several reports."),
            )
        }
    };
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let checked = match (header(KEY_ID_HEADER), header(SIGNATURE_HEADER)) {
        (Some(key_id), Some(signature)) => keys.verify(&key_id, &signature, &body).map(|()| key_id),
        _ => Err("the report must carry the Github-Public-Key-Identifier and Github-Public-Key-Signature headers"),
    };
    let key_id = match checked {
        Ok(key_id) => key_id,
        Err(why) => {
            state.leak_report_failures.record(ip_key);
            record_rejection(&state, from, StatusCode::UNAUTHORIZED, why, &ctx).await;
            return refuse(
                &req,
                StatusCode::UNAUTHORIZED,
                "invalid_signature",
                &format!("The report was not accepted: {why}."),
            );
        }
    };
    let reported: Vec<Reported> = match serde_json::from_slice(&body) {
        Ok(reported) => reported,
        Err(e) => {
            let message = format!(
                "The report must be a JSON array of {{\"token\", \"type\", \"url\", \"source\"}} objects: {e}."
            );
            return refuse(&req, StatusCode::BAD_REQUEST, "invalid_report", &message);
        }
    };
    if reported.len() > MAX_TOKENS {
        let message = format!("A report may name at most {MAX_TOKENS} tokens; this one names {}.", reported.len());
        return refuse(&req, StatusCode::BAD_REQUEST, "invalid_report", &message);
    }
    let mut answer = Vec::with_capacity(reported.len());
    let mut genuine = 0;
    for entry in &reported {
        let label = match handle(&state, entry, &ctx).await {
            Ok(true) => {
                genuine += 1;
                "true_positive"
            }
            Ok(false) => "false_positive",
            Err(e) => {
                tracing::error!(error = %e, "a leaked token could not be handled");
                return refuse(
                    &req,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    "The report could not be handled now; send it again.",
                );
            }
        };
        answer.push(Labelled {
            token_hash: hex(&Sha256::digest(entry.token.as_bytes())),
            token_type: entry.kind.clone(),
            label,
        });
    }
    let detail = format!("leak report signed by {key_id}: {} tokens, {genuine} genuine keygate tokens", reported.len());
    let event = EventContext { detail: Some(detail), ..ctx };
    if let Err(e) = state.db.run(move |conn| audit::record(conn, SecurityEvent::LeakReported, event)).await {
        tracing::error!(error = %e, "could not record a leak report");
    }
    HttpResponse::Ok().json(answer)
}

/// A rejected report's row: a few a minute per address get one each, the
/// rest are counted into one summary row per address and minute (as the
/// gate does for anonymous refusals), so unsigned reports from many
/// addresses cannot grow the audit table by a row each.
async fn record_rejection(state: &AppState, from: Option<IpAddr>, status: StatusCode, why: &str, ctx: &EventContext) {
    let source = Source { ip: from, user_agent: None, seller_id: None };
    let mut summaries = Vec::new();
    let own = state.leak_report_rows.admit(
        source,
        None,
        status.as_u16(),
        crate::audit::Outcome::Failed,
        db::now(),
        &mut summaries,
    );
    for summary in summaries {
        if state.audit.send(summary).await.is_err() {
            tracing::error!("the audit writer is closed; a summary of rejected leak reports was not written");
        }
    }
    if !own {
        return;
    }
    let detail = format!("a leak report was rejected ({} {why}); nothing changed", status.as_u16());
    let event = EventContext { detail: Some(detail), ..ctx.clone() };
    if let Err(e) = state.db.run(move |conn| audit::record(conn, SecurityEvent::LeakReportRejected, event)).await {
        tracing::error!(error = %e, "could not record a rejected leak report");
    }
}

fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// Whether the token is a genuine keygate secret; a live one is revoked
/// and its owner told.
async fn handle(state: &AppState, entry: &Reported, ctx: &EventContext) -> anyhow::Result<bool> {
    let Ok(plain) = PlainToken::parse(entry.token.trim()) else { return Ok(false) };
    let (url, source) = (clip(&entry.url, 2000), clip(&entry.source, 200));
    match plain.prefix() {
        Prefix::Personal | Prefix::Service => api_token(state, plain, &url, &source, ctx).await,
        Prefix::OAuthAccess | Prefix::OAuthRefresh => {
            let leak_ctx = EventContext { detail: None, ..ctx.clone() };
            let Some(revoked) = state.oauth.revoke_leaked(plain, leak_ctx, &url).await? else { return Ok(false) };
            if revoked.newly {
                let seller_id = revoked.seller_id;
                let email = state.db.run(move |conn| crate::accounts::email_of(conn, seller_id)).await?;
                let body = format!(
                    "Hello,\n\n{} that {} ({}) holds for your account was found in public:\n\n  {url}\n  (reported by {source})\n\nkeygate revoked it at once; the app must ask you again or use a newer token. Nothing else changed.\n-- \nkeygate\n",
                    capitalise(revoked.what), revoked.app_name, revoked.client_id
                );
                notify(
                    state,
                    email,
                    format!("An OAuth token of {} was found in public and revoked", revoked.app_name),
                    body,
                );
            }
            Ok(true)
        }
        Prefix::ClientSecret => client_secret(state, plain, &url, &source, ctx).await,
        Prefix::AuthorizationCode | Prefix::DeviceCode => Ok(false),
    }
}

async fn api_token(
    state: &AppState,
    plain: PlainToken,
    url: &str,
    source: &str,
    ctx: &EventContext,
) -> anyhow::Result<bool> {
    let id = plain.id().to_string();
    let Some(token) = state.db.run(move |conn| store::find(conn, &id)).await? else { return Ok(false) };
    if !TokenKind::API.contains(&token.kind) || TokenKind::of_prefix(plain.prefix()) != Some(token.kind) {
        return Ok(false);
    }
    let now = db::now();
    let mut genuine = state.hasher.verify(plain.secret().to_owned(), token.secret_hash.clone()).await?;
    if !genuine {
        if let (Some(previous), Some(until)) = (&token.previous_secret_hash, token.previous_secret_expires_at) {
            if until > now {
                genuine = state.hasher.verify(plain.secret().to_owned(), previous.clone()).await?;
            }
        }
    }
    let live = token.revoked_at.is_none() && token.expires_at.is_none_or(|at| at > now);
    if !genuine || !live {
        return Ok(genuine);
    }
    let revoke_ctx = EventContext { detail: Some(format!("found in public at {url}")), ..ctx.clone() };
    state.tokens.revoke(&token, revoke_ctx).await?;
    let (row_id, seller_id, public_id, name) = (token.id, token.seller_id, token.public_id.clone(), token.name.clone());
    let (url_owned, source_owned) = (url.to_owned(), source.to_owned());
    let about = EventContext {
        seller_id: Some(seller_id),
        token_id: Some(public_id.clone()),
        detail: Some(format!("{name} was found in public at {url} ({source}) and revoked")),
        ..ctx.clone()
    };
    let email = state
        .db
        .run(move |conn| {
            db::write_tx(conn, |conn| {
                leaks::record(conn, row_id, seller_id, &url_owned, &source_owned, now)?;
                audit::record(conn, SecurityEvent::LeakReported, about)?;
                crate::accounts::email_of(conn, seller_id)
            })
        })
        .await?;
    let link = state.config.public_url.join(&format!("/settings/tokens/{public_id}"));
    let body = format!(
        "Hello,\n\nYour {} token “{name}” ({public_id}) was found in public:\n\n  {url}\n  (reported by {source})\n\nkeygate revoked it at once: every request with it is now refused. If it was still in use, create a new token and keep it out of code and public places.\n\nThe token: {link}\n-- \nkeygate\n",
        token.kind
    );
    notify(state, email, format!("Your keygate token “{name}” was found in public and revoked"), body);
    Ok(true)
}

async fn client_secret(
    state: &AppState,
    plain: PlainToken,
    url: &str,
    source: &str,
    ctx: &EventContext,
) -> anyhow::Result<bool> {
    let id = plain.id().to_string();
    let Some((app, email)) = state.db.run(move |conn| apps::find_by_secret_id(conn, &id)).await? else {
        return Ok(false);
    };
    let now = db::now();
    let Some(stored) = app.secret_named(plain.id().as_str(), now) else { return Ok(false) };
    let key = format!("{}:{}", app.client_id, plain.id());
    let check = state.gate.verifier.check_secret(&key, &stored, plain.secret(), now, None).await?;
    if !check.is_valid() {
        return Ok(false);
    }
    let about = EventContext {
        seller_id: Some(app.owner_id),
        client_id: Some(app.client_id.clone()),
        detail: Some(format!(
            "the client secret of {} was found in public at {url} ({source}); its owner was told to rotate it",
            app.name
        )),
        ..ctx.clone()
    };
    state.db.run(move |conn| audit::record(conn, SecurityEvent::LeakReported, about)).await?;
    let link = state.config.public_url.join(&format!("/settings/apps/{}", app.client_id));
    let body = format!(
        "Hello,\n\nThe client secret of your OAuth app {} ({}) was found in public:\n\n  {url}\n  (reported by {source})\n\nRotate it now on the app's page: {link}\nUntil you do, anyone who found it can act as your app (they still need a seller's consent).\n-- \nkeygate\n",
        app.name, app.client_id
    );
    notify(state, email, format!("The client secret of {} was found in public: rotate it", app.name), body);
    Ok(true)
}

/// Sends in the background: the report's answer does not wait for SMTP.
fn notify(state: &AppState, to: String, subject: String, body: String) {
    let mailer = state.mailer.clone();
    tokio::spawn(async move {
        if let Err(error) = mailer.send(Mail { to, subject, body }).await {
            tracing::warn!(%error, "a leak notice could not be sent");
        }
    });
}

fn clip(text: &str, max: usize) -> String {
    text.chars().filter(|c| !c.is_control()).take(max).collect()
}

fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| first.to_uppercase().chain(chars).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keys_file_in_another_shape_is_named() {
        let error = LeakReportKeys::parse(r#"{"keys": []}"#).unwrap_err();
        assert!(format!("{error:#}").contains("public_keys"), "{error:#}");
        let error = LeakReportKeys::parse(r#"{"public_keys": [{"key_identifier": "k1", "key": "nope"}]}"#).unwrap_err();
        assert!(format!("{error:#}").contains("key k1: not a P-256 public key"), "{error:#}");
        let error = LeakReportKeys::parse(r#"{"public_keys": []}"#).unwrap_err();
        assert!(format!("{error:#}").contains("no public key"), "{error:#}");
    }

    /// The partner's signer does not normalise s (neither does Go's
    /// crypto/ecdsa nor this crate's): both forms of a genuine signature are
    /// accepted, and neither verifies another body.
    #[test]
    fn both_forms_of_a_genuine_signature_verify_and_neither_signs_another_body() {
        use p256::ecdsa::signature::Signer;
        use p256::pkcs8::EncodePublicKey;
        let signer = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
        let pem = signer.verifying_key().to_public_key_pem(p256::pkcs8::LineEnding::LF).unwrap();
        let keys = LeakReportKeys::parse(
            &serde_json::json!({"public_keys": [{"key_identifier": "k", "key": pem}]}).to_string(),
        )
        .unwrap();
        let encode = |s: &Signature| base64::engine::general_purpose::STANDARD.encode(s.to_der().as_bytes());
        let mut seen_high = false;
        for i in 0..64 {
            let body = format!("[{i}]");
            let signature: Signature = signer.sign(body.as_bytes());
            let (low, high) = match signature.normalize_s() {
                Some(low) => (low, signature),
                None => {
                    let (r, s) = signature.split_scalars();
                    (signature, Signature::from_scalars(r, -*s).unwrap())
                }
            };
            seen_high |= signature == high;
            for form in [low, high] {
                assert_eq!(keys.verify("k", &encode(&form), body.as_bytes()), Ok(()));
                assert!(keys.verify("k", &encode(&form), b"[\"another\"]").is_err());
            }
        }
        assert!(seen_high, "the signer produced high-S signatures of its own");
    }
}
