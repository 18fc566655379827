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
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let Some(peer) = peer.filter(is_trusted) else { return ClientView { ip: peer, https: tls } };
    // The nearest address that is not one of our proxies is the client.
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|part| part.trim().parse().ok())
        .collect();
    let ip = forwarded.iter().rev().find(|ip| !is_trusted(ip)).copied().or(forwarded.first().copied()).unwrap_or(peer);
    let proto = headers
        .get_all("x-forwarded-proto")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .next_back()
        .map(|p| p.trim().eq_ignore_ascii_case("https"));
    ClientView { ip: Some(ip), https: proto.unwrap_or(tls) }
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
}
