//! PKCE (RFC 7636), S256 only: `plain` gives nothing a stolen code does not.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A code challenge as the authorize request sends it: 43 characters of
/// base64url (a SHA-256 digest).
pub fn parse_challenge(raw: &str) -> Result<String, String> {
    let ok = raw.len() == 43 && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(raw.to_owned())
    } else {
        Err("code_challenge must be the base64url SHA-256 of the code_verifier (43 characters)".into())
    }
}

/// A code verifier: 43 to 128 characters of `[A-Za-z0-9-._~]` (RFC 7636 §4.1).
pub fn check_verifier(raw: &str) -> Result<(), String> {
    let ok = (43..=128).contains(&raw.len())
        && raw.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    if ok {
        Ok(())
    } else {
        Err("code_verifier must be 43 to 128 characters of A-Z, a-z, 0-9, '-', '.', '_' and '~'".into())
    }
}

/// Whether `verifier` is the one `challenge` was made from.
pub fn verifies(challenge: &str, verifier: &str) -> bool {
    let made = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    made.as_bytes().ct_eq(challenge.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_7636_example_verifies() {
        // RFC 7636, Appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(verifies(challenge, verifier));
        assert!(!verifies(challenge, "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXx"));
        assert!(parse_challenge(challenge).is_ok());
        assert!(parse_challenge("short").is_err());
        assert!(parse_challenge(&format!("{}=", &challenge[..42])).is_err());
        assert!(check_verifier(verifier).is_ok());
        assert!(check_verifier("too-short").is_err());
        assert!(check_verifier(&"a".repeat(129)).is_err());
        assert!(check_verifier(&format!("{}!", "a".repeat(50))).is_err());
    }
}
