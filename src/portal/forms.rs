//! Reading `application/x-www-form-urlencoded` bodies by hand, so that a
//! missing or malformed field becomes a message on the form instead of a bare
//! 400, and repeated fields (scope checkboxes) are kept.

use actix_web::web;

pub struct FormFields(Vec<(String, String)>);

impl FormFields {
    pub fn parse(body: &web::Bytes) -> Self {
        Self(serde_urlencoded::from_bytes::<Vec<(String, String)>>(body).unwrap_or_default())
    }

    /// The first value of `name`, or "" when absent.
    pub fn get(&self, name: &str) -> &str {
        self.0.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str())
    }

    pub fn get_opt(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0.iter().filter(move |(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn csrf(&self) -> Option<&str> {
        self.get_opt("csrf_token")
    }
}

/// Percent-encodes a value for a query string.
pub fn percent_encode(value: &str) -> String {
    serde_urlencoded::to_string([("", value)]).map(|s| s[1..].to_owned()).unwrap_or_default()
}

/// Where to go after signing in: a local path only, never another host.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.starts_with("/\\")
                && !path.chars().any(|c| c.is_control()) =>
        {
            path.to_owned()
        }
        _ => "/settings/tokens".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_fields_are_all_kept() {
        let body = web::Bytes::from_static(b"name=erp&scope=orders%3Aread&scope=products%3Aread&csrf_token=x");
        let form = FormFields::parse(&body);
        assert_eq!(form.get("name"), "erp");
        assert_eq!(form.get_all("scope").collect::<Vec<_>>(), ["orders:read", "products:read"]);
        assert_eq!(form.csrf(), Some("x"));
        assert_eq!(form.get("missing"), "");
    }

    #[test]
    fn next_never_leaves_the_site() {
        assert_eq!(safe_next(Some("/settings/logs?x=1")), "/settings/logs?x=1");
        for bad in ["//evil.example", "https://evil.example", "/\\evil.example", "settings"] {
            assert_eq!(safe_next(Some(bad)), "/settings/tokens");
        }
        assert_eq!(percent_encode("/a b?c=d&e"), "%2Fa+b%3Fc%3Dd%26e");
    }
}
