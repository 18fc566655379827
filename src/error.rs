//! The one shape of every JSON refusal the API sends, whoever refuses: the
//! gate (401/403/429/503), routing (404/405) and the handlers (400/409/413/
//! 415/422/500). `{"error": CODE, "message": TEXT, "request_id": ID, …}`,
//! never cached. The OpenAPI document's `Error` schema describes it.

use actix_web::body::BoxBody;
use actix_web::dev::ServiceResponse;
use actix_web::http::{header, StatusCode};
use actix_web::HttpResponse;
use serde_json::{Map, Value};

/// A JSON refusal: the status, the stable code, a sentence that says what to
/// do, and any fields of that error (`field`, `required_scope`, …).
pub fn json_error(
    status: StatusCode,
    code: &str,
    message: &str,
    request_id: &str,
    extra: impl IntoIterator<Item = (&'static str, Value)>,
) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(refusal_body(code, message, request_id, extra))
}

/// The body of a JSON refusal.
pub fn refusal_body(
    code: &str,
    message: &str,
    request_id: &str,
    extra: impl IntoIterator<Item = (&'static str, Value)>,
) -> Value {
    let mut body = Map::with_capacity(4);
    body.insert("error".into(), Value::from(code));
    body.insert("message".into(), Value::from(message));
    body.insert("request_id".into(), Value::from(request_id));
    for (key, value) in extra {
        body.insert(key.into(), value);
    }
    Value::Object(body)
}

/// `value` as JSON text of ASCII only (`\uXXXX` escapes), fit for a header.
pub fn ascii_json(value: &Value) -> String {
    let text = value.to_string();
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

/// An answer actix made itself (a body over the limit, a payload that
/// broke off, …) in plain text, as the JSON refusal; every other answer as
/// it is. The API's handlers run behind this (see `gate::middleware`).
pub fn as_json_refusal(response: ServiceResponse<BoxBody>, request_id: &str) -> ServiceResponse<BoxBody> {
    let status = response.status();
    let refused = status.is_client_error() || status.is_server_error();
    let is_json =
        response.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !refused || is_json {
        return response;
    }
    let detail = response.response().error().map(|e| e.to_string()).unwrap_or_default();
    let (code, message) = actix_refusal(status, &detail);
    let (req, _) = response.into_parts();
    ServiceResponse::new(req, json_error(status, code, &message, request_id, []))
}

/// The code and sentence for a refusal actix made, by status.
pub fn actix_refusal(status: StatusCode, detail: &str) -> (&'static str, String) {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            ("payload_too_large", format!("The body is over the {} KiB limit.", MAX_BODY_BYTES / 1024))
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ("unsupported_media_type", "Send the body as JSON with `Content-Type: application/json`.".into())
        }
        StatusCode::NOT_FOUND => ("not_found", "There is no API endpoint at this path.".into()),
        StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", "This path does not accept that method.".into()),
        s if s.is_client_error() => ("invalid_request", format!("The request could not be read: {detail}.")),
        _ => ("internal_error", "The server could not complete this request.".into()),
    }
}

/// actix's default body limit for `web::Bytes`, which the handlers read.
pub const MAX_BODY_BYTES: usize = 262_144;

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_web::test]
    async fn every_refusal_has_the_same_shape() {
        let response = json_error(StatusCode::CONFLICT, "conflict", "Taken.", "req-1", [("field", "sku".into())]);
        assert_eq!(response.status(), StatusCode::CONFLICT);
        assert_eq!(response.headers().get(header::CACHE_CONTROL).unwrap(), "no-store");
        let bytes = actix_web::body::to_bytes(response.into_body()).await.unwrap();
        let json: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"error": "conflict", "message": "Taken.", "request_id": "req-1", "field": "sku"})
        );
    }
}
