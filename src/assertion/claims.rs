//! What a `Keygate-Assertion` says and how it is signed: the JOSE header,
//! the claims (named as in RFC 9068), and the ES256 signature, made by
//! `jsonwebtoken` (ring underneath), never serialised by hand.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

/// How long an assertion is valid: `exp` = `iat` + 60 s (SPEC §11).
pub const LIFETIME_SECS: i64 = 60;

/// The JOSE `typ`. Not RFC 9068's `at+jwt`: that type says "an OAuth access
/// token a client presents", and a resource server that accepts keygate's
/// access tokens in that form must not take an assertion for one, nor an
/// upstream take an access token for an assertion. This is a statement
/// keygate makes *about* the access token it checked, addressed to one
/// upstream; RFC 8725 §3.11 (explicit typing) asks for a type of its own
/// so that one kind of JWT cannot be substituted for another.
pub const TYP: &str = "keygate-assertion+jwt";

/// Who made the request, as the gate established it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity<'a> {
    pub seller_id: i64,
    /// The credential's public id.
    pub token_id: &'a str,
    /// `personal`, `service` or `oauth`.
    pub token_kind: &'a str,
    /// What the credential may do, space-separated.
    pub scopes: &'a str,
    /// The OAuth app, for OAuth access tokens only.
    pub client_id: Option<&'a str>,
}

/// The payload. `sub` is the seller's id as a string (JWT subjects are
/// strings); `client_id` is left out unless an OAuth app acts.
#[derive(Debug, Serialize)]
pub struct Claims<'a> {
    pub iss: &'a str,
    pub sub: &'a str,
    pub aud: &'a str,
    pub exp: i64,
    pub iat: i64,
    pub jti: &'a str,
    pub scope: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<&'a str>,
    pub token_id: &'a str,
    pub token_kind: &'a str,
}

/// One loaded signing key. `serial` tells keys apart in this process (the
/// cache keys on it instead of the kid string). No `Debug` of the key.
pub struct Signer {
    pub serial: u64,
    pub kid: String,
    header: Header,
    key: EncodingKey,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("serial", &self.serial).field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer for the PKCS#8 (DER) P-256 key `kid`.
    pub fn new(serial: u64, kid: String, pkcs8: &[u8]) -> Self {
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some(TYP.to_owned());
        header.kid = Some(kid.clone());
        Self { serial, kid, header, key: EncodingKey::from_ec_der(pkcs8) }
    }

    /// The compact JWS of `who`'s assertion for `audience`, issued by `issuer` at `iat`.
    pub fn sign(
        &self,
        issuer: &str,
        who: &Identity<'_>,
        audience: &str,
        iat: i64,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let mut seller = itoa::Buffer::new();
        let jti = random_id();
        let claims = Claims {
            iss: issuer,
            sub: seller.format(who.seller_id),
            aud: audience,
            exp: iat + LIFETIME_SECS,
            iat,
            jti: &jti,
            scope: who.scopes,
            client_id: who.client_id,
            token_id: who.token_id,
            token_kind: who.token_kind,
        };
        jsonwebtoken::encode(&self.header, &claims, &self.key)
    }
}

/// 128 random bits, base64url: the `jti`.
fn random_id() -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};
    use p256::pkcs8::EncodePrivateKey;

    fn key_pair() -> (Vec<u8>, DecodingKey) {
        use p256::elliptic_curve::sec1::ToEncodedPoint;
        let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
        let point = secret.public_key().to_encoded_point(false);
        let b64 = |c: &[u8]| base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, c);
        let decoding = DecodingKey::from_ec_components(&b64(point.x().unwrap()), &b64(point.y().unwrap())).unwrap();
        (secret.to_pkcs8_der().unwrap().as_bytes().to_vec(), decoding)
    }

    #[test]
    fn the_header_and_claims_say_who_for_whom_and_until_when() {
        let (pkcs8, decoding) = key_pair();
        let signer = Signer::new(1, "kid-1".into(), &pkcs8);
        let who = Identity {
            seller_id: 42,
            token_id: "AbCdEfGh12345678",
            token_kind: "oauth",
            scopes: "orders:read products:write",
            client_id: Some("app_123"),
        };
        let jwt = signer.sign("https://keygate.example", &who, "https://api.example", 1_000_000).unwrap();
        let header = jsonwebtoken::decode_header(&jwt).unwrap();
        assert_eq!(header.alg, Algorithm::ES256);
        assert_eq!(header.kid.as_deref(), Some("kid-1"));
        assert_eq!(header.typ.as_deref(), Some("keygate-assertion+jwt"));
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_audience(&["https://api.example"]);
        validation.set_issuer(&["https://keygate.example"]);
        validation.validate_exp = false;
        let claims = jsonwebtoken::decode::<serde_json::Value>(&jwt, &decoding, &validation).unwrap().claims;
        assert_eq!(claims["iss"], "https://keygate.example");
        assert_eq!(claims["sub"], "42");
        assert_eq!(claims["aud"], "https://api.example");
        assert_eq!(claims["iat"], 1_000_000);
        assert_eq!(claims["exp"], 1_000_060);
        assert_eq!(claims["scope"], "orders:read products:write");
        assert_eq!(claims["client_id"], "app_123");
        assert_eq!(claims["token_id"], "AbCdEfGh12345678");
        assert_eq!(claims["token_kind"], "oauth");
        assert_eq!(claims["jti"].as_str().unwrap().len(), 22);
        let again = signer.sign("https://keygate.example", &who, "https://api.example", 1_000_000).unwrap();
        let jti = |jwt: &str| {
            jsonwebtoken::decode::<serde_json::Value>(jwt, &decoding, &validation).unwrap().claims["jti"].clone()
        };
        assert_ne!(jti(&jwt), jti(&again), "every assertion has its own jti");
    }

    #[test]
    fn an_api_token_carries_no_client_id() {
        let (pkcs8, _) = key_pair();
        let who = Identity {
            seller_id: 7,
            token_id: "AbCdEfGh12345678",
            token_kind: "service",
            scopes: "orders:read",
            client_id: None,
        };
        let jwt = Signer::new(1, "k".into(), &pkcs8).sign("https://k", &who, "https://a", 10).unwrap();
        let payload = jwt.split('.').nth(1).unwrap();
        let claims: serde_json::Value = serde_json::from_slice(
            &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload).unwrap(),
        )
        .unwrap();
        assert!(claims.get("client_id").is_none(), "{claims}");
        assert_eq!(claims["token_kind"], "service");
    }
}
