//! How keygate writes times: RFC 3339 in UTC with whole seconds, for headers,
//! JSON bodies and error messages, and a short form for pages. The RFC 3339
//! form is written digit by digit: it runs on every authenticated request
//! (`Keygate-Token-Expiration`), where chrono's `strftime` machinery showed
//! up in profiles.

use chrono::{Datelike, NaiveDateTime, Timelike};

/// `2026-12-01T10:05:00Z`. Years outside 0–9999 (which no stored time has)
/// fall back to chrono's own formatting.
pub fn rfc3339(at: NaiveDateTime) -> String {
    let year = at.year();
    if !(0..=9999).contains(&year) {
        return at.and_utc().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    }
    let mut out = [0u8; 20];
    let mut put = |at: usize, value: u32, width: usize| {
        let mut v = value;
        for i in (0..width).rev() {
            out[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, year as u32, 4);
    put(5, at.month(), 2);
    put(8, at.day(), 2);
    put(11, at.hour(), 2);
    put(14, at.minute(), 2);
    put(17, at.second(), 2);
    out[4] = b'-';
    out[7] = b'-';
    out[10] = b'T';
    out[13] = b':';
    out[16] = b':';
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
    use chrono::NaiveDate;

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
