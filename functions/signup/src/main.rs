//! `POST /signup`: wiring only; the logic lives in `shared`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::app::run(shared::app::signup).await
}
