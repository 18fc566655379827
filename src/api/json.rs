//! The API's own answers: JSON errors that name the field (in the one shape
//! of `crate::error::json_error`), strict JSON bodies and query strings, and
//! cursor pagination.

use std::collections::HashMap;

use actix_web::http::{header, StatusCode};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde::Serialize;

use crate::cursor;
use crate::db::DbError;
use crate::error::json_error;

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = super::rules::LIMIT.max;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    pub request_id: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let field = self.field.as_ref().map(|field| ("field", field.as_str().into()));
        let mut response = json_error(self.status, self.code, &self.message, &self.request_id, field);
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        response
    }
}

/// Builds errors that carry the request id.
#[derive(Clone)]
pub struct Errors {
    pub request_id: String,
}

impl Errors {
    pub fn from_request(req: &HttpRequest) -> Self {
        Self { request_id: crate::request_id::of(req) }
    }

    fn error(&self, status: StatusCode, code: &'static str, field: Option<&str>, message: String) -> ApiError {
        ApiError { status, code, message, field: field.map(str::to_owned), request_id: self.request_id.clone() }
    }

    /// Malformed input: wrong type, unknown or missing field, bad syntax.
    pub fn invalid(&self, field: &str, message: impl Into<String>) -> ApiError {
        self.error(StatusCode::BAD_REQUEST, "invalid_request", Some(field), message.into())
    }

    /// Well-formed input whose value is out of range or inconsistent.
    pub fn unprocessable(&self, field: &str, message: impl Into<String>) -> ApiError {
        self.error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", Some(field), message.into())
    }

    pub fn not_found(&self, what: &str) -> ApiError {
        self.error(StatusCode::NOT_FOUND, "not_found", None, format!("No {what} with that id belongs to this seller."))
    }

    pub fn conflict(&self, field: &str, message: impl Into<String>) -> ApiError {
        self.error(StatusCode::CONFLICT, "conflict", Some(field), message.into())
    }

    pub fn internal(&self, error: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %error, request_id = %self.request_id, "API request failed");
        self.error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            None,
            "The server could not complete this request.".into(),
        )
    }

    /// The database failed: 503 with `Retry-After` when it could not be
    /// reached, 500 otherwise.
    pub fn db(&self, error: DbError) -> ApiError {
        if error.is_unavailable() {
            tracing::error!(error = %error, request_id = %self.request_id, "database unavailable");
            return self.error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                None,
                "The database cannot be reached right now. Retry in a moment.".into(),
            );
        }
        self.internal(error)
    }

    /// Parses a JSON body strictly; the error names the offending field.
    pub fn json<T: DeserializeOwned>(&self, req: &HttpRequest, body: &[u8]) -> Result<T, ApiError> {
        let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !content_type.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/json") {
            return Err(self.error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                None,
                "Send the body as JSON with `Content-Type: application/json`.".into(),
            ));
        }
        if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(self.invalid("body", "the body must be a JSON object"));
        }
        let mut deserializer = serde_json::Deserializer::from_slice(body);
        let parsed: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let message = in_plain_words(&inner.to_string());
            // A missing field is named in the message, not the path (which
            // stops at its parent); an unknown field is the path's last part.
            let missing = message.starts_with("missing field").then(|| backticked(&message)).flatten();
            let field = match (missing, path.as_str()) {
                (Some(name), ".") => name,
                (Some(name), parent) => format!("{parent}.{name}"),
                (None, ".") => "body".to_owned(),
                (None, _) => path,
            };
            self.invalid(&field, message)
        })?;
        // Nothing but whitespace may follow the object.
        deserializer
            .end()
            .map_err(|e| self.invalid("body", format!("the body has more after the JSON object ({e})")))?;
        Ok(parsed)
    }

    /// The query string as a map, refusing parameters the endpoint does not take.
    pub fn query(&self, req: &HttpRequest, allowed: &[&str]) -> Result<HashMap<String, String>, ApiError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(req.query_string())
            .map_err(|e| self.invalid("query", format!("the query string is malformed: {e}")))?;
        let mut map = HashMap::new();
        for (key, value) in pairs {
            if !allowed.contains(&key.as_str()) {
                return Err(self.invalid(
                    &key,
                    format!("unknown query parameter `{key}`; this endpoint takes: {}", allowed.join(", ")),
                ));
            }
            if map.insert(key.clone(), value).is_some() {
                return Err(self.invalid(&key, format!("`{key}` is given more than once")));
            }
        }
        Ok(map)
    }

    /// `limit` (1–200, default 50) and `cursor` from a list endpoint's query.
    pub fn pagination(&self, query: &HashMap<String, String>) -> Result<(i64, Option<i64>), ApiError> {
        let limit = match query.get("limit") {
            None => DEFAULT_LIMIT,
            Some(raw) => match raw.parse::<i64>() {
                Ok(n) if super::rules::LIMIT.accepts(n) && raw.bytes().all(|b| b.is_ascii_digit()) => n,
                Ok(_) => return Err(self.unprocessable("limit", format!("limit must be between 1 and {MAX_LIMIT}"))),
                Err(_) => return Err(self.invalid("limit", format!("limit must be a whole number, not `{raw}`"))),
            },
        };
        let cursor = match query.get("cursor") {
            None => None,
            Some(raw) => Some(
                cursor::decode(raw).ok_or_else(|| self.invalid("cursor", "the cursor is not one this API issued"))?,
            ),
        };
        Ok((limit, cursor))
    }
}

/// serde's message without Rust's type names or the parser's position:
/// "invalid type: string \"ten\", expected i64 at line 1 column 40" becomes
/// "expected a whole number, not the string \"ten\"" (issue 18).
fn in_plain_words(message: &str) -> String {
    let message = match message.rfind(" at line ") {
        Some(at) if message[at..].contains(" column ") => &message[..at],
        _ => message,
    };
    let Some((got, expected)) = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "))
        .and_then(|rest| rest.split_once(", expected "))
    else {
        return message.to_owned();
    };
    let expected = match expected {
        // `whole` reads a JSON number first, for integer fields only.
        "i8" | "i16" | "i32" | "i64" | "isize" | "a JSON number" => "a whole number",
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number of 0 or more",
        "f32" | "f64" => "a number",
        "a boolean" => "true or false",
        "a sequence" => "a list",
        e if e.starts_with("struct ") || e == "a map" => "an object",
        other => other,
    };
    format!(
        "expected {expected}, not {}",
        got.replacen("string ", "the string ", 1).replacen("integer ", "the number ", 1)
    )
}

/// A whole number as JSON Schema reads `integer`: `12` and `12.0` alike
/// (the document says `integer`, and for JSON Schema 12.0 is one).
pub fn whole<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    use serde::de::{Error, Unexpected};
    let number = serde_json::Number::deserialize(deserializer)?;
    if let Some(n) = number.as_i64() {
        return Ok(n);
    }
    match number.as_f64() {
        // Integral and well inside i64 (every limit the API takes is).
        Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(f as i64),
        Some(f) => Err(D::Error::invalid_type(Unexpected::Float(f), &"a whole number")),
        None => Err(D::Error::custom("a whole number too large")),
    }
}

/// [`whole`] for a field that may be left out (but is not `null`).
pub fn some_whole<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    whole(deserializer).map(Some)
}

fn backticked(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let end = start + message[start..].find('`')?;
    Some(message[start..end].to_owned())
}

/// `{"data": [...], "next_cursor": "…" | null}`.
pub fn list_response<T: Serialize>(rows: &[T], more: bool, last_id: Option<i64>) -> HttpResponse {
    /// Serialised straight from the rows, without an intermediate `Value`.
    #[derive(Serialize)]
    struct ListBody<'a, T> {
        data: &'a [T],
        next_cursor: Option<String>,
    }
    let next_cursor = if more { last_id.map(cursor::encode) } else { None };
    HttpResponse::Ok().json(ListBody { data: rows, next_cursor })
}

#[cfg(test)]
mod plain_words_tests {
    use super::in_plain_words;

    #[test]
    fn serde_messages_lose_rust_type_names_and_positions() {
        assert_eq!(
            in_plain_words("invalid type: string \"ten\", expected i64 at line 1 column 40"),
            "expected a whole number, not the string \"ten\""
        );
        assert_eq!(
            in_plain_words("invalid value: integer `-1`, expected u32"),
            "expected a whole number of 0 or more, not the number `-1`"
        );
        assert_eq!(in_plain_words("missing field `sku`"), "missing field `sku`");
    }
}
