//! keygate: API tokens, a bearer gate and an audit log for a seller portal.
//!
//! The ground floor (`time`, `cursor`, `bounded`, `remote`, `request_id`,
//! `error`, `db`, `limits`, `hashing`) imports nothing above it; the rooms
//! (`tokens`, `audit`, `accounts`, `sessions`, `shop`) sit on it; `gate`,
//! `api` and `portal` serve them over HTTP through `state`; only `startup`
//! (and `cli`, for the commands) wires everything together.

pub mod accounts;
pub mod api;
pub mod apispec;
pub mod assertion;
pub mod audit;
pub mod bounded;
pub mod cli;
pub mod clock;
pub mod config;
pub mod cursor;
pub mod db;
pub mod error;
pub mod gate;
pub mod gateway;
pub mod hashing;
pub mod limits;
pub mod mail;
pub mod metrics;
pub mod oauth;
pub mod oauth_endpoints;
pub mod oidc;
pub mod panics;
pub mod portal;
pub mod remote;
pub mod request_id;
pub mod secret_scanning;
pub mod secrets;
pub mod sessions;
pub mod shop;
pub mod sign_in;
pub mod startup;
pub mod state;
pub mod suspension;
pub mod telemetry;
pub mod time;
pub mod tokens;
