//! The token string: `<prefix><id>_<secret><checksum>`, for every secret
//! keygate issues.
//!
//! * the prefix names the product and what the string is, so secret scanners
//!   can find leaked tokens and people can tell them apart: `kgp_` personal
//!   and `kgs_` service API tokens, `kgo_` OAuth access tokens, `kgr_` OAuth
//!   refresh tokens, `kgcs_` OAuth client secrets, `kgac_` authorization codes;
//! * `<id>` is the public id (16 base62 characters), found with one indexed
//!   lookup;
//! * `<secret>` is 32 base62 characters from the operating system's RNG
//!   (190 bits; see [`os_seeded`]);
//! * `<checksum>` is the CRC-32 of everything before it, as 6 base62
//!   characters, so a mistyped or truncated token is rejected before any
//!   database or hash work.
//!
//! Only `[A-Za-z0-9_]` appears, so a double-click selects the whole token.

use std::fmt;

use rand::distributions::{Alphanumeric, DistString};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub const ID_LEN: usize = 16;
pub const SECRET_LEN: usize = 32;
pub const CHECKSUM_LEN: usize = 6;
/// The length of the API tokens' prefixes (`kgp_`, `kgs_`).
pub const PREFIX_LEN: usize = 4;
/// An API token: `kgs_` + id + `_` + secret + checksum.
pub const TOKEN_LEN: usize = PREFIX_LEN + ID_LEN + 1 + SECRET_LEN + CHECKSUM_LEN;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// What a token string is, as its prefix says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prefix {
    Personal,
    Service,
    OAuthAccess,
    OAuthRefresh,
    ClientSecret,
    AuthorizationCode,
    /// RFC 8628's `device_code`.
    DeviceCode,
}

impl Prefix {
    pub const ALL: [Prefix; 7] = [
        Prefix::Personal,
        Prefix::Service,
        Prefix::OAuthAccess,
        Prefix::OAuthRefresh,
        Prefix::ClientSecret,
        Prefix::AuthorizationCode,
        Prefix::DeviceCode,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Prefix::Personal => "kgp_",
            Prefix::Service => "kgs_",
            Prefix::OAuthAccess => "kgo_",
            Prefix::OAuthRefresh => "kgr_",
            Prefix::ClientSecret => "kgcs_",
            Prefix::AuthorizationCode => "kgac_",
            Prefix::DeviceCode => "kgdc_",
        }
    }

    /// The whole length of a string with this prefix.
    pub fn token_len(self) -> usize {
        self.as_str().len() + ID_LEN + 1 + SECRET_LEN + CHECKSUM_LEN
    }

    fn of(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| s.starts_with(p.as_str()))
    }
}

/// The public id of a token: safe to log, show and put in URLs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenId(String);

impl TokenId {
    pub fn generate() -> Self {
        Self(Alphanumeric.sample_string(&mut os_seeded(), ID_LEN))
    }

    /// Accepts exactly what `generate` produces; anything else cannot name a token.
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == ID_LEN && s.bytes().all(|b| b.is_ascii_alphanumeric())).then(|| Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The random source of one id or secret: ChaCha12 (a CSPRNG) keyed with 256
/// fresh bits from the operating system's RNG, so each value costs one
/// system call. Sampling from `OsRng` directly costs one per character
/// (each 32-bit draw is a `getrandom` call): a refresh, which makes two
/// tokens, spent 8% of its CPU time there. Panics, as `OsRng` does, if the
/// operating system has no randomness to give.
fn os_seeded() -> StdRng {
    StdRng::from_entropy()
}

/// A whole token, secret included. It is generated or parsed, never printed
/// by `Debug`, and only its hash reaches the database.
#[derive(Clone, PartialEq, Eq)]
pub struct PlainToken {
    prefix: Prefix,
    id: TokenId,
    secret: Secret,
}

/// The secret part, kept inline: the gate parses a token on every request,
/// and this is one allocation fewer each time. Only base62 characters.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret([u8; SECRET_LEN]);

impl Secret {
    fn generate() -> Self {
        let mut rng = os_seeded();
        Self(std::array::from_fn(|_| rng.sample(Alphanumeric)))
    }

    pub fn as_str(&self) -> &str {
        // Base62 characters only, from `generate` or a checked `parse`.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenFormatError {
    #[error("the token does not start with a keygate prefix")]
    UnknownPrefix,
    #[error("the token has the wrong length")]
    WrongLength,
    #[error("the token contains characters a keygate token never has")]
    BadCharacters,
    #[error("the token's checksum does not match; it was mistyped or truncated")]
    BadChecksum,
}

impl PlainToken {
    pub fn generate(prefix: Prefix) -> Self {
        Self::with_id(prefix, TokenId::generate())
    }

    /// A new secret for an existing token (rotation keeps the id).
    pub fn with_id(prefix: Prefix, id: TokenId) -> Self {
        Self { prefix, id, secret: Secret::generate() }
    }

    pub fn parse(s: &str) -> Result<Self, TokenFormatError> {
        let prefix = Prefix::of(s).ok_or(TokenFormatError::UnknownPrefix)?;
        if s.len() != prefix.token_len() {
            return Err(TokenFormatError::WrongLength);
        }
        if !s.is_ascii() {
            return Err(TokenFormatError::BadCharacters);
        }
        let rest = &s[prefix.as_str().len()..];
        let (id, rest) = rest.split_at(ID_LEN);
        let (separator, rest) = rest.split_at(1);
        let (secret, checksum) = rest.split_at(SECRET_LEN);
        let alnum = |part: &str| part.bytes().all(|b| b.is_ascii_alphanumeric());
        if separator != "_" || !alnum(id) || !alnum(secret) || !alnum(checksum) {
            return Err(TokenFormatError::BadCharacters);
        }
        if checksum.as_bytes() != encode_checksum(&s[..s.len() - CHECKSUM_LEN]) {
            return Err(TokenFormatError::BadChecksum);
        }
        let secret = Secret(secret.as_bytes().try_into().map_err(|_| TokenFormatError::WrongLength)?);
        Ok(Self { prefix, id: TokenId(id.to_owned()), secret })
    }

    pub fn prefix(&self) -> Prefix {
        self.prefix
    }

    pub fn id(&self) -> &TokenId {
        &self.id
    }

    /// The secret part, for hashing and verification only.
    pub fn secret(&self) -> &str {
        self.secret.as_str()
    }

    /// The public id and the secret, taken apart (the gate keeps the id
    /// for the audit row without a copy).
    pub fn into_parts(self) -> (TokenId, Secret) {
        (self.id, self.secret)
    }

    /// The full token string, to show the user once.
    pub fn expose(&self) -> String {
        let mut token = format!("{}{}_{}", self.prefix.as_str(), self.id, self.secret());
        let checksum = encode_checksum(&token);
        token.extend(checksum.iter().map(|&b| char::from(b)));
        token
    }
}

impl fmt::Debug for PlainToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlainToken")
            .field("prefix", &self.prefix)
            .field("id", &self.id)
            .field("secret", &"[redacted]")
            .finish()
    }
}

fn encode_checksum(body: &str) -> [u8; CHECKSUM_LEN] {
    let mut n = crc32fast::hash(body.as_bytes()) as u64;
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The patterns the README gives secret scanners, by prefix.
    fn documented_patterns() -> Vec<(String, regex::Regex)> {
        include_str!("../../README.md")
            .lines()
            .filter(|line| line.starts_with("| ") && line.contains("`\\bkg"))
            .map(|line| {
                let pattern = line.split('`').nth(1).unwrap();
                let prefix = pattern.trim_start_matches("\\b").split('_').next().unwrap().to_owned() + "_";
                (prefix, regex::Regex::new(pattern).unwrap())
            })
            .collect()
    }

    #[test]
    fn the_documented_scanner_patterns_match_every_prefix() {
        let patterns = documented_patterns();
        let scanned =
            [Prefix::Personal, Prefix::Service, Prefix::OAuthAccess, Prefix::OAuthRefresh, Prefix::ClientSecret];
        assert_eq!(patterns.len(), scanned.len(), "one pattern per kind a scanner looks for");
        for prefix in scanned {
            let (_, pattern) = patterns.iter().find(|(p, _)| p == prefix.as_str()).expect("documented");
            for _ in 0..50 {
                let token = PlainToken::generate(prefix).expose();
                let text = format!("API_TOKEN = \"{token}\"\n");
                assert_eq!(pattern.find(&text).map(|m| m.as_str()), Some(token.as_str()), "{prefix:?}");
                assert!(!pattern.is_match(&token[..token.len() - 1]), "a truncated token is not matched");
            }
            for other in scanned.iter().filter(|o| **o != prefix) {
                assert!(!pattern.is_match(&PlainToken::generate(*other).expose()), "{prefix:?} vs {other:?}");
            }
        }
    }

    #[test]
    fn a_generated_token_round_trips() {
        for prefix in Prefix::ALL {
            let token = PlainToken::generate(prefix);
            let text = token.expose();
            assert_eq!(text.len(), prefix.token_len());
            assert!(text.starts_with(prefix.as_str()));
            assert!(text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
            assert_eq!(PlainToken::parse(&text), Ok(token));
        }
    }

    /// A token issued by any earlier build parses the same: the checksum
    /// here was computed apart from this code (Python's `zlib.crc32`, then
    /// base62).
    #[test]
    fn a_known_token_parses_into_its_parts() {
        let text = "kgs_ExampleTokenId16_ExampleSecretOf32CharactersAbcde2WxpYp";
        let token = PlainToken::parse(text).unwrap();
        assert_eq!(token.prefix(), Prefix::Service);
        assert_eq!(token.id().as_str(), "ExampleTokenId16");
        assert_eq!(token.secret(), "ExampleSecretOf32CharactersAbcde");
        assert_eq!(token.expose(), text);
        let (id, secret) = token.into_parts();
        assert_eq!(
            (id.into_string().as_str(), secret.as_str()),
            ("ExampleTokenId16", "ExampleSecretOf32CharactersAbcde")
        );
        let wrong_checksum = text.replace("2WxpYp", "2WxpYq");
        assert_eq!(PlainToken::parse(&wrong_checksum), Err(TokenFormatError::BadChecksum));
    }

    #[test]
    fn secrets_are_long_and_distinct() {
        let a = PlainToken::generate(Prefix::Service);
        let b = PlainToken::generate(Prefix::Service);
        assert_ne!(a.secret(), b.secret());
        assert_ne!(a.id(), b.id());
        // 32 characters of base62 carry 32 * log2(62) = 190 bits.
        assert!(SECRET_LEN as f64 * 62f64.log2() >= 160.0);
    }

    #[test]
    fn a_changed_character_fails_the_checksum() {
        let text = PlainToken::generate(Prefix::Service).expose();
        let mut bytes = text.clone().into_bytes();
        let i = PREFIX_LEN + ID_LEN + 5; // inside the secret
        bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
        let tampered = String::from_utf8(bytes).unwrap();
        assert_eq!(PlainToken::parse(&tampered), Err(TokenFormatError::BadChecksum));
    }

    #[test]
    fn truncated_and_padded_tokens_are_rejected() {
        let text = PlainToken::generate(Prefix::Personal).expose();
        assert_eq!(PlainToken::parse(&text[..TOKEN_LEN - 1]), Err(TokenFormatError::WrongLength));
        assert_eq!(PlainToken::parse(&format!("{text}x")), Err(TokenFormatError::WrongLength));
        assert_eq!(PlainToken::parse(&format!("{text} ")), Err(TokenFormatError::WrongLength));
        assert_eq!(PlainToken::parse(""), Err(TokenFormatError::UnknownPrefix));
    }

    #[test]
    fn wrong_prefixes_are_rejected() {
        let text = PlainToken::generate(Prefix::Service).expose();
        assert_eq!(PlainToken::parse(&text.replacen("kgs_", "ghp_", 1)), Err(TokenFormatError::UnknownPrefix));
        assert_eq!(PlainToken::parse(&text.replacen("kgs_", "KGS_", 1)), Err(TokenFormatError::UnknownPrefix));
        // Swapping the kind invalidates the checksum, so kinds cannot be forged.
        assert_eq!(PlainToken::parse(&text.replacen("kgs_", "kgp_", 1)), Err(TokenFormatError::BadChecksum));
    }

    #[test]
    fn foreign_characters_are_rejected_not_panicked_on() {
        let text = PlainToken::generate(Prefix::Service).expose();
        let mut broken = text.clone();
        broken.replace_range(PREFIX_LEN + ID_LEN..PREFIX_LEN + ID_LEN + 1, "-");
        assert_eq!(PlainToken::parse(&broken), Err(TokenFormatError::BadCharacters));
        let multibyte = format!("kgs_a{}", "é".repeat((TOKEN_LEN - 5) / 2));
        assert!(PlainToken::parse(&multibyte).is_err());
    }

    #[test]
    fn debug_never_prints_the_secret() {
        let token = PlainToken::generate(Prefix::Service);
        let printed = format!("{token:?}");
        assert!(!printed.contains(token.secret()));
        assert!(printed.contains(token.id().as_str()));
    }
}
