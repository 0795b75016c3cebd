//! `DELETE /me`: wiring only; the logic lives in `shared`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::lambda::run::<shared::functions::DeleteAccount>().await
}
