//! The end-to-end tests, in one test binary (one link of the dependency set instead of seven).
//!
//! In process (`e2e::app::spawn_app`: every function's router, routed as template.yaml routes
//! it, against a fresh database and the test services): `favorites`, `idempotency`, `users`.
//! Over HTTP through a Lambda runtime emulator (`E2E_BASE_URL`): `smoke` (every function once),
//! `request_ids`, `logs`. Against a Runtime API stand-in, one function binary at a time:
//! `lifecycle`, and `deployed` (each function with exactly the environment template.yaml gives
//! it, pointed at local stand-ins). `stack`: the deployed shape (`make stack`) refusing what
//! AWS would refuse.
//!
//! `make test` runs `smoke` and `request_ids` twice: against `cargo lambda watch`, then against
//! the deployed shape (`E2E_BASE_URL` its URL).

mod deployed;
mod favorites;
mod idempotency;
mod lifecycle;
mod logs;
mod request_ids;
mod smoke;
mod stack;
mod users;
