//! Native detectors: tokenizers that decide whether an input, placed in the
//! contexts an application would use, forms injected structure.

pub mod cmdi;
pub mod path;
pub mod sqli;
pub mod xss;

/// What a detector found, for logs and `rules explain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    /// The context in which the input forms structure (e.g. `sql:single-quoted`).
    pub context: &'static str,
    /// A short description of the structure found (e.g. a token fingerprint).
    pub detail: String,
}
