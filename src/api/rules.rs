//! The limits of every API input, declared once. The handlers check values
//! with these rules and the OpenAPI document publishes the same rules as
//! JSON Schema (`minLength`, `pattern`, `minimum`, …), so the two cannot
//! drift: the tests below hold each rule's Rust check and its pattern to the
//! same answers.

use serde_json::{json, Value};

/// ASCII whitespace as JSON Schema's and Rust's readings agree on it.
pub const SPACE: &[char] = &[' ', '\t', '\n', '\r', '\u{b}', '\u{c}'];

/// A string rule: a length in characters and what the characters may be.
pub struct Text {
    pub min: usize,
    pub max: usize,
    /// The ECMA-262 pattern the document publishes; `accepts` is its Rust reading.
    pub pattern: Option<&'static str>,
    /// The check beyond the length, exactly the pattern.
    check: fn(&str) -> bool,
    /// The JSON Schema `format`, when there is one.
    pub format: Option<&'static str>,
    /// What a client reads when it is refused.
    pub says: &'static str,
}

impl Text {
    pub fn accepts(&self, value: &str) -> bool {
        let chars = value.chars().count();
        (self.min..=self.max).contains(&chars) && (self.check)(value)
    }

    pub fn schema(&self) -> Value {
        let mut schema =
            json!({"type": "string", "minLength": self.min, "maxLength": self.max, "description": self.says});
        if let Some(pattern) = self.pattern {
            schema["pattern"] = pattern.into();
        }
        if let Some(format) = self.format {
            schema["format"] = format.into();
        }
        schema
    }
}

/// A whole number in a range.
pub struct Int {
    pub min: i64,
    pub max: i64,
    pub says: &'static str,
}

impl Int {
    pub fn accepts(&self, value: i64) -> bool {
        (self.min..=self.max).contains(&value)
    }

    pub fn schema(&self) -> Value {
        json!({"type": "integer", "format": "int64", "minimum": self.min, "maximum": self.max, "description": self.says})
    }
}

/// One of a fixed list of strings.
pub fn one_of(values: &[&str], says: &str) -> Value {
    json!({"type": "string", "enum": values, "description": says})
}

/// No NUL: PostgreSQL text cannot hold it (schemathesis found the 500).
fn no_nul(value: &str) -> bool {
    !value.contains('\0')
}

fn not_blank(value: &str) -> bool {
    no_nul(value) && value.chars().any(|c| !SPACE.contains(&c))
}

fn sku_chars(value: &str) -> bool {
    value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

fn currency_chars(value: &str) -> bool {
    value.bytes().all(|b| b.is_ascii_uppercase())
}

/// Printable ASCII but `@` and space (`!`–`?`, `A`–`~`).
fn address_char(c: char) -> bool {
    matches!(c, '!'..='?' | 'A'..='~')
}

fn email_shape(value: &str) -> bool {
    let Some((local, domain)) = value.split_once('@') else { return false };
    !local.is_empty()
        && local.chars().all(address_char)
        && !domain.is_empty()
        && domain.chars().all(address_char)
        && !domain.starts_with('.')
        && !domain.ends_with('.')
}

/// `YYYY-MM-DD`, the year 1970 or later (see `time::FIRST_DAY`).
fn day_shape(value: &str) -> bool {
    let b = value.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| if i == 4 || i == 7 { *c == b'-' } else { c.is_ascii_digit() })
        && &value[..4] >= "1970"
}

pub const SKU: Text = Text {
    min: 1,
    max: 64,
    pattern: Some("^[A-Za-z0-9._-]+$"),
    check: sku_chars,
    format: None,
    says: "a SKU is 1–64 characters of letters, digits, `-`, `_` and `.`",
};

pub const NAME: Text = Text {
    min: 1,
    max: 200,
    pattern: Some("^[^\\x00]*[^ \\t\\n\\r\\x0b\\x0c\\x00][^\\x00]*$"),
    check: not_blank,
    format: None,
    says: "name is 1–200 characters, not all spaces",
};

pub const DESCRIPTION: Text = Text {
    min: 0,
    max: 2_000,
    pattern: Some("^[^\\x00]*$"),
    check: no_nul,
    format: None,
    says: "description is limited to 2000 characters",
};

pub const CURRENCY: Text = Text {
    min: 3,
    max: 3,
    pattern: Some("^[A-Z]{3}$"),
    check: currency_chars,
    format: None,
    says: "currency is an ISO 4217 code such as EUR",
};

pub const LOCATION: Text = Text {
    min: 1,
    max: 64,
    pattern: Some("^[^\\x00]*[^ \\t\\n\\r\\x0b\\x0c\\x00][^\\x00]*$"),
    check: not_blank,
    format: None,
    says: "location is 1–64 characters, not all spaces",
};

pub const CUSTOMER_EMAIL: Text = Text {
    min: 3,
    max: 254,
    pattern: Some("^[!-?A-~]+@[!-\\-/-?A-~]([!-?A-~]*[!-\\-/-?A-~])?$"),
    check: email_shape,
    format: None,
    says: "customer_email is an address of printable ASCII such as buyer@example.com (stored lower-cased)",
};

pub const DAY: Text = Text {
    min: 10,
    max: 10,
    pattern: Some("^(19[7-9][0-9]|[2-9][0-9]{3})-[0-9]{2}-[0-9]{2}$"),
    check: day_shape,
    format: Some("date"),
    says: "a date as YYYY-MM-DD, 1970-01-01 to 9999-12-30",
};

/// What `cursor::decode` takes, spelled as a pattern: `v1:` and 1–18 digits
/// in URL-safe base64 without padding (`djE6` is `v1:`; each group of four
/// characters is three digits, the tail one or two).
pub const CURSOR: Text = Text {
    min: 6,
    max: 28,
    pattern: Some(concat!(
        "^djE6(?:(?:[MN][DTjz]|O[DT])[AEIMQUYcgk][w-z0-5]){0,5}",
        "(?:(?:[MN][DTjz]|O[DT])[AEIMQUYcgk][w-z0-5]|[MN][AQgw]|O[AQ]|(?:[MN][DTjz]|O[DT])[AEIMQUYcgk])$"
    )),
    check: cursor_shape,
    format: None,
    says: "the `next_cursor` of the previous page",
};

fn cursor_shape(value: &str) -> bool {
    crate::cursor::decode(value).is_some()
}

pub const LIMIT: Int = Int { min: 1, max: 200, says: "rows per page, 1–200 (default 50)" };
pub const PRICE_CENTS: Int = Int { min: 0, max: 100_000_000, says: "price_cents is 0 to 100000000" };
pub const LINE_QUANTITY: Int = Int { min: 1, max: 10_000, says: "quantity is 1 to 10000" };
pub const STOCK_QUANTITY: Int = Int { min: 0, max: 10_000_000, says: "quantity is 0 to 10000000" };
/// Row ids in paths: any 64-bit number; one that names nothing is a 404.
pub const ID: Int = Int { min: i64::MIN, max: i64::MAX, says: "the row's id" };
pub const MAX_LINES: usize = 100;

#[cfg(test)]
mod tests {
    use super::*;

    /// Each rule's Rust check and its published pattern (read as schemathesis
    /// and JSON Schema validators read it) give the same answer.
    #[test]
    fn every_pattern_says_what_its_check_does() {
        let samples: &[&str] = &[
            "",
            " ",
            "\t",
            "a",
            " a ",
            "MUG-1",
            "mug_1.x",
            "a b",
            "é",
            "EUR",
            "eur",
            "EURO",
            "E1R",
            "EUR\n",
            "x@y",
            "a@b.c",
            "A@B",
            "a@.b",
            "a@b.",
            "@b",
            "a@",
            "a@b@c",
            "a b@c",
            "a@b\n",
            "ü@x.de",
            "1970-01-01",
            "1969-12-31",
            "2026-1-05",
            "2026-01-05\n",
            "99999-01-01",
            "0001-01-01",
            "djE6MQ",
            "djE6MTI",
            "djE6MTIz",
            "djE6MTIzNDU2Nzg5MDEyMzQ1Njc4",
            "djE6",
            "djE6LTE",
            "djE6Kw",
            "djE6OQ",
            "djE6Oj",
            "djE6MR",
            "\u{2003}",
            "\u{1c}",
            "x\u{b}",
        ];
        let long: String = "a".repeat(70);
        let rules = [
            ("SKU", &SKU),
            ("NAME", &NAME),
            ("DESCRIPTION", &DESCRIPTION),
            ("CURRENCY", &CURRENCY),
            ("LOCATION", &LOCATION),
            ("CUSTOMER_EMAIL", &CUSTOMER_EMAIL),
            ("DAY", &DAY),
            ("CURSOR", &CURSOR),
        ];
        for (name, rule) in rules {
            let pattern = regex::Regex::new(rule.pattern.unwrap()).unwrap();
            for sample in samples.iter().copied().chain([long.as_str()]) {
                let chars = sample.chars().count();
                let by_schema = (rule.min..=rule.max).contains(&chars) && pattern.is_match(sample);
                assert_eq!(rule.accepts(sample), by_schema, "{name} on {sample:?}");
            }
        }
        for id in [0, 1, 9, 10, 99, 123_456, 999_999_999_999_999_999] {
            let cursor = crate::cursor::encode(id);
            assert!(CURSOR.accepts(&cursor), "{cursor}");
            assert!(regex::Regex::new(CURSOR.pattern.unwrap()).unwrap().is_match(&cursor), "{cursor}");
        }
    }
}
