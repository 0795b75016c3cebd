//! The integration tests of `shared`, in one test binary (each module was a binary of its own;
//! one binary links the dependency set once instead of nine times). Services they need:
//! TEST_DATABASE_URL, TEST_REDIS_URL, AWS_ENDPOINT_URL (moto) and the private TLS Postgres,
//! all started by `make test`.
//!
//! - `sql_contract`: both SQL adapters against the same contract
//! - `cache`: the favorites cache against Postgres and Redis, under concurrency and faults
//! - `enrichment`: the streamed list's enrichment against a fake service with faults
//! - `aws`: DynamoDB and Secrets Manager adapters against moto
//! - `rds`: Postgres as RDS Proxy and RDS give it (no pinning, TLS, password rotation)
//! - `events`: every `events/` file through its function's router; the database down
//! - `faults`: mixed load while every backend of the database is terminated once a second
//! - `runtime`: the runtime loop against the Runtime API stand-in
//! - `nodelay`: TCP_NODELAY on every client's connections
//! - `template`: template.yaml against the code
//! - `support`: fresh databases, users, AWS resources for the tests above

mod aws;
mod cache;
mod enrichment;
mod events;
mod faults;
mod nodelay;
mod rds;
mod runtime;
mod sql_contract;
mod support;
mod template;
