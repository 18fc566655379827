//! The stylesheet and script, compiled into the binary so it runs from anywhere.

use actix_web::http::header;
use actix_web::{web, HttpResponse};

use super::error::PortalError;

const FILES: &[(&str, &str, &str)] = &[
    ("css/app.css", "text/css; charset=utf-8", include_str!("../../static/css/app.css")),
    ("js/app.js", "text/javascript; charset=utf-8", include_str!("../../static/js/app.js")),
];

pub async fn serve(path: web::Path<String>) -> Result<HttpResponse, PortalError> {
    let (_, content_type, body) =
        FILES.iter().find(|(name, _, _)| *name == path.as_str()).ok_or(PortalError::NotFound)?;
    Ok(HttpResponse::Ok()
        .content_type(*content_type)
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(*body))
}
