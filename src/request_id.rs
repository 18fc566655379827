//! Every request's id: made by `tracing-actix-web` with the request's root
//! span, carried by every log line written while serving it, echoed as
//! `X-Request-Id`, and kept in the audit row and JSON error bodies.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, HttpRequest};
use tracing::Span;
use tracing_actix_web::{RequestId, RootSpanBuilder};

/// The id as it is shown: 32 lower-case hex digits.
pub fn text(id: &RequestId) -> String {
    id.simple().to_string()
}

/// The id of `req`, or "" outside the request-id middleware.
pub fn of(req: &HttpRequest) -> String {
    req.extensions().get::<RequestId>().map(text).unwrap_or_default()
}

/// The root span of every request: its id, method and path, nothing more.
/// The API's own record of each request is its audit row; the span is there
/// so that log lines can be tied to a request.
pub struct KeygateRootSpan;

impl RootSpanBuilder for KeygateRootSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let id = request.extensions().get::<RequestId>().map(text).unwrap_or_default();
        tracing::info_span!("request", id = %id, method = %request.method(), path = %request.path())
    }

    /// At debug level, one line per request with its status, inside its
    /// span (so with its id, method and path). Off by default, and then
    /// nearly free: the level is checked before anything is formatted.
    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        let status = match outcome {
            Ok(response) => response.status().as_u16(),
            Err(error) => error.as_response_error().status_code().as_u16(),
        };
        span.in_scope(|| tracing::debug!(status, "answered"));
    }
}

/// Sets `X-Request-Id` on every response (inside `TracingLogger`).
pub async fn echo_header(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let id = req.extensions().get::<RequestId>().copied();
    let mut res = next.call(req).await?;
    if let Some(id) = id {
        let mut buffer = uuid::Uuid::encode_buffer();
        if let Ok(value) = HeaderValue::from_str(id.simple().encode_lower(&mut buffer)) {
            res.headers_mut().insert(HeaderName::from_static("x-request-id"), value);
        }
    }
    Ok(res)
}
