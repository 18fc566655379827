//! Errors of the portal layer and how each becomes a page. (The API answers
//! in JSON, the gate with its own table; neither sees this type.)

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};

use crate::db::DbError;
use crate::hashing::HashError;
use crate::tokens::store::TokenStoreError;

/// The page of every portal error (404, 500, a form that cannot be shown).
#[derive(askama::Template)]
#[template(path = "error.html")]
pub struct ErrorPage<'a> {
    pub title: &'a str,
    pub message: &'a str,
    pub status: u16,
}

#[derive(Debug, thiserror::Error)]
pub enum PortalError {
    #[error("page not found")]
    NotFound,
    /// The query string does not fit the page (a parameter given twice…).
    #[error("malformed query string")]
    BadQuery,
    #[error("sign-in required")]
    LoginRequired { next: String },
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("template error: {0}")]
    Template(#[from] askama::Error),
    #[error(transparent)]
    Hash(#[from] HashError),
    #[error("http error: {0}")]
    Http(#[from] actix_web::error::HttpError),
}

impl From<diesel::result::Error> for PortalError {
    fn from(e: diesel::result::Error) -> Self {
        PortalError::Db(e.into())
    }
}

impl PortalError {
    /// The argon2 queue is full, or the database cannot be reached: retry soon.
    fn is_overloaded(&self) -> bool {
        match self {
            PortalError::Hash(HashError::Busy) => true,
            PortalError::Db(e) => e.is_unavailable(),
            _ => false,
        }
    }

    /// A token store's failure that is not the seller's to fix.
    pub fn from_store(error: TokenStoreError) -> Self {
        match error {
            TokenStoreError::Db(e) => PortalError::Db(e),
            TokenStoreError::Hash(e) => PortalError::Hash(e),
            TokenStoreError::NotFound => PortalError::NotFound,
            other => PortalError::Db(DbError::Task(other.to_string())),
        }
    }
}

impl PortalError {
    fn page(status: StatusCode, title: &str, message: &str) -> HttpResponse {
        let page = ErrorPage { title, message, status: status.as_u16() };
        let body = askama::Template::render(&page).unwrap_or_else(|_| message.to_owned());
        HttpResponse::build(status).content_type("text/html; charset=utf-8").body(body)
    }
}

impl ResponseError for PortalError {
    fn status_code(&self) -> StatusCode {
        match self {
            PortalError::NotFound => StatusCode::NOT_FOUND,
            PortalError::BadQuery => StatusCode::BAD_REQUEST,
            PortalError::LoginRequired { .. } => StatusCode::SEE_OTHER,
            other if other.is_overloaded() => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            PortalError::NotFound => Self::page(
                StatusCode::NOT_FOUND,
                "Not found",
                "There is nothing here, or it belongs to another account.",
            ),
            PortalError::BadQuery => Self::page(
                StatusCode::BAD_REQUEST,
                "Bad address",
                "The address of this page is malformed (a parameter is given twice, or has a value it cannot take). Open the page again from the navigation.",
            ),
            PortalError::LoginRequired { next } => {
                let location = format!("/login?next={}", crate::portal::forms::percent_encode(next));
                HttpResponse::SeeOther().insert_header((header::LOCATION, location)).finish()
            }
            other if other.is_overloaded() => {
                tracing::warn!(error = %other, "portal request refused: busy");
                let mut page = Self::page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Busy",
                    "The server is too busy to answer right now. Nothing was changed; please try again in a few seconds.",
                );
                page.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("2"));
                page
            }
            other => {
                tracing::error!(error = %other, "portal request failed");
                Self::page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "The server could not complete this request. Please try again in a moment.",
                )
            }
        }
    }
}
