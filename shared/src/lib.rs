//! The favorites service core, shared by every Lambda function in `functions/`.
//!
//! - [`domain`]: validated types (`Email`, `Password`, `Asset`, `Favorite`…); no I/O, no framework.
//! - [`ports`]: the traits the use cases need from the outside world, named by role.
//! - [`usecases`]: one module per operation, each with its own error enum.
//! - [`adapters`]: ports implemented by a technology (sqlx, bcrypt, JWT).
//! - [`http`]: axum routers per function, request parsing, and the one JSON:API error mapping.
//! - [`config`]: every environment variable, read and validated once per cold start.
//! - [`app`]: wiring: builds the adapters a function needs, once, from a [`config::Config`].
//! - [`secrets`]: secrets from a store, cached, refreshed on rotation; the JWT key ring.
//! - [`telemetry`]: JSON logs through `tracing`.
//! - [`runtime`]: the Lambda runtime loop (Runtime API connections with `TCP_NODELAY`).
//! - [`shutdown`]: on SIGTERM, the last metrics flushed and the pools closed.
//! - [`metrics`]: every custom metric's name and meaning, recorded through the `metrics` facade.

pub mod adapters;
pub mod app;
pub mod config;
pub mod domain;
pub mod http;
pub mod metrics;
pub mod ports;
pub mod runtime;
pub mod secrets;
pub mod shutdown;
pub mod telemetry;
pub mod usecases;
