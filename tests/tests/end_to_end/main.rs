//! The end-to-end tests, in one test binary (one link of the dependency set instead of six).
//!
//! Over HTTP against the functions under the Lambda runtime emulator that `make test` starts
//! (`E2E_BASE_URL`): `favorites`, `idempotency`, `users`, `request_ids`, `logs`. Against a
//! Runtime API stand-in, one function binary at a time: `lifecycle`, and `deployed` (each
//! function with exactly the environment template.yaml gives it, pointed at local stand-ins).
//! `stack`: the deployed shape (`make stack`) refusing what AWS would refuse.
//!
//! `make test` runs `favorites`, `idempotency`, `users` and `request_ids` twice: against
//! `cargo lambda watch`, then against the deployed shape (`E2E_BASE_URL` its URL).

mod deployed;
mod favorites;
mod idempotency;
mod lifecycle;
mod logs;
mod request_ids;
mod stack;
mod users;
