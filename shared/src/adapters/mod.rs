//! Adapters: each port implemented by one technology. Only this module imports sqlx, bcrypt,
//! jsonwebtoken, redis, reqwest, the AWS SDK and the EMF metrics crate; the domain and the use
//! cases know none of them.

pub mod bcrypt;
pub mod dynamodb;
pub mod emf;
pub mod enrichment;
pub mod jwt;
pub mod memory;
pub mod redis;
pub mod secrets_manager;
pub mod sql;
