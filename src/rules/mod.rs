//! The rule engine: pack schema → compiled rule set → evaluation.
//!
//! - [`schema`]: YAML packs with located errors.
//! - [`transform`]: decoding and normalising transforms, cached per chain.
//! - [`matcher`]: one Hyperscan (or pure-Rust) database per target group.
//! - [`dbcache`]: compiled Hyperscan databases kept on disk between loads.
//! - [`detect`]: native SQLi / XSS / command-injection / path detectors.
//! - [`engine`]: compile packs into a `RuleSet`; evaluate a request.
//! - [`load`]: packs from the `waf` config, inline tests.

pub mod dbcache;
pub mod detect;
pub mod engine;
pub mod load;
pub mod matcher;
pub mod schema;
pub mod transform;
