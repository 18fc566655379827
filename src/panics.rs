//! A panic inside a request still gets an answer. Without this the worker
//! drops the connection, the client sees nothing, and an API request has no
//! audit row. The gate catches panics around the API's handlers itself (so
//! that it can write the row); [`guard`] catches the rest.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{HttpResponse, ResponseError};
use futures_util::FutureExt;

/// Runs `work`; a panic comes back as its message.
pub async fn catch<F: Future>(work: F) -> Result<F::Output, String> {
    AssertUnwindSafe(work).catch_unwind().await.map_err(|panic| message(&*panic))
}

fn message(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// What a panicked request is answered with: the request is gone with the
/// panic, so actix renders this error as the answer. JSON under `/api/`
/// (with the request id, as every API error), a page elsewhere.
#[derive(Debug)]
pub struct Panicked {
    pub api: bool,
    pub request_id: String,
}

impl std::fmt::Display for Panicked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request failed inside the server")
    }
}

impl ResponseError for Panicked {
    fn status_code(&self) -> StatusCode {
        StatusCode::INTERNAL_SERVER_ERROR
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = if self.api {
            crate::error::json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "The server could not complete this request.",
                &self.request_id,
                [],
            )
        } else {
            HttpResponse::InternalServerError()
                .content_type("text/html; charset=utf-8")
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .body(include_str!("../templates/panic.html"))
        };
        if let Ok(id) = HeaderValue::from_str(&self.request_id) {
            response.headers_mut().insert(header::HeaderName::from_static("x-request-id"), id);
        }
        response
    }
}

/// The outermost catch, for every route the gate does not cover.
pub async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let api = req.path().starts_with("/api/");
    let request_id = crate::request_id::of(req.request());
    match catch(next.call(req)).await {
        Ok(answer) => answer.map(ServiceResponse::map_into_boxed_body),
        Err(why) => {
            tracing::error!(panic = %why, "a request panicked");
            Err(Panicked { api, request_id }.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::middleware::from_fn;
    use actix_web::{web, App, HttpServer};

    async fn boom() -> HttpResponse {
        panic!("boom")
    }

    #[actix_web::test]
    async fn a_panicking_page_is_still_answered() {
        let server = HttpServer::new(|| {
            App::new()
                .wrap(from_fn(guard))
                .route("/boom", web::get().to(boom))
                .route("/ok", web::get().to(HttpResponse::Ok))
        })
        .workers(1)
        .bind("127.0.0.1:0")
        .unwrap();
        let port = server.addrs()[0].port();
        let server = server.run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        let client = reqwest::Client::new();
        let answer = client.get(format!("http://127.0.0.1:{port}/boom")).send().await.unwrap();
        assert_eq!(answer.status(), 500);
        assert!(answer.text().await.unwrap().contains("Something went wrong"));
        // The worker survived the panic.
        assert_eq!(client.get(format!("http://127.0.0.1:{port}/ok")).send().await.unwrap().status(), 200);
        handle.stop(false).await;
    }
}
