//! From an `Authorization` header to an `Authenticated` caller, or the exact
//! refusal. The order matters: a refusal never tells someone without the
//! secret whether a token id exists, is revoked or has expired.

use std::future::{ready, Ready};
use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::http::header::HeaderValue;
use actix_web::{FromRequest, HttpMessage, HttpRequest};

use super::error::GateError;
use crate::db;
use crate::startup::AppState;
use crate::tokens::cache::Lookup;
use crate::tokens::store::{self, ApiToken};
use crate::tokens::{PlainToken, ScopeSet, TokenFormatError, TokenKind};

const UNKNOWN_OR_WRONG: &str = "unknown token or wrong secret";

/// A caller the gate let through. Handlers take it as an extractor.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub seller_id: i64,
    pub token: Arc<ApiToken>,
    /// What the token may do now: its own scopes, or for a personal token
    /// every scope of its account.
    pub scopes: ScopeSet,
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

/// The gate's verdict, with whatever it learnt about the caller for the audit row.
pub struct Verdict {
    pub seller_id: Option<i64>,
    pub token_id: Option<String>,
    pub result: Result<Authenticated, GateError>,
}

impl Verdict {
    fn refuse(error: GateError) -> Self {
        Self { seller_id: None, token_id: None, result: Err(error) }
    }
}

fn describe(error: TokenFormatError) -> &'static str {
    match error {
        TokenFormatError::UnknownPrefix => "it does not start with kgp_ or kgs_",
        TokenFormatError::WrongLength => "it has the wrong length (truncated or padded?)",
        TokenFormatError::BadCharacters => "it contains characters a keygate token never has",
        TokenFormatError::BadChecksum => "its checksum does not match (mistyped or truncated?)",
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

pub async fn authenticate(state: &AppState, header: Option<&HeaderValue>) -> Verdict {
    let Some(header) = header else { return Verdict::refuse(GateError::Unauthorized) };
    let plain = match bearer_token(header)
        .and_then(|t| PlainToken::parse(t).map_err(|e| GateError::InvalidToken(describe(e))))
    {
        Ok(plain) => plain,
        Err(error) => return Verdict::refuse(error),
    };
    let id = plain.id().to_string();
    let token = match lookup(state, &id).await {
        Ok(Some(token)) => token,
        Ok(None) => return Verdict::refuse(GateError::InvalidToken(UNKNOWN_OR_WRONG)),
        Err(e) => {
            tracing::error!(error = %e, "token lookup failed");
            return Verdict::refuse(GateError::Unavailable);
        }
    };
    let seller_id = Some(token.seller_id);
    let token_id = Some(id);
    let verdict = |result| Verdict { seller_id, token_id: token_id.clone(), result };
    // A token string names its kind; a kgp_ string for a service row is forged.
    if plain.kind() != token.kind() {
        return verdict(Err(GateError::InvalidToken(UNKNOWN_OR_WRONG)));
    }
    let now = db::now();
    match state.verifier.check(&token, plain.secret(), now).await {
        Ok(check) if check.is_valid() => {}
        Ok(_) => return verdict(Err(GateError::InvalidToken(UNKNOWN_OR_WRONG))),
        Err(e) => {
            tracing::error!(error = %e, "secret verification failed");
            return verdict(Err(GateError::Unavailable));
        }
    }
    if token.revoked_at.is_some() {
        return verdict(Err(GateError::TokenRevoked));
    }
    if let Some(expired_at) = token.expires_at.filter(|at| *at <= now) {
        return verdict(Err(GateError::TokenExpired { expired_at }));
    }
    let scopes = match token.kind() {
        // Every seller account holds every scope today; a personal token
        // follows the account at request time.
        TokenKind::Personal => ScopeSet::all(),
        TokenKind::Service => token.scope_set().unwrap_or_default(),
    };
    verdict(Ok(Authenticated { seller_id: token.seller_id, token, scopes }))
}

/// The token row from memory, or from the database on a miss (see
/// `tokens::cache` for why a remembered row is never stale).
async fn lookup(state: &AppState, public_id: &str) -> Result<Lookup, crate::error::PortalError> {
    if let Some(hit) = state.tokens.get(public_id) {
        return Ok(hit);
    }
    let generation = state.tokens.generation();
    let id = public_id.to_owned();
    let found = state.read_small(move |conn| store::find(conn, &id)).await?.map(Arc::new);
    state.tokens.put(public_id, generation, found.clone());
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
