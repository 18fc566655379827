//! Where an app may send a seller back to: its registered redirect URIs and
//! redirect prefixes, the rules that refuse a bad one at registration, and
//! the match at `/oauth/authorize`.
//!
//! - A registered URI matches **exactly** (string comparison), except that
//!   `http://127.0.0.1/…` and `http://[::1]/…` match any port (RFC 8252
//!   §7.3, native apps on a loopback port of their choosing).
//! - A **redirect prefix** (source document 001's redirect origin) matches a
//!   URI with the same scheme, host and port whose path is the prefix's path
//!   or continues it after a `/`; a query is allowed.
//! - Refused everywhere: dot segments, encoded `/` or `\`, a backslash,
//!   userinfo, a fragment, `http` off loopback, anything not absolute, a
//!   control character or a space, a string that does not begin with
//!   `https://` (or `http://`) literally, and anything the URL parser would
//!   drop or rewrite: the string matched is the string redirected to.
//!
//! URLs are parsed to refuse, never to accept: the `url` crate normalises
//! (it resolves `..`), so the raw string is checked for what parsing would
//! hide, and an exact URI is compared as the string it is.

use url::Url;

/// A redirect URI or prefix an app may register, parsed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectRule {
    raw: String,
    url: Url,
}

/// Why a URI is refused, said to whoever typed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedirectError {
    #[error("`{0}` is not an absolute URL")]
    NotAbsolute(String),
    #[error("`{0}` must use https (http only on the loopback addresses 127.0.0.1 and [::1])")]
    Insecure(String),
    #[error("`{0}` uses `localhost`: register http://127.0.0.1/… or http://[::1]/… instead (RFC 8252 §8.3)")]
    Localhost(String),
    #[error("`{0}` has a fragment (#…), which a redirect URI may not have")]
    Fragment(String),
    #[error("`{0}` has a user name or password before the host")]
    Userinfo(String),
    #[error("`{0}` has a `.` or `..` path segment")]
    DotSegment(String),
    #[error("`{0}` has an encoded `/` or `\\` (%2F, %5C) or a backslash")]
    EncodedSeparator(String),
    #[error("the prefix `{0}` may not have a query")]
    PrefixQuery(String),
    #[error("`{0}` is longer than 2,000 characters")]
    TooLong(String),
    #[error("{0} holds a control character or a space, which a redirect URI may not hold")]
    ControlOrSpace(String),
    #[error("`{0}` must begin with https:// (or http:// on loopback) exactly as written")]
    NoScheme(String),
    #[error("`{raw}` is read by URL parsers as `{parsed}`: register exactly that")]
    Rewritten { raw: String, parsed: String },
}

pub const MAX_LEN: usize = 2_000;

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        _ => false,
    }
}

/// What parsing would hide or must never be accepted, checked on the raw string.
fn refuse_raw(raw: &str) -> Result<(), RedirectError> {
    let owned = || raw.to_owned();
    if raw.len() > MAX_LEN {
        return Err(RedirectError::TooLong(raw.chars().take(60).collect::<String>() + "…"));
    }
    // A URL parser drops tabs and newlines and trims spaces: what is matched
    // must be what is redirected to, so they are refused, not cleaned.
    if raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(RedirectError::ControlOrSpace(format!("{raw:?}")));
    }
    if !(raw.starts_with("https://") || raw.starts_with("http://")) {
        return Err(RedirectError::NoScheme(owned()));
    }
    if raw.contains('#') {
        return Err(RedirectError::Fragment(owned()));
    }
    let lower = raw.to_ascii_lowercase();
    if raw.contains('\\') || lower.contains("%2f") || lower.contains("%5c") {
        return Err(RedirectError::EncodedSeparator(owned()));
    }
    // The path, as typed: after the authority, before the query.
    let after_scheme = raw.split_once("://").map_or(raw, |(_, rest)| rest);
    let path = after_scheme.split_once('/').map_or("", |(_, path)| path);
    let path = path.split(['?', '#']).next().unwrap_or("");
    let dots = |segment: &str| {
        let segment = segment.to_ascii_lowercase().replace("%2e", ".");
        segment == "." || segment == ".."
    };
    if path.split('/').any(dots) {
        return Err(RedirectError::DotSegment(owned()));
    }
    Ok(())
}

fn parse(raw: &str) -> Result<Url, RedirectError> {
    refuse_raw(raw)?;
    let url = Url::parse(raw).map_err(|_| RedirectError::NotAbsolute(raw.to_owned()))?;
    if url.cannot_be_a_base() || url.host().is_none() {
        return Err(RedirectError::NotAbsolute(raw.to_owned()));
    }
    // `https:///host`, an upper-case host, a default port, a missing `/`,
    // characters it would escape: anything the parser rewrites is refused.
    if url.as_str() != raw {
        return Err(RedirectError::Rewritten { raw: raw.to_owned(), parsed: url.as_str().to_owned() });
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(RedirectError::Userinfo(raw.to_owned()));
    }
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" if url.host_str() == Some("localhost") => return Err(RedirectError::Localhost(raw.to_owned())),
        _ => return Err(RedirectError::Insecure(raw.to_owned())),
    }
    Ok(url)
}

impl RedirectRule {
    /// A redirect URI as an app registers it.
    pub fn uri(raw: &str) -> Result<Self, RedirectError> {
        let raw = raw.trim();
        Ok(Self { url: parse(raw)?, raw: raw.to_owned() })
    }

    /// A redirect prefix as an app registers it: no query either.
    pub fn prefix(raw: &str) -> Result<Self, RedirectError> {
        let raw = raw.trim();
        let url = parse(raw)?;
        if url.query().is_some() {
            return Err(RedirectError::PrefixQuery(raw.to_owned()));
        }
        Ok(Self { url, raw: raw.to_owned() })
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The origin (`https://host:port`) a browser at this URI sends.
    pub fn origin(&self) -> String {
        self.url.origin().ascii_serialization()
    }

    /// The host a seller is sent back to, for the consent page.
    pub fn host(&self) -> String {
        self.url.host_str().unwrap_or_default().to_owned()
    }

    /// Whether `candidate` (as received) is this registered URI: the same
    /// string, or for a loopback URI the same but for the port.
    pub fn matches_exactly(&self, candidate: &str) -> bool {
        if candidate == self.raw {
            return true;
        }
        if self.url.scheme() != "http" || !is_loopback(&self.url) {
            return false;
        }
        match parse(candidate) {
            Ok(url) => {
                url.scheme() == "http"
                    && url.host() == self.url.host()
                    && url.path() == self.url.path()
                    && url.query() == self.url.query()
            }
            Err(_) => false,
        }
    }

    /// Whether `candidate` continues this prefix: same scheme, host and
    /// port; the path equal to the prefix's or going on after a `/`.
    pub fn matches_prefix(&self, candidate: &str) -> bool {
        self.mismatch_as_prefix(candidate).is_none()
    }

    /// Why `candidate` does not match this registered URI (exact rules).
    pub fn mismatch_as_uri(&self, candidate: &str) -> Option<String> {
        if self.matches_exactly(candidate) {
            return None;
        }
        Some(match parse(candidate) {
            Err(e) => e.to_string(),
            Ok(url) => self.difference(&url).unwrap_or_else(|| "not the same string".to_owned()),
        })
    }

    /// Why `candidate` does not continue this prefix; `None` when it does.
    pub fn mismatch_as_prefix(&self, candidate: &str) -> Option<String> {
        let url = match parse(candidate) {
            Ok(url) => url,
            Err(e) => return Some(e.to_string()),
        };
        if let Some(why) = self.difference_of_origin(&url) {
            return Some(why);
        }
        let base = self.url.path().trim_end_matches('/');
        let path = url.path();
        let continues = path == base
            || path == self.url.path()
            || path.strip_prefix(base).is_some_and(|rest| rest.starts_with('/'));
        (!continues).then(|| format!("the path `{path}` is not `{base}` or below it"))
    }

    fn difference_of_origin(&self, url: &Url) -> Option<String> {
        if url.scheme() != self.url.scheme() {
            return Some(format!("the scheme is {}, not {}", url.scheme(), self.url.scheme()));
        }
        if url.host() != self.url.host() {
            return Some(format!(
                "the host is {}, not {}",
                url.host_str().unwrap_or_default(),
                self.url.host_str().unwrap_or_default()
            ));
        }
        if url.port_or_known_default() != self.url.port_or_known_default() {
            let show = |u: &Url| u.port_or_known_default().map_or_else(|| "none".to_owned(), |p| p.to_string());
            return Some(format!("the port is {}, not {}", show(url), show(&self.url)));
        }
        None
    }

    fn difference(&self, url: &Url) -> Option<String> {
        if let Some(why) = self.difference_of_origin(url) {
            return Some(why);
        }
        if url.path() != self.url.path() {
            return Some(format!("the path is `{}`, not `{}`", url.path(), self.url.path()));
        }
        if url.query() != self.url.query() {
            return Some("the query differs".to_owned());
        }
        None
    }
}

/// An app's redirect rules, and which one a received URI satisfies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Redirects {
    pub uris: Vec<RedirectRule>,
    pub prefixes: Vec<RedirectRule>,
}

impl Redirects {
    /// Whether `candidate`, as received, is a place this app may be sent to.
    pub fn allows(&self, candidate: &str) -> bool {
        self.uris.iter().any(|u| u.matches_exactly(candidate))
            || self.prefixes.iter().any(|p| p.matches_prefix(candidate))
    }

    /// The one URI to use when the request names none: only an app with
    /// exactly one registered URI and no prefix has one.
    pub fn default_uri(&self) -> Option<&str> {
        match (self.uris.as_slice(), self.prefixes.is_empty()) {
            ([only], true) => Some(only.as_str()),
            _ => None,
        }
    }

    /// For the app's owner: each registered rule and why `candidate` missed it.
    pub fn explain(&self, candidate: &str) -> Vec<(String, String)> {
        let uris = self.uris.iter().map(|u| {
            let why = u.mismatch_as_uri(candidate).unwrap_or_else(|| "matches".into());
            (u.as_str().to_owned(), why)
        });
        let prefixes = self.prefixes.iter().map(|p| {
            let why = p.mismatch_as_prefix(candidate).unwrap_or_else(|| "matches".into());
            (format!("{} (prefix)", p.as_str()), why)
        });
        uris.chain(prefixes).collect()
    }

    /// Stored form: one rule a line.
    pub fn to_stored(rules: &[RedirectRule]) -> String {
        rules.iter().map(RedirectRule::as_str).collect::<Vec<_>>().join("\n")
    }

    /// From the stored lines; a line that no longer passes is left out.
    pub fn from_stored(uris: &str, prefixes: &str) -> Self {
        let lines = |text: &str, rule: fn(&str) -> Result<RedirectRule, RedirectError>| {
            text.lines().filter(|l| !l.trim().is_empty()).filter_map(|l| rule(l).ok()).collect()
        };
        Self { uris: lines(uris, RedirectRule::uri), prefixes: lines(prefixes, RedirectRule::prefix) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_of_source_document_001() {
        let prefix = RedirectRule::prefix("https://my-wms.com/oauth").unwrap();
        assert!(prefix.matches_prefix("https://my-wms.com/oauth/callback"));
        assert!(prefix.matches_prefix("https://my-wms.com/oauth/done?ref=123"));
        assert!(prefix.matches_prefix("https://my-wms.com/oauth"));
        assert!(!prefix.matches_prefix("https://other-site.com/oauth"));
        assert!(!prefix.matches_prefix("https://my-wms.com/other"));
        assert!(!prefix.matches_prefix("https://my-wms.com/oauthx"), "merely the same letters");
        assert!(!prefix.matches_prefix("https://my-wms.com/oauth/../other"), "dot segments");
        assert!(!prefix.matches_prefix("https://my-wms.com/oauth/%2e%2e/other"), "encoded dot segments");
        assert!(!prefix.matches_prefix("https://my-wms.com/oauth%2Fevil"), "encoded slash");
        assert!(!prefix.matches_prefix("https://my-wms.com/oauth\\evil"), "backslash");
        assert!(!prefix.matches_prefix("https://my-wms.com/oauth/cb#x"), "fragment");
        assert!(!prefix.matches_prefix("https://evil@my-wms.com/oauth/cb"), "userinfo");
        assert!(!prefix.matches_prefix("http://my-wms.com/oauth/cb"), "http off loopback");
        assert!(!prefix.matches_prefix("https://my-wms.com:8443/oauth/cb"), "another port");
        assert!(!prefix.matches_prefix("https://my-wms.com.evil.example/oauth/cb"));
        assert_eq!(
            prefix.mismatch_as_prefix("https://my-wms.com/oauthx").as_deref(),
            Some("the path `/oauthx` is not `/oauth` or below it")
        );
        assert_eq!(
            prefix.mismatch_as_prefix("https://other-site.com/oauth").as_deref(),
            Some("the host is other-site.com, not my-wms.com")
        );
    }

    #[test]
    fn registration_refuses_what_may_never_be_a_redirect() {
        for bad in [
            "http://my-wms.com/cb",
            "http://localhost:8080/cb",
            "https://my-wms.com/cb#frag",
            "https://user:pw@my-wms.com/cb",
            "https://my-wms.com/a/../cb",
            "https://my-wms.com/a/./cb",
            "https://my-wms.com/a%2Fb",
            "https://my-wms.com/a%5cb",
            "/relative/cb",
            "javascript:alert(1)",
            "ftp://my-wms.com/cb",
            "",
        ] {
            assert!(RedirectRule::uri(bad).is_err(), "{bad}");
        }
        assert!(RedirectRule::prefix("https://my-wms.com/oauth?x=1").is_err());
        assert!(RedirectRule::uri(&format!("https://my-wms.com/{}", "a".repeat(MAX_LEN))).is_err());
        assert!(RedirectRule::uri("https://my-wms.com/oauth/callback?x=1").is_ok());
        for rewritten in [
            "https://my-wms.com/cb\r\nSet-Cookie: x=1",
            "https://my-wms.com/c\tb",
            "https://my-wms.com/c b",
            "https:my-wms.com/cb",
            "https:/my-wms.com/cb",
            "https:///my-wms.com/cb",
            "HTTPS://my-wms.com/cb",
            "https://MY-WMS.com/cb",
            "https://my-wms.com:443/cb",
            "https://my-wms.com",
            "https://my-wms.com/\u{e9}",
            "https://my-wms.com/a\"b",
            "http://127.0.0.1:1/c\nb",
            "http://0x7f.1/cb",
        ] {
            assert!(RedirectRule::uri(rewritten).is_err(), "{rewritten:?}");
            assert!(RedirectRule::prefix(rewritten).is_err(), "{rewritten:?}");
        }
        assert!(RedirectRule::uri("http://127.0.0.1/callback").is_ok());
        assert!(RedirectRule::uri("http://[::1]:9000/callback").is_ok());
    }

    #[test]
    fn exact_uris_compare_as_strings_and_loopback_takes_any_port() {
        let exact = RedirectRule::uri("https://erp.example/cb").unwrap();
        assert!(exact.matches_exactly("https://erp.example/cb"));
        assert!(!exact.matches_exactly("https://erp.example/cb/"));
        assert!(!exact.matches_exactly("https://ERP.example/cb"), "no normalising to accept");
        assert!(!exact.matches_exactly("https://erp.example/cb?x=1"));
        let loopback = RedirectRule::uri("http://127.0.0.1/callback").unwrap();
        assert!(loopback.matches_exactly("http://127.0.0.1:53117/callback"));
        assert!(loopback.matches_exactly("http://127.0.0.1/callback"));
        assert!(!loopback.matches_exactly("http://127.0.0.1:53117/other"));
        assert!(!loopback.matches_exactly("http://127.0.0.2:53117/callback"));
        assert!(!loopback.matches_exactly("https://127.0.0.1:53117/callback"));
        assert!(!loopback.matches_exactly("http://127.0.0.1:53117/callback\r\n"), "the string matched is the one sent");
        assert!(!loopback.matches_exactly("http://127.0.0.1:53117/call\tback"));
        let prefix = RedirectRule::prefix("https://my-wms.com/oauth").unwrap();
        assert!(!prefix.matches_prefix("https://my-wms.com/oauth/cb\r\nLocation: https://evil.example/"));
        assert!(!prefix.matches_prefix("https:my-wms.com/oauth/cb"));
        assert!(!prefix.matches_prefix("https:///my-wms.com/oauth/cb"));
        let v6 = RedirectRule::uri("http://[::1]/cb").unwrap();
        assert!(v6.matches_exactly("http://[::1]:4000/cb"));
    }

    #[test]
    fn the_default_uri_and_the_owners_explanation() {
        let one = Redirects { uris: vec![RedirectRule::uri("https://erp.example/cb").unwrap()], prefixes: vec![] };
        assert_eq!(one.default_uri(), Some("https://erp.example/cb"));
        let two = Redirects {
            uris: one.uris.clone(),
            prefixes: vec![RedirectRule::prefix("https://erp.example/oauth").unwrap()],
        };
        assert_eq!(two.default_uri(), None);
        assert!(two.allows("https://erp.example/oauth/x"));
        let explained = two.explain("https://erp.example:444/cb");
        assert_eq!(explained.len(), 2);
        assert!(explained[0].1.contains("port"), "{explained:?}");
        let stored = Redirects::from_stored(&Redirects::to_stored(&two.uris), &Redirects::to_stored(&two.prefixes));
        assert_eq!(stored, two);
    }
}
