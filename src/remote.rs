//! Who is on the other end: the client's address and whether the request
//! arrived over HTTPS. Behind `--trusted-proxy`, the proxy's
//! `X-Forwarded-For` and `X-Forwarded-Proto` are believed; from anyone else
//! they are ignored, so a client cannot claim to be local or encrypted.

use std::net::IpAddr;

use actix_web::dev::ServiceRequest;
use actix_web::http::header::HeaderMap;
use actix_web::HttpRequest;
use ipnet::IpNet;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientView {
    pub ip: Option<IpAddr>,
    pub https: bool,
}

impl ClientView {
    /// A token may travel over plain HTTP only on the machine itself.
    pub fn may_send_secrets(&self) -> bool {
        self.https || self.ip.is_some_and(|ip| ip.is_loopback())
    }
}

pub fn of_request(req: &HttpRequest, trusted: &[IpNet]) -> ClientView {
    view(req.peer_addr().map(|a| a.ip()), req.app_config().secure(), req.headers(), trusted)
}

pub fn of_service_request(req: &ServiceRequest, trusted: &[IpNet]) -> ClientView {
    view(req.peer_addr().map(|a| a.ip()), req.app_config().secure(), req.headers(), trusted)
}

fn view(peer: Option<IpAddr>, tls: bool, headers: &HeaderMap, trusted: &[IpNet]) -> ClientView {
    let peer = peer.map(|ip| ip.to_canonical());
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let Some(peer) = peer.filter(is_trusted) else { return ClientView { ip: peer, https: tls } };
    let proto = headers
        .get_all("x-forwarded-proto")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .next_back()
        .map(|p| p.trim().eq_ignore_ascii_case("https"));
    ClientView { ip: forwarded_client(headers, &is_trusted).unwrap_or(Some(peer)), https: proto.unwrap_or(tls) }
}

/// The client a trusted proxy names in `X-Forwarded-For`, walking from the
/// right (the entry our own proxy wrote) past our proxies: `None` without
/// the header, `Some(None)` when the first entry that is not one of ours
/// cannot be read (`unknown`, `_hidden`, garbage). Such a client is unknown:
/// never loopback, never on an allowlist, throttled under one fixed key. An
/// entry is never skipped, or a client could put its own choice before it.
fn forwarded_client(headers: &HeaderMap, is_trusted: &impl Fn(&IpAddr) -> bool) -> Option<Option<IpAddr>> {
    let mut values = headers.get_all("x-forwarded-for").peekable();
    values.peek()?;
    let mut entries = Vec::new();
    for value in values {
        let Ok(text) = value.to_str() else { return Some(None) };
        entries.extend(text.split(','));
    }
    let mut leftmost = None;
    for entry in entries.iter().rev() {
        match forwarded_address(entry) {
            Some(ip) if is_trusted(&ip) => leftmost = Some(ip),
            Some(ip) => return Some(Some(ip)),
            None => return Some(None),
        }
    }
    // Every hop was one of ours: the first is the client.
    Some(leftmost)
}

/// One `X-Forwarded-For` entry: `192.0.2.7`, `192.0.2.7:4711` (Azure
/// Application Gateway), `2001:db8::7`, `[2001:db8::7]` or
/// `[2001:db8::7]:4711`; anything else is `None`.
pub fn forwarded_address(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    let ip =
        entry.parse::<IpAddr>().ok().or_else(|| entry.parse::<std::net::SocketAddr>().ok().map(|a| a.ip())).or_else(
            || entry.strip_prefix('[')?.strip_suffix(']')?.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6),
        )?;
    Some(ip.to_canonical())
}

/// The key a per-address throttle counts a client under: its address, or
/// one fixed key for every client whose address is unknown.
pub fn throttle_key(ip: Option<IpAddr>) -> IpAddr {
    ip.unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn forwarded_headers_count_only_from_a_trusted_proxy() {
        let proxy: IpAddr = "10.0.0.2".parse().unwrap();
        let trusted: Vec<IpNet> = vec!["10.0.0.0/24".parse().unwrap()];
        let h = headers(&[("x-forwarded-for", "203.0.113.7, 10.0.0.9"), ("x-forwarded-proto", "https")]);
        assert_eq!(
            view(Some(proxy), false, &h, &trusted),
            ClientView { ip: Some("203.0.113.7".parse().unwrap()), https: true }
        );
        // The same headers from an untrusted peer are ignored.
        let stranger: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(view(Some(stranger), false, &h, &trusted), ClientView { ip: Some(stranger), https: false });
        // A loopback claim from a client does not make it loopback.
        let spoof = headers(&[("x-forwarded-for", "127.0.0.1")]);
        assert!(!view(Some(stranger), false, &spoof, &trusted).may_send_secrets());
        let plain = headers(&[("x-forwarded-for", "203.0.113.7"), ("x-forwarded-proto", "http")]);
        assert!(!view(Some(proxy), false, &plain, &trusted).may_send_secrets());
        assert!(view(Some("127.0.0.1".parse().unwrap()), false, &HeaderMap::new(), &[]).may_send_secrets());
    }

    #[test]
    fn entries_with_ports_are_read_and_unreadable_ones_make_the_client_unknown() {
        let proxy: IpAddr = "10.0.0.2".parse().unwrap();
        let trusted: Vec<IpNet> = vec!["10.0.0.0/24".parse().unwrap()];
        let client = |xff: &'static str| view(Some(proxy), false, &headers(&[("x-forwarded-for", xff)]), &trusted).ip;
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(client("203.0.113.7:4711"), ip("203.0.113.7"));
        assert_eq!(client("[2001:db8::7]:4711"), ip("2001:db8::7"));
        assert_eq!(client("[2001:db8::7]"), ip("2001:db8::7"));
        assert_eq!(client("::ffff:203.0.113.7"), ip("203.0.113.7"), "a mapped address is the IPv4 one");
        assert_eq!(client("127.0.0.1, 203.0.113.7:4711, 10.0.0.9"), ip("203.0.113.7"));
        // What the client itself wrote before an entry we cannot read is never believed.
        for unreadable in
            ["127.0.0.1, unknown", "127.0.0.1, _hidden", "127.0.0.1, 10.0.0.9, garbage, 10.0.0.8", "127.0.0.1, "]
        {
            let seen = view(Some(proxy), false, &headers(&[("x-forwarded-for", unreadable)]), &trusted);
            assert_eq!(seen.ip, None, "{unreadable}");
            assert!(!seen.may_send_secrets(), "{unreadable}");
        }
        assert_eq!(client("10.0.0.7, 10.0.0.9"), ip("10.0.0.7"), "every hop ours: the first is the client");
        assert_eq!(throttle_key(None), throttle_key(None));
        assert_ne!(throttle_key(None), ip("127.0.0.1").unwrap());
    }
}
