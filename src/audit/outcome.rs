//! The outcome of each audit row, and its kind: one enum each, used by the
//! gate, the writer, the filters and the pages (see `db::text_enum`).

use std::fmt;
use std::str::FromStr;

use diesel::deserialize::FromSqlRow;
use diesel::expression::AsExpression;
use diesel::sql_types::Text;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, AsExpression, FromSqlRow)]
#[diesel(sql_type = Text)]
pub enum Outcome {
    Ok,
    Unauthorized,
    InvalidToken,
    TokenRevoked,
    TokenExpired,
    InsufficientScope,
    RateLimited,
    HttpsRequired,
    /// The token's IP allowlist does not hold the caller's address.
    IpNotAllowed,
    /// The token's account is suspended by an administrator.
    AccountSuspended,
    /// The server failed, or could not check the request.
    Error,
    /// The upstream behind the gate (`--upstream`) did not answer: refused
    /// or reset the connection (502), or not in time (504).
    UpstreamError,
    /// A security event that did not succeed (a failed sign-in).
    Failed,
}

impl Outcome {
    pub const ALL: [Outcome; 13] = [
        Outcome::Ok,
        Outcome::Unauthorized,
        Outcome::InvalidToken,
        Outcome::TokenRevoked,
        Outcome::TokenExpired,
        Outcome::InsufficientScope,
        Outcome::RateLimited,
        Outcome::HttpsRequired,
        Outcome::IpNotAllowed,
        Outcome::AccountSuspended,
        Outcome::Error,
        Outcome::UpstreamError,
        Outcome::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Unauthorized => "unauthorized",
            Outcome::InvalidToken => "invalid_token",
            Outcome::TokenRevoked => "token_revoked",
            Outcome::TokenExpired => "token_expired",
            Outcome::InsufficientScope => "insufficient_scope",
            Outcome::RateLimited => "rate_limited",
            Outcome::HttpsRequired => "https_required",
            Outcome::IpNotAllowed => "ip_not_allowed",
            Outcome::AccountSuspended => "account_suspended",
            Outcome::Error => "error",
            Outcome::UpstreamError => "upstream_error",
            Outcome::Failed => "failed",
        }
    }

    /// The chart's classes: 0 ok, 1 refused by the gate, 2 rate limited,
    /// 3 errors (keygate's own and the upstream's).
    pub fn class(self) -> usize {
        match self {
            Outcome::Ok => 0,
            Outcome::RateLimited => 2,
            Outcome::Error | Outcome::UpstreamError => 3,
            _ => 1,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct UnknownOutcome;

impl FromStr for Outcome {
    type Err = UnknownOutcome;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Outcome::ALL.into_iter().find(|o| o.as_str() == s).ok_or(UnknownOutcome)
    }
}

impl PartialEq<str> for Outcome {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Outcome {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

crate::text_enum!(Outcome);

/// API requests and portal security events share the trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, AsExpression, FromSqlRow)]
#[diesel(sql_type = Text)]
pub enum EventKind {
    Api,
    Security,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Api => "api",
            EventKind::Security => "security",
        }
    }
}

impl FromStr for EventKind {
    type Err = UnknownOutcome;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "api" => Ok(EventKind::Api),
            "security" => Ok(EventKind::Security),
            _ => Err(UnknownOutcome),
        }
    }
}

impl PartialEq<&str> for EventKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

crate::text_enum!(EventKind);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_round_trip_and_compare_with_their_names() {
        for outcome in Outcome::ALL {
            assert_eq!(outcome.as_str().parse(), Ok(outcome));
            assert_eq!(outcome, outcome.as_str());
        }
        assert_eq!("bogus".parse::<Outcome>(), Err(UnknownOutcome));
        assert_eq!(Outcome::InsufficientScope.class(), 1);
    }

    #[test]
    fn an_upstream_error_is_named_upstream_error_and_charted_with_the_errors() {
        assert_eq!("upstream_error".parse(), Ok(Outcome::UpstreamError));
        assert_eq!(Outcome::UpstreamError.to_string(), "upstream_error");
        assert!(Outcome::ALL.contains(&Outcome::UpstreamError));
        assert_eq!(Outcome::UpstreamError.class(), Outcome::Error.class());
    }
}
