//! The AWS resources the functions use, created in the local moto server `AWS_ENDPOINT_URL`
//! points at (never a real account: template.yaml owns those), for `make test`:
//!
//!     aws-resources PREFIX JWT_KEY [DATABASE_SECRET_JSON]
//!
//! creates the tables PREFIX-idempotency and PREFIX-login-throttle (key `id`, TTL attribute
//! `expires_at`, on demand), the secret PREFIX/jwt-key and, when given, PREFIX/database; then
//! prints the functions' variables for them as shell assignments:
//!
//!     IDEMPOTENCY_TABLE=…  LOGIN_THROTTLE_TABLE=…  JWT_SECRET_ARN=…  [DATABASE_SECRET_ARN=…]

use anyhow::Context;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (prefix, jwt_key, database) = match args.as_slice() {
        [prefix, key] => (prefix, key, None),
        [prefix, key, database] => (prefix, key, Some(database)),
        _ => anyhow::bail!("usage: aws-resources PREFIX JWT_KEY [DATABASE_SECRET_JSON]"),
    };
    let database: Option<serde_json::Value> = database
        .map(|json| serde_json::from_str(json).context("DATABASE_SECRET_JSON is not JSON"))
        .transpose()?;
    let resources = e2e::aws::create(prefix, jwt_key, database.as_ref()).await?;
    println!("IDEMPOTENCY_TABLE={}", resources.idempotency_table);
    println!("LOGIN_THROTTLE_TABLE={}", resources.login_throttle_table);
    println!("JWT_SECRET_ARN={}", resources.jwt_secret_arn);
    if let Some(arn) = resources.database_secret_arn {
        println!("DATABASE_SECRET_ARN={arn}");
    }
    Ok(())
}
