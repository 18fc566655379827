//! How keygate writes times: RFC 3339 in UTC with whole seconds, for headers,
//! JSON bodies and error messages, and a short form for pages. The RFC 3339
//! form is written digit by digit: it runs on every authenticated request
//! (`Keygate-Token-Expiration`), where chrono's `strftime` machinery showed
//! up in profiles.

use chrono::{Datelike, NaiveDate, NaiveDateTime, Timelike};

/// The range of dates keygate takes as input anywhere: wide enough for any
/// real query, narrow enough that no date arithmetic can overflow and every
/// stored time sorts as text (SQLite) and fits a `TIMESTAMP` (PostgreSQL).
pub const FIRST_DAY: NaiveDate = match NaiveDate::from_ymd_opt(1970, 1, 1) {
    Some(day) => day,
    None => panic!("1970-01-01 exists"),
};
pub const LAST_DAY: NaiveDate = match NaiveDate::from_ymd_opt(9999, 12, 30) {
    Some(day) => day,
    None => panic!("9999-12-30 exists"),
};

/// `YYYY-MM-DD` within [`FIRST_DAY`]–[`LAST_DAY`]; the error says what is wrong.
pub fn parse_day(raw: &str) -> Result<NaiveDate, String> {
    let day = NaiveDate::parse_from_str(raw, "%Y-%m-%d").map_err(|_| format!("`{raw}` is not a date as YYYY-MM-DD"))?;
    check_day(day)
}

/// `day`, if it lies in the range keygate takes.
pub fn check_day(day: NaiveDate) -> Result<NaiveDate, String> {
    if (FIRST_DAY..=LAST_DAY).contains(&day) {
        Ok(day)
    } else {
        Err(format!("{day} is out of range: dates run from {FIRST_DAY} to {LAST_DAY}"))
    }
}

/// `value` as `width` decimal digits, zero-padded, at `out[at..]`.
pub fn put_digits(out: &mut [u8], at: usize, value: u32, width: usize) {
    let mut v = value;
    for i in (0..width).rev() {
        out[at + i] = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// `2026-12-01T10:05:00` into the first 19 bytes of `out`, `separator`
/// between the date and the time. For years 0–9999 (the caller checks).
pub fn put_date_time(at: NaiveDateTime, separator: u8, out: &mut [u8]) {
    put_digits(out, 0, at.year().max(0) as u32, 4);
    put_digits(out, 5, at.month(), 2);
    put_digits(out, 8, at.day(), 2);
    put_digits(out, 11, at.hour(), 2);
    put_digits(out, 14, at.minute(), 2);
    put_digits(out, 17, at.second(), 2);
    for (i, c) in [(4, b'-'), (7, b'-'), (10, separator), (13, b':'), (16, b':')] {
        out[i] = c;
    }
}

/// `2026-12-01T10:05:00Z`. Years outside 0–9999 (which no stored time has)
/// fall back to chrono's own formatting.
pub fn rfc3339(at: NaiveDateTime) -> String {
    let year = at.year();
    if !(0..=9999).contains(&year) {
        return at.and_utc().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    }
    let mut out = [0u8; 20];
    put_date_time(at, b'T', &mut out);
    out[19] = b'Z';
    // Only ASCII digits and separators were written.
    String::from_utf8_lossy(&out).into_owned()
}

/// `2026-12-01 10:05 UTC`, for people.
pub fn display(at: NaiveDateTime) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extreme_dates_are_refused_with_the_range() {
        assert_eq!(parse_day("2026-12-01"), Ok(NaiveDate::from_ymd_opt(2026, 12, 1).unwrap()));
        for extreme in ["+262142-01-01", "-262143-01-01", "10000-01-01", "1969-12-31", "9999-12-31"] {
            let error = parse_day(extreme).unwrap_err();
            assert!(error.contains("out of range") || error.contains("not a date"), "{extreme}: {error}");
        }
        assert!(parse_day("+262142-01-01").unwrap_err().contains("1970-01-01 to 9999-12-30"));
        assert!(parse_day("2026-02-30").unwrap_err().contains("not a date"));
    }

    #[test]
    fn rfc3339_matches_chrono_to_the_second() {
        let samples = [
            NaiveDate::from_ymd_opt(2026, 1, 2).unwrap().and_hms_micro_opt(3, 4, 5, 999_999).unwrap(),
            NaiveDate::from_ymd_opt(1999, 12, 31).unwrap().and_hms_opt(23, 59, 59).unwrap(),
            NaiveDate::from_ymd_opt(9999, 12, 31).unwrap().and_hms_opt(0, 0, 0).unwrap(),
            NaiveDate::from_ymd_opt(12, 3, 4).unwrap().and_hms_opt(5, 6, 7).unwrap(),
            NaiveDate::from_ymd_opt(-5, 3, 4).unwrap().and_hms_opt(5, 6, 7).unwrap(),
            NaiveDate::from_ymd_opt(20_000, 3, 4).unwrap().and_hms_opt(5, 6, 7).unwrap(),
        ];
        for at in samples {
            assert_eq!(rfc3339(at), at.and_utc().to_rfc3339_opts(chrono::SecondsFormat::Secs, true), "{at}");
        }
        assert_eq!(rfc3339(samples[0]), "2026-01-02T03:04:05Z");
    }
}
