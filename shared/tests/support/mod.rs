//! Test harness: fresh, migrated databases for the contract tests, one per test.
//!
//! Postgres: a new database `favorites_test_<uuid>` created from `TEST_DATABASE_URL` (an
//! admin URL; `make test` provides one, starting a throwaway server where none runs) and
//! dropped when the test ends. Nothing else on that server is touched.
//! SQLite: a new file in the temp directory.

#![allow(dead_code)]

use std::str::FromStr;

use secrecy::SecretString;
use shared::adapters::sql::Database;
use shared::config::DatabaseConfig;
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

fn config(url: &str) -> DatabaseConfig {
    DatabaseConfig {
        url: SecretString::from(url.to_string()),
        embedded: false,
        max_connections: 4,
        timeout: std::time::Duration::from_secs(10),
    }
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
    sqlx::query(sqlx::AssertSqlSafe(format!("create database {name}")))
        .execute(&mut admin)
        .await
        .expect("creating a test database");
    admin.close().await.ok();
    let options = PgConnectOptions::from_str(&admin_url).unwrap().database(&name);
    let url = options.to_url_lossy().to_string();
    let database = Database::connect(&config(&url)).await.unwrap();
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
    let database = Database::connect(&config(&url)).await.unwrap();
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
                            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                                "drop database if exists {name} with (force)"
                            )))
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
