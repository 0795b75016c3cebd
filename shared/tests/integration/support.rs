//! Test harness: fresh, migrated databases for the contract tests, one per test.
//!
//! Postgres: a new database `favorites_test_<uuid>` created from `TEST_DATABASE_URL` (an
//! admin URL; `make test` provides one, starting a throwaway server where none runs) and
//! dropped when the test ends. Nothing else on that server is touched.
//! SQLite: a new file in the temp directory.

#![allow(dead_code)]

use std::str::FromStr;

use shared::adapters::sql::Database;
use shared::config::DatabaseSettings;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};

pub struct TestDatabase {
    pub database: Database,
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    Postgres { admin_url: String, name: String },
    Sqlite { path: std::path::PathBuf },
}

pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!("TEST_DATABASE_URL is not set: run `make test`, or point it at a Postgres server where tests may create databases")
    })
}

fn config(url: &str) -> DatabaseSettings {
    DatabaseSettings::for_url(url)
}

/// A new user with a unique email, for tests that need an owner for favorites.
pub async fn a_user(db: &Database) -> shared::domain::UserId {
    use shared::domain::{Email, PasswordHash, User, UserId};
    let user = User {
        id: UserId::generate(),
        email: Email::parse(&format!("{}@example.com", uuid::Uuid::new_v4())).unwrap(),
        password_hash: PasswordHash::new("$2b$04$hash".into()),
    };
    db.users().insert_user(&user).await.unwrap();
    user.id
}

pub async fn postgres() -> TestDatabase {
    let admin_url = admin_url();
    let name = format!("favorites_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&admin_url)
        .await
        .expect("connecting to TEST_DATABASE_URL");
    sqlx::query(&format!("create database {name}"))
        .execute(&mut admin)
        .await
        .expect("creating a test database");
    admin.close().await.ok();
    let options = PgConnectOptions::from_str(&admin_url).unwrap().database(&name);
    let url = options.to_url_lossy().to_string();
    let database = Database::connect(&config(&url), None).await.unwrap();
    database.migrate().await.unwrap();
    TestDatabase {
        database,
        url,
        cleanup: Cleanup::Postgres { admin_url, name },
    }
}

pub async fn sqlite() -> TestDatabase {
    let path = std::env::temp_dir().join(format!("favorites_test_{}.sqlite", uuid::Uuid::new_v4().simple()));
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let database = Database::connect(&config(&url), None).await.unwrap();
    database.migrate().await.unwrap();
    TestDatabase {
        database,
        url,
        cleanup: Cleanup::Sqlite { path },
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let cleanup = std::mem::replace(
            &mut self.cleanup,
            Cleanup::Sqlite {
                path: Default::default(),
            },
        );
        // Drop runs inside the test's runtime, which is blocked while we wait: use a thread
        // with a runtime of its own. The pool is not closed first (its connections belong to
        // the blocked runtime); `with (force)` ends them, and an unlinked SQLite file is fine.
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                match cleanup {
                    Cleanup::Postgres { admin_url, name } => {
                        if let Ok(mut admin) = sqlx::PgConnection::connect(&admin_url).await {
                            let _ = sqlx::query(&format!("drop database if exists {name} with (force)"))
                                .execute(&mut admin)
                                .await;
                        }
                    }
                    Cleanup::Sqlite { path } => {
                        for suffix in ["", "-wal", "-shm"] {
                            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                        }
                    }
                }
            });
        })
        .join()
        .ok();
    }
}

/// Runs one async contract test against both dialects, as two test functions.
#[macro_export]
macro_rules! both_dialects {
    ($($name:ident => $test:ident;)+) => {
        $(
            mod $name {
                #[tokio::test]
                async fn postgres() {
                    let db = $crate::support::postgres().await;
                    super::$test(&db.database).await;
                }

                #[tokio::test]
                async fn sqlite() {
                    let db = $crate::support::sqlite().await;
                    super::$test(&db.database).await;
                }
            }
        )+
    };
}

/// The AWS SDK configuration for the local endpoint `make test` starts (AWS_ENDPOINT_URL,
/// moto); the same loader the functions use.
pub async fn aws() -> &'static aws_config::SdkConfig {
    assert!(
        std::env::var("AWS_ENDPOINT_URL").is_ok_and(|u| u.starts_with("http://127.0.0.1:")),
        "AWS_ENDPOINT_URL must point at a local moto server: run `make test`"
    );
    static WIRING: std::sync::OnceLock<shared::wiring::Wiring> = std::sync::OnceLock::new();
    WIRING.get_or_init(Default::default).aws().await
}

/// A new on-demand table as the functions expect it: key `id`, TTL attribute `expires_at`.
pub async fn create_table(name: &str) {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TimeToLiveSpecification,
    };
    let client = aws_sdk_dynamodb::Client::new(aws().await);
    client
        .create_table()
        .table_name(name)
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("id")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("id")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("creating a table in moto");
    client
        .update_time_to_live()
        .table_name(name)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name("expires_at")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("enabling TTL");
}

/// A new secret holding `value`; its id (ARN).
pub async fn create_secret(value: &str) -> String {
    let client = aws_sdk_secretsmanager::Client::new(aws().await);
    let created = client
        .create_secret()
        .name(format!("favorites-test/{}", uuid::Uuid::new_v4().simple()))
        .secret_string(value)
        .send()
        .await
        .expect("creating a secret in moto");
    created.arn.unwrap()
}

/// What a rotation leaves behind: a new current version; the old one becomes the previous.
pub async fn rotate_secret(id: &str, value: &str) {
    aws_sdk_secretsmanager::Client::new(aws().await)
        .put_secret_value()
        .secret_id(id)
        .secret_string(value)
        .send()
        .await
        .expect("rotating a secret in moto");
}

/// A listing's rows, read to the end, as JSON values.
pub async fn json_rows(rows: shared::ports::FavoriteStream) -> Vec<serde_json::Value> {
    use futures::TryStreamExt;
    rows.map_ok(|row| serde_json::from_str(&row.json).unwrap())
        .try_collect()
        .await
        .unwrap()
}
