//! The refresh grace's one secret at rest. When a refresh token is spent,
//! the pair it was exchanged for is kept so that the same client, presenting
//! it again within the grace (it lost the answer, or two of its processes
//! raced), gets that same pair back. The pair is kept only encrypted
//! (XChaCha20-Poly1305) under a key derived (HKDF-SHA256) from the spent
//! token's own secret, which the database never holds: reading the database
//! gives no usable token.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::Sha256;

fn cipher(secret: &str, row_id: i64) -> XChaCha20Poly1305 {
    let mut key = [0u8; 32];
    let info = format!("keygate refresh grace v1 {row_id}");
    Hkdf::<Sha256>::new(None, secret.as_bytes())
        .expand(info.as_bytes(), &mut key)
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    XChaCha20Poly1305::new(&key.into())
}

/// `plaintext` sealed under `secret` (the spent refresh token's), bound to
/// its row: `nonce.ciphertext`, base64url.
pub fn seal(secret: &str, row_id: i64, plaintext: &str) -> String {
    let mut nonce = [0u8; 24];
    OsRng.fill_bytes(&mut nonce);
    let sealed = cipher(secret, row_id)
        .encrypt(XNonce::from_slice(&nonce), plaintext.as_bytes())
        .expect("encryption into memory cannot fail");
    format!("{}.{}", URL_SAFE_NO_PAD.encode(nonce), URL_SAFE_NO_PAD.encode(sealed))
}

/// The plaintext, if `sealed` was made with this secret for this row.
pub fn open(secret: &str, row_id: i64, sealed: &str) -> Option<String> {
    let (nonce, body) = sealed.split_once('.')?;
    let nonce = URL_SAFE_NO_PAD.decode(nonce).ok()?;
    if nonce.len() != 24 {
        return None;
    }
    let body = URL_SAFE_NO_PAD.decode(body).ok()?;
    let plain = cipher(secret, row_id).decrypt(XNonce::from_slice(&nonce), body.as_slice()).ok()?;
    String::from_utf8(plain).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_spent_tokens_secret_opens_its_successor() {
        let sealed = seal("the spent secret", 7, "kgo_… kgr_…");
        assert!(!sealed.contains("kgo_"), "nothing readable is stored");
        assert_eq!(open("the spent secret", 7, &sealed).as_deref(), Some("kgo_… kgr_…"));
        assert_eq!(open("another secret", 7, &sealed), None);
        assert_eq!(open("the spent secret", 8, &sealed), None, "bound to its row");
        assert_eq!(open("the spent secret", 7, "garbage"), None);
        assert_ne!(seal("s", 1, "x"), seal("s", 1, "x"), "a fresh nonce each time");
    }
}
