//! A token's IP allowlist (SPEC §2): IPv4 and IPv6 addresses and CIDRs. A
//! call from elsewhere is refused with `403 ip_not_allowed`. Parsed once when
//! the row is read; stored as space-separated, normalised CIDRs.

use std::net::IpAddr;

use ipnet::IpNet;

/// The most entries a token's allowlist may have.
pub const MAX_ENTRIES: usize = 50;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpAllowlist(Vec<IpNet>);

impl IpAllowlist {
    /// Every entry, or every problem at once. Entries are split on commas,
    /// spaces and line breaks; a bare address is a /32 (or /128); duplicates
    /// are dropped. `Ok(None)`: nothing given, no restriction.
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Option<Self>, Vec<String>> {
        let words: Vec<&str> = entries
            .into_iter()
            .flat_map(|e| e.split(|c: char| c == ',' || c.is_whitespace()))
            .filter(|w| !w.is_empty())
            .collect();
        let mut errors = Vec::new();
        let mut nets: Vec<IpNet> = Vec::new();
        for word in &words {
            match parse_entry(word) {
                Ok(net) if nets.contains(&net) => {}
                Ok(net) => nets.push(net),
                Err(e) => errors.push(e),
            }
        }
        if nets.len() > MAX_ENTRIES {
            errors.push(format!("An allowlist has at most {MAX_ENTRIES} entries; this one has {}.", nets.len()));
        }
        match (errors.is_empty(), nets.is_empty()) {
            (false, _) => Err(errors),
            (true, true) => Ok(None),
            (true, false) => Ok(Some(Self(nets))),
        }
    }

    /// From the stored column; an entry that no longer parses is dropped
    /// (which can only narrow the list).
    pub fn from_stored(stored: &str) -> Option<Self> {
        let nets: Vec<IpNet> = stored.split_whitespace().filter_map(|w| parse_entry(w).ok()).collect();
        (!stored.trim().is_empty()).then_some(Self(nets))
    }

    pub fn to_stored(&self) -> String {
        self.entries().collect::<Vec<_>>().join(" ")
    }

    /// Each entry as people read it: a single address without its /32.
    pub fn entries(&self) -> impl Iterator<Item = String> + '_ {
        self.0.iter().map(|net| {
            if net.prefix_len() == net.max_prefix_len() {
                net.addr().to_string()
            } else {
                net.to_string()
            }
        })
    }

    /// Whether a call from `ip` may use the token. An IPv4 address mapped
    /// into IPv6 (`::ffff:a.b.c.d`) is matched as the IPv4 address.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.0.iter().any(|net| net.contains(&ip))
    }
}

fn parse_entry(word: &str) -> Result<IpNet, String> {
    if let Ok(ip) = word.parse::<IpAddr>() {
        return Ok(IpNet::from(ip));
    }
    let Some((address, mask)) = word.split_once('/') else {
        return Err(format!("`{word}` is not an IP address or a CIDR (such as 203.0.113.0/24 or 2001:db8::/32)."));
    };
    let ip: IpAddr = address.parse().map_err(|_| format!("`{word}`: `{address}` is not an IP address."))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix: u8 = mask.parse().ok().filter(|p| *p <= max).ok_or_else(|| {
        format!(
            "`{word}`: the mask must be a number from 0 to {max} for an IPv{} address.",
            if max == 32 { 4 } else { 6 }
        )
    })?;
    // The network itself: 203.0.113.7/24 means 203.0.113.0/24.
    IpNet::new(ip, prefix).map(|net| net.trunc()).map_err(|_| format!("`{word}` is not a CIDR."))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(raw: &str) -> IpAllowlist {
        IpAllowlist::parse([raw]).unwrap().unwrap()
    }

    #[test]
    fn addresses_and_networks_of_both_families_are_matched() {
        let allowed = list("203.0.113.7, 198.51.100.0/24\n2001:db8::/32");
        assert!(allowed.allows("203.0.113.7".parse().unwrap()));
        assert!(!allowed.allows("203.0.113.8".parse().unwrap()));
        assert!(allowed.allows("198.51.100.200".parse().unwrap()));
        assert!(allowed.allows("2001:db8:1::5".parse().unwrap()));
        assert!(!allowed.allows("2001:db9::1".parse().unwrap()));
        assert!(allowed.allows("::ffff:203.0.113.7".parse().unwrap()), "an IPv4-mapped address is its IPv4 address");
        assert_eq!(allowed.to_stored(), "203.0.113.7 198.51.100.0/24 2001:db8::/32");
        assert_eq!(IpAllowlist::from_stored(&allowed.to_stored()), Some(allowed));
        assert_eq!(list("10.1.2.3/8").to_stored(), "10.0.0.0/8", "a network is stored as its network");
        assert_eq!(IpAllowlist::parse([" ", ""]).unwrap(), None, "nothing given: no restriction");
        assert_eq!(list("10.0.0.1 10.0.0.1").to_stored(), "10.0.0.1");
    }

    #[test]
    fn every_bad_entry_is_named() {
        let errors = IpAllowlist::parse(["nope, 10.0.0.0/33, 2001:db8::/129, 10.0.0/8, 1.2.3.4/x"]).unwrap_err();
        assert_eq!(errors.len(), 5, "{errors:?}");
        assert!(errors[0].contains("`nope` is not an IP address or a CIDR"));
        assert!(errors[1].contains("from 0 to 32 for an IPv4"));
        assert!(errors[2].contains("from 0 to 128 for an IPv6"));
        assert!(errors[3].contains("`10.0.0` is not an IP address"));
        let many: Vec<String> = (0..51).map(|i| format!("10.0.0.{i}")).collect();
        let errors = IpAllowlist::parse(many.iter().map(String::as_str)).unwrap_err();
        assert_eq!(errors, vec!["An allowlist has at most 50 entries; this one has 51.".to_owned()]);
    }
}
