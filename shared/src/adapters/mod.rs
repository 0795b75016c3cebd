//! Adapters: each port implemented by one technology. Only this module imports sqlx, bcrypt,
//! jsonwebtoken, redis and reqwest; the domain and the use cases know none of them.

pub mod bcrypt;
pub mod enrichment;
pub mod jwt;
pub mod redis;
pub mod sql;
