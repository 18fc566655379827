//! The bearer gate in front of `/api/`: its exact answers, how it recognises
//! secrets, the per-token rate limits, and the middleware that ties them to
//! every request and its audit row.

pub mod authenticate;
pub mod error;
pub mod middleware;
pub mod ratelimit;
pub mod redis_limit;
pub mod tarpit;
pub mod verify;

pub use authenticate::Authenticated;
pub use error::GateError;
pub use verify::{SecretCheck, Verifier};
