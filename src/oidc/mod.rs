//! keygate as an OpenID Connect relying party of the portal's identity
//! provider (SPEC §12): discovery, the authorization code flow with PKCE
//! (S256), `state` and `nonce`, and the ID token verified by the
//! `openidconnect` crate (signature from the provider's JWKS, `iss`, `aud`,
//! `exp`, `iat`, `nonce`; `azp` when present). No HTTP serving here: the
//! pages are `portal::oidc`'s.

pub mod claims;
pub mod link;
pub mod pending;

use std::sync::Arc;
use std::time::{Duration, Instant};

use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreGenderClaim, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm,
};
use openidconnect::ProviderMetadataWithLogout as CoreProviderMetadata;
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, RequestTokenError, Scope, TokenResponse,
};

use self::claims::{Identity, OtherClaims};
use crate::clock::Clock;
use crate::config::OidcConfig;

/// How far the provider's clock may be from keygate's: an ID token is
/// accepted up to this long after its `exp`, and with an `iat` up to this
/// far in the future (the README says so).
pub const CLOCK_SKEW_SECONDS: i64 = 60;
/// How long discovery (and with it the JWKS) is reused.
const DISCOVERY_TTL: Duration = Duration::from_secs(300);
/// How long keygate waits for the provider.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest text of the provider's shown on a page or kept in the log.
const MAX_QUOTED: usize = 300;

type IdToken =
    openidconnect::IdToken<OtherClaims, CoreGenderClaim, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm>;

/// What went wrong talking to the provider, in words a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OidcError {
    /// The provider could not be reached, or answered with a server error.
    #[error("keygate could not reach the sign-in provider at {stage}: {detail}")]
    Unreachable { stage: &'static str, detail: String },
    /// The provider answered, but not with something keygate can use.
    #[error("the sign-in provider's answer at {stage} could not be used: {detail}")]
    BadAnswer { stage: &'static str, detail: String },
    /// The token endpoint refused the code (`invalid_grant`, …).
    #[error("the sign-in provider refused to finish the sign-in: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Refused { error: String, description: Option<String> },
    /// The ID token failed verification: signature, issuer, audience,
    /// expiry, nonce.
    #[error("the sign-in provider's ID token was rejected: {0}")]
    IdTokenRejected(String),
}

/// A sign-in about to leave for the provider.
pub struct Departure {
    /// Where to send the browser.
    pub url: String,
    /// The `state`: also set in the browser's cookie, to bind the callback to it.
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
}

/// Sign-ins one client address may start: [`STARTS_PER_MINUTE`] a minute
/// (each writes a pending row; an office behind one address still fits).
pub const STARTS_PER_MINUTE: u32 = 60;

pub struct Oidc {
    /// Sign-ins started per client address (bounded in keys, as every
    /// table keyed by what callers send).
    pub starts: crate::limits::RateLimits<std::net::IpAddr>,
    config: OidcConfig,
    redirect_uri: RedirectUrl,
    issuer: IssuerUrl,
    http: reqwest::Client,
    clock: Arc<Clock>,
    discovered: parking_lot::Mutex<Option<(Instant, Arc<CoreProviderMetadata>)>>,
}

/// Printable, single-line and short: what a provider sent, fit for a page and a log line.
pub fn quote(text: &str) -> String {
    let cleaned: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    match cleaned.char_indices().nth(MAX_QUOTED) {
        Some((cut, _)) => format!("{}…", &cleaned[..cut]),
        None => cleaned,
    }
}

fn request_failure(e: &(dyn std::error::Error + 'static)) -> String {
    // reqwest's own words ("error sending request … Connection refused").
    let mut words = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        words = format!("{words}: {inner}");
        source = inner.source();
    }
    quote(&words)
}

impl Oidc {
    pub fn new(config: OidcConfig, public_url: &crate::config::PublicUrl, clock: Arc<Clock>) -> anyhow::Result<Self> {
        let redirect_uri = RedirectUrl::new(public_url.join(CALLBACK_PATH))?;
        let issuer = IssuerUrl::new(config.issuer.clone())?;
        let http = reqwest::Client::builder()
            // Never follow a redirect from the provider (SSRF).
            .redirect(reqwest::redirect::Policy::none())
            .timeout(PROVIDER_TIMEOUT)
            .build()?;
        Ok(Self {
            starts: crate::limits::RateLimits::local(crate::limits::MAX_KEYS),
            config,
            redirect_uri,
            issuer,
            http,
            clock,
            discovered: parking_lot::Mutex::new(None),
        })
    }

    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    /// The provider's metadata and keys, fetched at most every [`DISCOVERY_TTL`].
    async fn metadata(&self) -> Result<Arc<CoreProviderMetadata>, OidcError> {
        if let Some((at, metadata)) = self.discovered.lock().as_ref() {
            if at.elapsed() < DISCOVERY_TTL {
                return Ok(metadata.clone());
            }
        }
        let stage = "discovery";
        let metadata = CoreProviderMetadata::discover_async(self.issuer.clone(), &self.http).await.map_err(|e| {
            use openidconnect::DiscoveryError as D;
            match e {
                D::Request(e) => OidcError::Unreachable { stage, detail: request_failure(&e) },
                D::Response(status, _, _) if status.is_server_error() => {
                    OidcError::Unreachable { stage, detail: format!("it answered {status}") }
                }
                other => OidcError::BadAnswer { stage, detail: quote(&other.to_string()) },
            }
        })?;
        let metadata = Arc::new(metadata);
        *self.discovered.lock() = Some((Instant::now(), metadata.clone()));
        Ok(metadata)
    }

    /// Forgets the provider's metadata and keys (after a signature that
    /// did not verify: the provider may have rotated its keys).
    fn forget_metadata(&self) {
        *self.discovered.lock() = None;
    }

    fn client(
        &self,
        metadata: &CoreProviderMetadata,
    ) -> CoreClient<
        openidconnect::EndpointSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointMaybeSet,
        openidconnect::EndpointMaybeSet,
    > {
        CoreClient::from_provider_metadata(
            metadata.clone(),
            ClientId::new(self.config.client_id.clone()),
            self.config.client_secret.as_ref().map(|s| ClientSecret::new(s.expose().to_owned())),
        )
        .set_redirect_uri(self.redirect_uri.clone())
    }

    /// Prepares the authorization request: a fresh `state`, `nonce` and PKCE pair.
    pub async fn depart(&self) -> Result<Departure, OidcError> {
        let metadata = self.metadata().await?;
        let client = self.client(&metadata);
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request =
            client.authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random);
        for scope in self.config.scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.set_pkce_challenge(challenge).url();
        Ok(Departure {
            url: url.to_string(),
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
        })
    }

    /// Exchanges the code (with the PKCE verifier) and verifies the ID
    /// token against the provider's keys and the `nonce` of this sign-in.
    pub async fn arrive(&self, code: &str, nonce: &str, pkce_verifier: &str) -> Result<Identity, OidcError> {
        let metadata = self.metadata().await?;
        let client = self.client(&metadata);
        let stage = "the token endpoint";
        let request = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|_| OidcError::BadAnswer { stage: "discovery", detail: "it names no token endpoint".into() })?;
        let response = request
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()))
            .request_async(&self.http)
            .await
            .map_err(|e| match e {
                RequestTokenError::ServerResponse(refusal) => OidcError::Refused {
                    error: quote(refusal.error().as_ref()),
                    description: refusal.error_description().map(|d| quote(d)),
                },
                RequestTokenError::Request(e) => OidcError::Unreachable { stage, detail: request_failure(&e) },
                RequestTokenError::Parse(e, _) => OidcError::BadAnswer { stage, detail: quote(&e.to_string()) },
                RequestTokenError::Other(e) => OidcError::BadAnswer { stage, detail: quote(&e) },
            })?;
        let raw = response
            .id_token()
            .ok_or_else(|| OidcError::BadAnswer { stage, detail: "it sent no ID token".into() })?
            .to_string();
        let token: IdToken = raw
            .parse()
            .map_err(|e: serde_json::Error| OidcError::BadAnswer { stage, detail: quote(&e.to_string()) })?;

        let now = self.clock.now().and_utc();
        let skew = chrono::Duration::seconds(CLOCK_SKEW_SECONDS);
        let verifier = client
            .id_token_verifier()
            .set_allowed_algs([
                CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
                CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
                CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
                CoreJwsSigningAlgorithm::RsaSsaPssSha256,
                CoreJwsSigningAlgorithm::RsaSsaPssSha384,
                CoreJwsSigningAlgorithm::RsaSsaPssSha512,
                CoreJwsSigningAlgorithm::EcdsaP256Sha256,
                CoreJwsSigningAlgorithm::EcdsaP384Sha384,
                CoreJwsSigningAlgorithm::EdDsa,
            ])
            // `exp` is compared with this time: accepted up to the skew after it.
            .set_time_fn(move || now - skew)
            .set_issue_time_verifier_fn(move |iat| match iat > now + skew {
                true => Err(format!("it was issued in the future ({iat})")),
                false => Ok(()),
            });
        let claims = match token.claims(&verifier, &Nonce::new(nonce.to_owned())) {
            Ok(claims) => claims,
            Err(e) => {
                if matches!(e, openidconnect::ClaimsVerificationError::SignatureVerification(_)) {
                    self.forget_metadata();
                }
                return Err(OidcError::IdTokenRejected(quote(&describe(&e))));
            }
        };
        if let Some(azp) = claims.authorized_party() {
            if azp.as_str() != self.config.client_id {
                return Err(OidcError::IdTokenRejected(format!(
                    "it was issued to another client (azp {})",
                    quote(azp.as_str())
                )));
            }
        }
        let other = &claims.additional_claims().claims;
        Ok(Identity {
            issuer: claims.issuer().as_str().to_owned(),
            subject: claims.subject().as_str().to_owned(),
            email: claims.email().map(|e| e.as_str().to_owned()),
            email_verified: claims.email_verified() == Some(true),
            admin: self.config.admin_claim.as_ref().map(|rule| claims::admin_claim_holds(other, rule)),
        })
    }

    /// Where to send the browser to sign out at the provider too
    /// (RP-initiated logout), back to `post_logout_redirect` afterwards;
    /// `None` when the provider publishes no `end_session_endpoint` (or is
    /// not reachable now).
    pub async fn end_session_url(&self, post_logout_redirect: &str) -> Option<String> {
        let metadata = self.metadata().await.ok()?;
        let endpoint = metadata.additional_metadata().end_session_endpoint.clone()?;
        let mut request =
            openidconnect::LogoutRequest::from(endpoint).set_client_id(ClientId::new(self.config.client_id.clone()));
        if let Ok(back) = openidconnect::PostLogoutRedirectUrl::new(post_logout_redirect.to_owned()) {
            request = request.set_post_logout_redirect_uri(back);
        }
        Some(request.http_get_url().to_string())
    }

    /// Does the `iss` the provider sent back with the code (RFC 9207) name
    /// this provider? Absent: nothing to compare.
    pub fn issuer_matches(&self, iss: Option<&str>) -> bool {
        iss.is_none_or(|iss| iss == self.config.issuer || iss == self.issuer.as_str())
    }
}

/// The verifier's error in plain words.
fn describe(e: &openidconnect::ClaimsVerificationError) -> String {
    use openidconnect::ClaimsVerificationError as C;
    match e {
        C::SignatureVerification(inner) => format!("its signature does not verify with the provider's keys ({inner})"),
        C::InvalidAudience(why) => format!("it is not meant for keygate's client id (aud: {why})"),
        C::InvalidIssuer(why) => format!("it comes from another issuer ({why})"),
        C::InvalidNonce(why) => format!("its nonce is not this sign-in's ({why})"),
        C::Expired(why) => format!("it has expired ({why})"),
        other => other.to_string(),
    }
}

/// Where the provider sends the browser back: `{public_url}` + this.
pub const CALLBACK_PATH: &str = "/login/oidc/callback";

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn what_a_provider_sends_is_shown_on_one_short_line() {
        assert_eq!(quote("bad\r\nSet-Cookie: x"), "bad  Set-Cookie: x");
        let long = quote(&"é".repeat(1000));
        assert_eq!(long.chars().count(), super::MAX_QUOTED + 1);
        assert!(long.ends_with('…'));
    }
}
