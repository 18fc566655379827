//! The bearer gate in front of `/api/`: its exact answers and how it
//! recognises secrets. The extractor and middleware build on these.

pub mod error;
pub mod verify;

pub use error::GateError;
pub use verify::{SecretCheck, Verifier};
