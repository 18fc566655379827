//! The one shape of every JSON refusal the API sends, whoever refuses: the
//! gate (401/403/429/503), routing (404/405) and the handlers (400/409/413/
//! 415/422/500). `{"error": CODE, "message": TEXT, "request_id": ID, …}`,
//! never cached. The OpenAPI document's `Error` schema describes it.

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
    let mut body = Map::with_capacity(4);
    body.insert("error".into(), Value::from(code));
    body.insert("message".into(), Value::from(message));
    body.insert("request_id".into(), Value::from(request_id));
    for (key, value) in extra {
        body.insert(key.into(), value);
    }
    HttpResponse::build(status).insert_header((header::CACHE_CONTROL, "no-store")).json(Value::Object(body))
}

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
