//! The rule engine (work in progress, not yet wired into the request path):
//! transforms, native detectors and the compiled multi-pattern matcher.

pub mod detect;
pub mod matcher;
pub mod schema;
pub mod transform;
