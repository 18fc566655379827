//! Who the gate let through, as headers for what is behind it: the
//! upstream (`gateway::proxy`) and the proxy that asked `/gate/check`
//! (`forward_auth`). `Keygate-Seller`, `-Token-Id`, `-Token-Kind`,
//! `-Scopes` (space-separated, what the token may do now), `-Client-Id`
//! (OAuth), and `Keygate-Assertion` (a signed JWT of the same, for an
//! upstream that others than keygate can reach).

use actix_web::http::header::{HeaderName, HeaderValue};

use super::Authenticated;
use crate::gateway::Api;

pub const SELLER: HeaderName = HeaderName::from_static("keygate-seller");
pub const TOKEN_ID: HeaderName = HeaderName::from_static("keygate-token-id");
pub const TOKEN_KIND: HeaderName = HeaderName::from_static("keygate-token-kind");
pub const SCOPES: HeaderName = HeaderName::from_static("keygate-scopes");
pub const CLIENT_ID: HeaderName = HeaderName::from_static("keygate-client-id");
pub const ASSERTION: HeaderName = HeaderName::from_static("keygate-assertion");

/// The identity headers of `auth` (the assertion is added by the caller).
pub fn headers(auth: &Authenticated, api: &Api) -> Vec<(HeaderName, HeaderValue)> {
    let credential = &auth.credential;
    let scopes = match credential.every_scope {
        true => api.catalogue.all(),
        false => credential.scopes.current(&api.catalogue),
    };
    let text = |value: String| HeaderValue::from_str(&value).ok();
    let mut headers = vec![
        (SELLER, HeaderValue::from(credential.seller_id)),
        (TOKEN_KIND, HeaderValue::from_static(credential.kind.as_str())),
    ];
    headers.extend(text(credential.public_id.clone()).map(|v| (TOKEN_ID, v)));
    headers.extend(text(scopes.to_stored()).map(|v| (SCOPES, v)));
    if let Some(oauth) = &credential.oauth {
        headers.extend(text(oauth.client_id.clone()).map(|v| (CLIENT_ID, v)));
    }
    headers
}
