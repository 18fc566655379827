//! What a seller submits to create a token, parsed once for the portal form
//! and the CLI alike. Holding a `TokenRequest` means every field is valid.

use chrono::{Duration, NaiveDate, NaiveDateTime, NaiveTime};

use super::scopes::{ScopeCatalogue, ScopeSet};
use super::store::Expiry;
use super::TokenKind;

pub const MAX_NAME_CHARS: usize = 64;
pub const MAX_DESCRIPTION_CHARS: usize = 500;
pub const MAX_LIFETIME_DAYS: i64 = 3650;
pub const FORM_EXPIRY_DAYS: &[i32] = &[7, 30, 60, 90];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenName(String);

impl TokenName {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let name = raw.trim();
        if name.is_empty() {
            return Err("Give the token a name.".into());
        }
        if name.chars().count() > MAX_NAME_CHARS {
            return Err(format!("The name is longer than {MAX_NAME_CHARS} characters."));
        }
        if name.chars().any(char::is_control) {
            return Err("The name cannot contain control characters.".into());
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

pub fn parse_description(raw: &str) -> Result<String, String> {
    let description = raw.trim();
    if description.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(format!("The description is longer than {MAX_DESCRIPTION_CHARS} characters."));
    }
    Ok(description.to_owned())
}

pub fn parse_kind(raw: &str) -> Result<TokenKind, String> {
    TokenKind::parse_api(raw).ok_or_else(|| {
        if raw.is_empty() {
            "Choose a personal or a service token.".to_owned()
        } else {
            format!("`{raw}` is not a token kind: choose personal or service.")
        }
    })
}

/// Scopes for a token of `kind`: a service token needs at least one; a
/// personal token carries its account's scopes at request time, so it stores none.
pub fn parse_scopes<'a>(
    kind: TokenKind,
    raw: impl IntoIterator<Item = &'a str>,
    catalogue: &ScopeCatalogue,
) -> Result<ScopeSet, String> {
    let scopes = raw
        .into_iter()
        .filter(|s| !s.is_empty())
        .map(|s| catalogue.parse(s).map_err(|e| format!("Unknown scope `{}`.", e.0)))
        .collect::<Result<Vec<_>, _>>()?;
    match kind {
        TokenKind::Personal => Ok(ScopeSet::default()),
        TokenKind::Service | TokenKind::OAuth if scopes.is_empty() => {
            Err("A service token needs at least one scope.".into())
        }
        TokenKind::Service | TokenKind::OAuth => Ok(ScopeSet::new(scopes)),
    }
}

/// The portal's expiry choice: one of the offered periods, `never`, or
/// `custom` with a date after `today` (UTC). A date expires at the end of that day.
pub fn parse_form_expiry(choice: &str, date: &str, today: NaiveDate) -> Result<Expiry, String> {
    match choice {
        "never" => Ok(Expiry::Never),
        "custom" => {
            let date = date.trim();
            if date.is_empty() {
                return Err("Pick the date the token expires.".into());
            }
            let day = NaiveDate::parse_from_str(date, "%Y-%m-%d")
                .map_err(|_| format!("`{date}` is not a date; use YYYY-MM-DD."))?;
            if day <= today {
                return Err("The expiry date must be in the future.".into());
            }
            if day > today + Duration::days(MAX_LIFETIME_DAYS) {
                return Err("The expiry date must be within 10 years.".into());
            }
            let end_of_day: NaiveDateTime = (day + Duration::days(1)).and_time(NaiveTime::MIN);
            Ok(Expiry::At(end_of_day))
        }
        "" => Err("Choose when the token expires.".into()),
        days => match days.parse::<i32>() {
            Ok(days) if FORM_EXPIRY_DAYS.contains(&days) => Ok(Expiry::Days(days)),
            _ => Err(format!("`{days}` is not one of the offered expiry periods.")),
        },
    }
}

/// The CLI's `--expires-in DAYS|never`; service tokens default to 90 days.
pub fn parse_cli_expiry(raw: Option<&str>, kind: TokenKind) -> Result<Expiry, String> {
    match raw.map(str::trim) {
        None if kind == TokenKind::Service => Ok(Expiry::Days(90)),
        None | Some("never") => Ok(Expiry::Never),
        Some(days) => match days.parse::<i64>() {
            Ok(n) if (1..=MAX_LIFETIME_DAYS).contains(&n) => Ok(Expiry::Days(n as i32)),
            _ => Err(format!(
                "--expires-in takes a number of days from 1 to {MAX_LIFETIME_DAYS}, or `never`; got `{days}`"
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo() -> ScopeCatalogue {
        ScopeCatalogue::new(crate::shop::SCOPES.iter().copied())
    }

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 21).unwrap()
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(TokenName::parse("  ERP sync ").unwrap().as_str(), "ERP sync");
        assert!(TokenName::parse("   ").is_err());
        assert!(TokenName::parse(&"n".repeat(MAX_NAME_CHARS)).is_ok());
        assert!(TokenName::parse(&"n".repeat(MAX_NAME_CHARS + 1)).is_err());
        assert!(TokenName::parse("a\u{0}b").is_err());
    }

    #[test]
    fn service_tokens_need_a_known_scope() {
        assert_eq!(
            parse_scopes(TokenKind::Service, [], &demo()).unwrap_err(),
            "A service token needs at least one scope."
        );
        let err = parse_scopes(TokenKind::Service, ["orders:read", "orders:delete"], &demo()).unwrap_err();
        assert!(err.contains("orders:delete"), "{err}");
        assert_eq!(parse_scopes(TokenKind::Service, ["orders:read"], &demo()).unwrap().to_stored(), "orders:read");
        assert!(parse_scopes(TokenKind::Personal, ["orders:read"], &demo()).unwrap().is_empty());
    }

    #[test]
    fn form_expiry_accepts_the_offered_choices_only() {
        assert_eq!(parse_form_expiry("90", "", today()), Ok(Expiry::Days(90)));
        assert_eq!(parse_form_expiry("never", "", today()), Ok(Expiry::Never));
        assert!(parse_form_expiry("45", "", today()).is_err());
        assert!(parse_form_expiry("", "", today()).is_err());
        assert_eq!(
            parse_form_expiry("custom", "2026-12-01", today()),
            Ok(Expiry::At(NaiveDate::from_ymd_opt(2026, 12, 2).unwrap().and_time(NaiveTime::MIN)))
        );
        assert_eq!(
            parse_form_expiry("custom", "2026-11-21", today()).unwrap_err(),
            "The expiry date must be in the future."
        );
        assert!(parse_form_expiry("custom", "2020-01-01", today()).is_err());
        assert!(parse_form_expiry("custom", "21/11/2027", today()).unwrap_err().contains("YYYY-MM-DD"));
        assert!(parse_form_expiry("custom", "", today()).is_err());
        assert!(parse_form_expiry("custom", "2040-01-01", today()).is_err());
    }

    #[test]
    fn cli_expiry_defaults_by_kind() {
        assert_eq!(parse_cli_expiry(None, TokenKind::Service), Ok(Expiry::Days(90)));
        assert_eq!(parse_cli_expiry(None, TokenKind::Personal), Ok(Expiry::Never));
        assert_eq!(parse_cli_expiry(Some("never"), TokenKind::Service), Ok(Expiry::Never));
        assert_eq!(parse_cli_expiry(Some("30"), TokenKind::Service), Ok(Expiry::Days(30)));
        for bad in ["0", "-1", "abc", "99999"] {
            assert!(parse_cli_expiry(Some(bad), TokenKind::Service).is_err(), "{bad}");
        }
    }
}
