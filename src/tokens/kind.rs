//! What kind of credential an `api_tokens` row is, parsed once when the row
//! is read (see `db::text_enum`).

use std::fmt;
use std::str::FromStr;

use diesel::deserialize::FromSqlRow;
use diesel::expression::AsExpression;
use diesel::sql_types::Text;

use super::format::Prefix;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, AsExpression, FromSqlRow)]
#[diesel(sql_type = Text)]
pub enum TokenKind {
    /// Carries every scope its account holds, at request time.
    Personal,
    /// Carries the scopes chosen at creation; for scripts and integrators.
    Service,
    /// An OAuth access token: the scopes of its grant, for a third-party app.
    OAuth,
}

impl TokenKind {
    /// The kinds a seller creates under Settings → API Tokens.
    pub const API: [TokenKind; 2] = [TokenKind::Personal, TokenKind::Service];

    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Personal => "personal",
            TokenKind::Service => "service",
            TokenKind::OAuth => "oauth",
        }
    }

    /// The prefix of this kind's token strings.
    pub fn prefix(self) -> Prefix {
        match self {
            TokenKind::Personal => Prefix::Personal,
            TokenKind::Service => Prefix::Service,
            TokenKind::OAuth => Prefix::OAuthAccess,
        }
    }

    /// The kind a token string claims, if it is one the gate accepts.
    pub fn of_prefix(prefix: Prefix) -> Option<Self> {
        [TokenKind::Personal, TokenKind::Service, TokenKind::OAuth].into_iter().find(|k| k.prefix() == prefix)
    }

    /// The kinds a seller may create by hand (portal form, CLI).
    pub fn parse_api(s: &str) -> Option<Self> {
        s.parse().ok().filter(|kind| Self::API.contains(kind))
    }
}

impl fmt::Display for TokenKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct UnknownKind;

impl FromStr for TokenKind {
    type Err = UnknownKind;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "personal" => Ok(TokenKind::Personal),
            "service" => Ok(TokenKind::Service),
            "oauth" => Ok(TokenKind::OAuth),
            _ => Err(UnknownKind),
        }
    }
}

impl PartialEq<&str> for TokenKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

crate::text_enum!(TokenKind);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_and_only_api_kinds_are_made_by_hand() {
        for kind in [TokenKind::Personal, TokenKind::Service, TokenKind::OAuth] {
            assert_eq!(kind.as_str().parse(), Ok(kind));
            assert_eq!(TokenKind::of_prefix(kind.prefix()), Some(kind));
        }
        assert_eq!("Personal".parse::<TokenKind>(), Err(UnknownKind));
        assert_eq!(TokenKind::parse_api("oauth"), None);
        assert_eq!(TokenKind::parse_api("service"), Some(TokenKind::Service));
        assert_eq!(TokenKind::of_prefix(Prefix::OAuthRefresh), None, "refresh tokens never pass the gate");
    }
}
