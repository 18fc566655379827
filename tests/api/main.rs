//! One integration binary: every test spawns its own app on a fresh database.

mod accounts;
mod admin;
mod apps_portal;
mod browser;
mod cli;
mod contract;
mod faults;
mod forms_and_lists;
mod gate;
mod hardening;
mod helpers;
mod instances;
mod interop;
mod isolation;
mod logs;
mod oauth;
mod openapi;
mod operating;
mod pages;
mod portal_bugs;
mod postgres;
mod seller_api;
mod smtp;
mod token_safety;
mod tokens;
mod transport;
