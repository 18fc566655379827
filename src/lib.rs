//! keygate: API tokens, a bearer gate and an audit log for a seller portal.

pub mod accounts;
pub mod api;
pub mod audit;
pub mod cli;
pub mod client;
pub mod config;
pub mod db;
pub mod error;
pub mod gate;
pub mod hashing;
pub mod portal;
pub mod sessions;
pub mod shop;
pub mod startup;
pub mod telemetry;
pub mod tokens;
