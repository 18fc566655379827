//! The opaque cursors of every keyset page (the API's lists and API Logs):
//! the last row's id, versioned, in URL-safe base64. Anything else is refused.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

pub fn encode(id: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1:{id}"))
}

pub fn decode(raw: &str) -> Option<i64> {
    let bytes = URL_SAFE_NO_PAD.decode(raw).ok()?;
    let digits = std::str::from_utf8(&bytes).ok()?.strip_prefix("v1:")?;
    // Only what `encode` writes for a row id: 1–18 digits (the pattern in
    // `api::rules::CURSOR` says the same).
    if digits.is_empty() || digits.len() > 18 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_forgeries() {
        assert_eq!(decode(&encode(42)), Some(42));
        assert_eq!(decode("42"), None);
        assert_eq!(decode("!!"), None);
        assert_eq!(decode(&URL_SAFE_NO_PAD.encode("v2:42")), None);
        assert_eq!(decode(&URL_SAFE_NO_PAD.encode("v1:+42")), None);
        assert_eq!(decode(&URL_SAFE_NO_PAD.encode("v1:-42")), None);
    }
}
