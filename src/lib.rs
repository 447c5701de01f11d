//! Portcullis: a reverse-proxy security gateway (WAF).
//!
//! Layout, in the order a request meets it:
//!
//! - [`server`]: listeners, TLS ([`tls`]), accept loop with the connection
//!   cap, idle keep-alive timeout, reload, graceful drain.
//! - [`framing`]: a byte-level HTTP/1 framing guard under hyper that flags
//!   what hyper normalises away (CL+TE, duplicate Content-Length).
//! - [`gateway`]: the phase driver — `early_request → check_protocol →
//!   (headers) → read_body → (body, decide) → forward → respond → log`.
//!   The `log` phase always runs, from the drop of the response body.
//! - [`body`]: bounded request-body prefix, size cap, deadlines, min rate.
//! - [`upstream`]: pooled client, routes, hop-by-hop and forwarding headers.
//! - [`respond`]: the one place refusals become responses.
//! - [`admin`]: side-port API (health, metrics, token-protected control).
//! - [`incidents`]: correlation of events into incidents, their workflow,
//!   auto-block.
//! - [`notify`]: signed webhook notifications for incidents ([`severity`]).
//! - [`metrics`], [`accesslog`], [`request_id`], [`config`], [`demo`].

pub mod accesslog;
pub mod admin;
pub mod admin_store;
pub mod body;
pub mod config;
pub mod demo;
pub mod framing;
pub mod ftw;
pub mod gateway;
pub mod geo;
pub mod identity;
pub mod incidents;
pub mod metrics;
pub mod notify;
pub mod privacy;
pub mod request_id;
pub mod request_view;
pub mod respond;
pub mod rules;
pub mod security;
pub mod server;
pub mod severity;
pub mod store;
pub mod tls;
pub mod upstream;
