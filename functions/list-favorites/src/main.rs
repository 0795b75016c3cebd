//! `GET /favorites`: wiring only; the logic lives in `shared`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::app::run_streaming(shared::app::list_favorites).await
}
