//! Applies the database migrations: invoked once per deploy, or run by hand with
//! `DATABASE_URL=… cargo run -p migrate`. Wiring only; the logic lives in `shared`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::lambda::run_migrate().await
}
