//! The AWS resources of the production wiring (two DynamoDB tables, the JWT key and, when
//! given, the database secret), created in the local moto server that `AWS_ENDPOINT_URL` points
//! at; never against a real account: template.yaml owns those. `make test` creates
//! them with the `aws-resources` binary, the benchmarks and tests with [`create`].

use anyhow::{Context, ensure};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TimeToLiveSpecification,
};

/// What the functions are told of the resources, as their environment names them.
pub struct Resources {
    pub idempotency_table: String,
    pub login_throttle_table: String,
    pub jwt_secret_arn: String,
    /// When a database secret was given.
    pub database_secret_arn: Option<String>,
}

/// Creates `<prefix>-idempotency` and `<prefix>-login-throttle` (key `id`, TTL attribute
/// `expires_at`, on demand), the secret `<prefix>/jwt-key` and, with `database_secret`,
/// `<prefix>/database`.
pub async fn create(
    prefix: &str,
    jwt_key: &str,
    database_secret: Option<&serde_json::Value>,
) -> anyhow::Result<Resources> {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    ensure!(
        endpoint.starts_with("http://127.0.0.1:"),
        "AWS_ENDPOINT_URL must point at a local moto server (make test and scripts/bench.sh start one)"
    );
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&config);
    let mut tables = Vec::new();
    for name in ["idempotency", "login-throttle"] {
        let table = format!("{prefix}-{name}");
        dynamodb
            .create_table()
            .table_name(&table)
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("id")
                    .key_type(KeyType::Hash)
                    .build()?,
            )
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("id")
                    .attribute_type(ScalarAttributeType::S)
                    .build()?,
            )
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await
            .with_context(|| format!("creating table {table}"))?;
        dynamodb
            .update_time_to_live()
            .table_name(&table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name("expires_at")
                    .build()?,
            )
            .send()
            .await
            .with_context(|| format!("enabling TTL on {table}"))?;
        tables.push(table);
    }
    let secrets = aws_sdk_secretsmanager::Client::new(&config);
    let jwt_secret_arn = create_secret(&secrets, prefix, "jwt-key", jwt_key.to_string()).await?;
    let database_secret_arn = match database_secret {
        Some(value) => Some(create_secret(&secrets, prefix, "database", value.to_string()).await?),
        None => None,
    };
    let [idempotency_table, login_throttle_table] = <[String; 2]>::try_from(tables).expect("two tables");
    Ok(Resources {
        idempotency_table,
        login_throttle_table,
        jwt_secret_arn,
        database_secret_arn,
    })
}

/// The secret `<prefix>/<name>`; its ARN.
async fn create_secret(
    secrets: &aws_sdk_secretsmanager::Client,
    prefix: &str,
    name: &str,
    value: String,
) -> anyhow::Result<String> {
    let created = secrets
        .create_secret()
        .name(format!("{prefix}/{name}"))
        .secret_string(value)
        .send()
        .await
        .with_context(|| format!("creating secret {prefix}/{name}"))?;
    created.arn.context("a created secret without an ARN")
}
