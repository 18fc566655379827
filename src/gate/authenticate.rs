//! From an `Authorization` header to an authenticated credential, or the
//! exact refusal. The order matters: a refusal never tells someone without
//! the secret whether a token id exists, is revoked or has expired.

use std::future::{ready, Ready};
use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::http::header::HeaderValue;
use actix_web::{FromRequest, HttpMessage, HttpRequest};

use super::error::{GateError, Holder};
use super::Gate;
use crate::db::DbError;
use crate::tokens::cache::Lookup;
use crate::tokens::credential::CredentialLookup;
use crate::tokens::{Credential, PlainToken, ScopeSet, TokenFormatError, TokenKind};

const UNKNOWN_OR_WRONG: &str = "unknown token or wrong secret";

/// A caller the gate let through. Handlers take it as an extractor.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub credential: Arc<Credential>,
    /// The secret presented is the one before the last rotation (in its grace).
    pub by_previous_secret: bool,
}

impl Authenticated {
    pub fn seller_id(&self) -> i64 {
        self.credential.seller_id
    }

    /// What the caller may do now.
    pub fn scopes(&self) -> &ScopeSet {
        &self.credential.scopes
    }
}

impl FromRequest for Authenticated {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            req.extensions()
                .get::<Authenticated>()
                .cloned()
                .ok_or_else(|| actix_web::error::ErrorInternalServerError("route registered outside the API gate")),
        )
    }
}

/// What authentication learnt about the caller, for the audit row, even
/// when it refused.
#[derive(Debug, Default, Clone)]
pub struct Caller {
    pub seller_id: Option<i64>,
    pub token_id: Option<String>,
    /// The app behind an OAuth access token.
    pub client_id: Option<String>,
}

fn describe(error: TokenFormatError) -> &'static str {
    match error {
        TokenFormatError::UnknownPrefix => {
            "it does not start with kgp_ or kgs_ (API tokens) or kgo_ (OAuth access tokens)"
        }
        TokenFormatError::WrongLength => "it has the wrong length (truncated or padded?)",
        TokenFormatError::BadCharacters => "it contains characters a keygate token never has",
        TokenFormatError::BadChecksum => "its checksum does not match (mistyped or truncated?)",
    }
}

/// Whom a refusal of this credential speaks to.
pub fn holder_of(credential: &Credential) -> Holder {
    match credential.kind {
        TokenKind::OAuth => Holder::App,
        TokenKind::Personal | TokenKind::Service => Holder::ApiToken,
    }
}

/// `Bearer <token>`, the scheme case-insensitive (RFC 6750 §2.1).
fn bearer_token(header: &HeaderValue) -> Result<&str, GateError> {
    let value = header.to_str().map_err(|_| GateError::InvalidToken("the Authorization header is not plain text"))?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(GateError::InvalidToken("use the Bearer scheme: `Authorization: Bearer <token>`"));
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(GateError::InvalidToken("the Bearer credentials are empty"));
    }
    Ok(token)
}

/// Checks the `Authorization` header; fills in `caller` as it learns who it is.
pub async fn authenticate(
    gate: &Gate,
    header: Option<&HeaderValue>,
    from: Option<std::net::IpAddr>,
    caller: &mut Caller,
) -> Result<Authenticated, GateError> {
    let header = header.ok_or(GateError::Unauthorized)?;
    let plain = PlainToken::parse(bearer_token(header)?).map_err(|e| GateError::InvalidToken(describe(e)))?;
    // Refresh tokens, client secrets and codes never open the API.
    let claimed = TokenKind::of_prefix(plain.prefix()).ok_or(GateError::InvalidToken(
        "it is not an access token: send an API token (kgp_, kgs_) or an OAuth access token (kgo_)",
    ))?;
    let (id, secret) = plain.into_parts();
    let id = id.into_string();
    let stored = match lookup(gate, &id).await {
        Ok(Some(stored)) => stored,
        Ok(None) => return Err(GateError::InvalidToken(UNKNOWN_OR_WRONG)),
        Err(e) => {
            tracing::error!(error = %e, "token lookup failed");
            return Err(GateError::Unavailable);
        }
    };
    let credential = &stored.credential;
    caller.seller_id = Some(credential.seller_id);
    caller.token_id = Some(id);
    caller.client_id = credential.oauth.as_ref().map(|o| o.client_id.clone());
    // A token string names its kind; a kgp_ string for a service row is forged.
    if claimed != credential.kind {
        return Err(GateError::InvalidToken(UNKNOWN_OR_WRONG));
    }
    let now = gate.clock.now();
    let by_previous_secret = match gate.verifier.check(&stored, secret.as_str(), now, from).await {
        Ok(check) if check.is_valid() => check == crate::tokens::verify::SecretCheck::Previous,
        Ok(_) => return Err(GateError::InvalidToken(UNKNOWN_OR_WRONG)),
        Err(e) => {
            tracing::error!(error = %e, "secret verification failed");
            return Err(GateError::Unavailable);
        }
    };
    let holder = holder_of(credential);
    if stored.revoked_at.is_some() {
        return Err(GateError::TokenRevoked { holder });
    }
    if let Some(expired_at) = credential.expires_at.filter(|at| *at <= now) {
        return Err(GateError::TokenExpired { expired_at, holder });
    }
    // After revocation and expiry, which are final: reinstating the account
    // brings back only what would otherwise work.
    if stored.account_suspended_at.is_some() {
        return Err(GateError::AccountSuspended { holder });
    }
    if let Some(allowed) = &credential.allowed_ips {
        if !from.is_some_and(|ip| allowed.allows(ip)) {
            return Err(GateError::IpNotAllowed { ip: from });
        }
    }
    Ok(Authenticated { credential: credential.clone(), by_previous_secret })
}

/// The credential from memory, or from the database on a miss (see
/// `tokens::cache` for why a remembered one is never stale). The read is
/// boxed: its state would otherwise ride along in every request's future,
/// which finds the credential in memory.
async fn lookup(gate: &Gate, public_id: &str) -> Result<Lookup, DbError> {
    if let Some(hit) = gate.tokens.get(public_id) {
        crate::metrics::global().token_cache_hits.inc();
        return Ok(hit);
    }
    Box::pin(load(gate, public_id)).await
}

async fn load(gate: &Gate, public_id: &str) -> Result<Lookup, DbError> {
    crate::metrics::global().token_cache_misses.inc();
    let generation = gate.tokens.generation();
    let found = gate.db.read(CredentialLookup(public_id.to_owned())).await?.map(Arc::new);
    gate.tokens.put(public_id, generation, found.clone());
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_credentials_are_parsed_strictly() {
        let ok = HeaderValue::from_static("Bearer kgs_abc");
        assert_eq!(bearer_token(&ok), Ok("kgs_abc"));
        assert_eq!(bearer_token(&HeaderValue::from_static("bearer  kgs_abc ")), Ok("kgs_abc"));
        assert!(bearer_token(&HeaderValue::from_static("Basic dXNlcjpwYXNz")).is_err());
        assert!(bearer_token(&HeaderValue::from_static("Bearer")).is_err());
        assert!(bearer_token(&HeaderValue::from_static("kgs_abc")).is_err());
    }
}
