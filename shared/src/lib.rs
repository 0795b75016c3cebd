//! The favorites service core, shared by every Lambda function in `functions/`.
//!
//! - [`domain`]: validated types (`Email`, `Password`, `Asset`, `Favorite`…); no I/O, no framework.
//! - [`ports`]: the traits the use cases need from the outside world, named by role.
//! - [`usecases`]: one module per operation, each with its own error enum.
//! - [`adapters`]: ports implemented by a technology (sqlx, bcrypt, JWT).
//! - [`http`]: axum routers per function, request parsing, authentication, and the one
//!   JSON:API error mapping.
//! - [`config`]: every environment variable, one settings struct per concern; parsing only reads.
//! - [`functions`]: per Lambda, the concerns it reads and the router it serves.
//! - [`wiring`]: builds each adapter from its settings, once per cold start.
//! - [`lambda`]: the lifecycle every function shares: init, cold start, runtime loop.
//! - [`runtime`]: the Lambda runtime loop itself (ours, for TCP_NODELAY on the Runtime API).
//! - [`development`]: the embedded default's data directory and development key.
//! - [`secrets`]: where a secret comes from, and the cached, rotating handle on it.
//! - [`telemetry`]: JSON logs through `tracing`.
//! - [`runtime`]: the Lambda runtime loop (Runtime API connections with `TCP_NODELAY`).
//! - [`shutdown`]: on SIGTERM, the last metrics flushed and the pools closed.
//! - [`metrics`]: every custom metric's name and meaning, recorded through the `metrics` facade.

pub mod adapters;
pub mod config;
pub mod development;
pub mod domain;
pub mod functions;
pub mod http;
pub mod lambda;
pub mod metrics;
pub mod ports;
pub mod runtime;
pub mod secrets;
pub mod shutdown;
pub mod telemetry;
pub mod usecases;
pub mod wiring;
