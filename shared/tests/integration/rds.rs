//! Postgres the way production reaches it: through RDS Proxy (nothing may pin a session) and
//! with credentials from a rotated Secrets Manager secret over verified TLS.
//!
//! Needs TEST_DATABASE_URL, AWS_ENDPOINT_URL (moto) and the private TLS Postgres that
//! `make test` starts (TEST_TLS_PG_ADMIN_URL, TEST_TLS_PG_PORT, TEST_TLS_PG_CA, and its log
//! TEST_TLS_PG_LOG).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::support::aws;
use futures::TryStreamExt;
use shared::adapters::secrets_manager::SecretsManagerSource;
use shared::adapters::sql::Database;
use shared::config::{DatabaseSettings, DatabaseTarget, Endpoint, SecretSetting};
use shared::domain::{AssetInput, Description, Email, FavoriteId, ListFilter, PasswordHash, User, UserId};
use shared::ports::{DatabaseHealth, ListQuery, SecretSource};
use shared::secrets::Secret;
use sqlx::Connection;

fn proxy_config(url: &str) -> DatabaseSettings {
    DatabaseSettings {
        proxy: true,
        // One connection: every operation below runs on the session we then inspect.
        max_connections: 1,
        ..DatabaseSettings::for_url(url)
    }
}

/// Every operation of every function, once: signup, login, the account check of every
/// authenticated request, add, get, update, remove, list (both listings and the version read),
/// the health check and the account's deletion.
async fn every_operation(db: &Database) {
    let user = User {
        id: UserId::generate(),
        email: Email::parse(&format!("proxy-{}@example.com", uuid::Uuid::new_v4())).unwrap(),
        password_hash: PasswordHash::new("$2b$04$hash".into()),
    };
    let users = db.users();
    users.insert_user(&user).await.unwrap();
    assert!(users.user_by_email(&user.email).await.unwrap().is_some());
    assert!(users.account(user.id).await.unwrap().is_some());
    let favorites = db.favorites();
    for id in ["a", "b"] {
        let input: AssetInput =
            serde_json::from_value(serde_json::json!({"id": id, "type": "insight", "name": id, "content": "c"}))
                .unwrap();
        favorites
            .insert_favorite(user.id, &input.parse().unwrap())
            .await
            .unwrap();
    }
    let a = FavoriteId::parse("a").unwrap();
    assert!(favorites.get_favorite(user.id, &a).await.unwrap().is_some());
    let description = Description::parse("d").unwrap();
    assert!(
        favorites
            .update_description(user.id, &a, &description, None)
            .await
            .unwrap()
            .is_some()
    );
    let query = || ListQuery {
        after: None,
        offset: 0,
        limit: Some(10),
        filter: ListFilter::default(),
    };
    let listed: Vec<_> = favorites
        .list_favorites(user.id, query())
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(listed.len(), 2);
    let listing = favorites.list_favorites_versioned(user.id, query()).await.unwrap();
    let rows: Vec<_> = listing.rows.try_collect().await.unwrap();
    assert_eq!(rows.len(), 2);
    favorites.favorites_version(user.id).await.unwrap();
    assert!(favorites.remove_favorite(user.id, &a, None).await.unwrap().is_some());
    db.ping().await.unwrap();
    assert!(users.user_by_id(user.id).await.unwrap().is_some());
    assert!(users.delete_user(user.id).await.unwrap());
}

async fn session_state(db: &Database) -> (i64, i64, i64) {
    let Database::Postgres(pg) = db else {
        panic!("a Postgres database")
    };
    let mut conn = pg.pool().acquire().await.unwrap();
    let count = |sql: &'static str| sqlx::query_scalar::<_, i64>(sql).persistent(false);
    let prepared = count("select count(*) from pg_prepared_statements")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    let advisory = count("select count(*) from pg_locks where locktype = 'advisory' and pid = pg_backend_pid()")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    let temporary = count("select count(*) from pg_class where relpersistence = 't'")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    (prepared, advisory, temporary)
}

#[tokio::test]
async fn in_proxy_mode_no_operation_leaves_anything_that_pins_a_proxy_session() {
    let test = crate::support::postgres().await;
    let db = Database::connect(&proxy_config(&test.url), None).await.unwrap();
    every_operation(&db).await;
    assert_eq!(
        session_state(&db).await,
        (0, 0, 0),
        "prepared statements, advisory locks, temporary tables"
    );
}

#[tokio::test]
async fn outside_proxy_mode_statements_are_prepared_by_name_so_the_check_above_can_fail() {
    let test = crate::support::postgres().await;
    let db = Database::connect(
        &DatabaseSettings {
            max_connections: 1,
            ..DatabaseSettings::for_url(&test.url)
        },
        None,
    )
    .await
    .unwrap();
    every_operation(&db).await;
    let (prepared, _, _) = session_state(&db).await;
    assert!(prepared > 0, "direct connections cache named statements");
}

/// The private TLS Postgres: an admin connection over its socket, and a role that logs in
/// with a password over TCP, owning a fresh database.
struct TlsServer {
    admin: sqlx::PgConnection,
    role: String,
    database: String,
}

impl TlsServer {
    async fn new(password: &str) -> Self {
        let url = std::env::var("TEST_TLS_PG_ADMIN_URL").expect("TEST_TLS_PG_ADMIN_URL: run `make test`");
        let mut admin = sqlx::PgConnection::connect(&url)
            .await
            .expect("the TLS Postgres admin socket");
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let (role, database) = (format!("app_{suffix}"), format!("favorites_{suffix}"));
        for sql in [
            format!("create role {role} login password '{password}'"),
            format!("create database {database} owner {role}"),
        ] {
            sqlx::raw_sql(&sql).execute(&mut admin).await.unwrap();
        }
        Self { admin, role, database }
    }

    fn secret(&self, password: &str) -> String {
        serde_json::json!({
            "engine": "postgres",
            "username": self.role,
            "password": password,
            "host": "127.0.0.1",
            "port": std::env::var("TEST_TLS_PG_PORT").unwrap().parse::<u16>().unwrap(),
            "dbname": self.database,
        })
        .to_string()
    }

    /// What the rotation function does to the database: a new password, and the sessions
    /// opened with the old one ended (as a failover or the proxy's recycling would).
    async fn change_password(&mut self, password: &str) {
        for sql in [
            format!("alter role {} password '{password}'", self.role),
            format!(
                "select pg_terminate_backend(pid) from pg_stat_activity where usename = '{}'",
                self.role
            ),
        ] {
            sqlx::raw_sql(&sql).execute(&mut self.admin).await.unwrap();
        }
    }
}

fn secret_config(secret_id: &str) -> DatabaseSettings {
    DatabaseSettings {
        target: DatabaseTarget::Rds {
            credentials: SecretSetting::Stored {
                id: secret_id.to_string(),
                // Long: a refresh below comes from the refused password, not from the TTL.
                ttl: Duration::from_secs(3600),
            },
            endpoint: Endpoint::default(),
        },
        proxy: true,
        max_connections: 1,
        ca_bundle: Some(PathBuf::from(std::env::var("TEST_TLS_PG_CA").unwrap())),
        ..DatabaseSettings::for_url("postgres://unused")
    }
}

/// The database a function connects to with these settings, its secret read from Secrets Manager.
async fn connect(settings: &DatabaseSettings) -> Database {
    let source: Arc<dyn SecretSource> = Arc::new(SecretsManagerSource::new(aws().await));
    let credentials = Secret::from_setting(settings.credentials().unwrap(), Some(&source)).unwrap();
    Database::connect(settings, Some(credentials)).await.unwrap()
}

#[tokio::test]
async fn credentials_come_from_the_secret_over_verified_tls() {
    let server = TlsServer::new("first-password").await;
    let id = crate::support::create_secret(&server.secret("first-password")).await;
    let db = connect(&secret_config(&id)).await;
    db.migrate().await.unwrap();
    every_operation(&db).await;
    let Database::Postgres(pg) = &db else { unreachable!() };
    let ssl: bool = sqlx::query_scalar("select ssl from pg_stat_ssl where pid = pg_backend_pid()")
        .persistent(false)
        .fetch_one(pg.pool())
        .await
        .unwrap();
    assert!(ssl, "the session is encrypted");
}

/// What RDS Proxy pins a session for (AWS's pinning list for PostgreSQL), in one statement as
/// the server logged it; `None` when nothing.
fn pins(entry: &str) -> Option<&'static str> {
    let (kind, statement) = entry.split_once(": ").unwrap_or(("", entry));
    let sql = statement.trim_start().to_lowercase();
    let starts = |word: &str| sql.starts_with(word) && sql[word.len()..].starts_with(char::is_whitespace);
    if kind.starts_with("execute") && kind != "execute <unnamed>" {
        Some("a named prepared statement")
    } else if starts("set") || sql.contains(" set_config(") {
        Some("SET")
    } else if starts("declare") || starts("prepare") || starts("listen") {
        Some("DECLARE, PREPARE or LISTEN")
    } else if sql.contains("temp table") || sql.contains("temporary") {
        Some("a temporary object")
    } else if sql.contains("pg_advisory") {
        Some("an advisory lock")
    } else if sql.contains("nextval(") || sql.contains("setval(") {
        Some("nextval/setval")
    } else if statement.len() > 16 * 1024 {
        Some("a statement over 16 KB")
    } else {
        None
    }
}

/// Every statement the functions send in proxy mode, as the server logs it (`log_statement =
/// 'all'` for the role they connect as): none is on the pinning list, so a proxy can hand the
/// database connection to another client after each transaction.
#[tokio::test]
async fn in_proxy_mode_no_statement_is_on_the_pinning_list() {
    let mut server = TlsServer::new("pinning-check").await;
    let id = crate::support::create_secret(&server.secret("pinning-check")).await;
    // The migrations hold an advisory lock: they run without the proxy (template.yaml's
    // migrate function goes to the instance), before logging starts.
    connect(&secret_config(&id)).await.migrate().await.unwrap();
    let alter = format!("alter role {} set log_statement = 'all'", server.role);
    sqlx::raw_sql(&alter).execute(&mut server.admin).await.unwrap();

    let db = connect(&secret_config(&id)).await;
    every_operation(&db).await;
    db.close().await;

    let log =
        std::fs::read_to_string(std::env::var("TEST_TLS_PG_LOG").expect("TEST_TLS_PG_LOG: run `make test`")).unwrap();
    // An entry starts at a line with the server's prefix; a statement's later lines follow it.
    let mut entries: Vec<String> = Vec::new();
    for line in log.lines() {
        match line.split_once(" LOG:  ") {
            Some((_, rest)) if rest.starts_with("statement: ") || rest.starts_with("execute ") => {
                entries.push(rest.to_string())
            }
            None if !line.starts_with("20") => {
                if let Some(last) = entries.last_mut() {
                    last.push('\n');
                    last.push_str(line);
                }
            }
            _ => entries.push(String::new()),
        }
    }
    let statements: Vec<&String> = entries.iter().filter(|e| !e.is_empty()).collect();
    assert!(
        statements.len() >= 10,
        "the server logged {} statements of the role: is log_statement working?",
        statements.len()
    );
    let pinning: Vec<String> = statements
        .iter()
        .filter_map(|entry| pins(entry).map(|why| format!("{why}: {}", &entry[..entry.len().min(300)])))
        .collect();
    assert!(
        pinning.is_empty(),
        "statements that pin a proxy session:\n{}",
        pinning.join("\n")
    );
}

#[test]
fn the_pinning_check_knows_the_pinning_list() {
    for pinned in [
        "statement: SET statement_timeout = 0",
        "statement: declare listing no scroll cursor for select 1",
        "execute sqlx_s_1: select 1",
        "statement: select pg_advisory_lock(1)",
        "execute <unnamed>: select nextval('s')",
        "statement: create temporary table t (x int)",
    ] {
        assert!(pins(pinned).is_some(), "{pinned}");
    }
    for fine in [
        "statement: begin isolation level repeatable read read only",
        "execute <unnamed>: select id, created_at from favorites where user_id = $1",
        "execute <unnamed>: update favorites set description = $3 where id = $2",
    ] {
        assert_eq!(pins(fine), None, "{fine}");
    }
}

#[tokio::test]
async fn a_server_certificate_from_another_ca_is_refused() {
    let server = TlsServer::new("pw-ca-check").await;
    let id = crate::support::create_secret(&server.secret("pw-ca-check")).await;
    // The built-in bundle holds only the RDS CAs, which did not sign the test server.
    let config = DatabaseSettings {
        ca_bundle: None,
        ..secret_config(&id)
    };
    let db = connect(&config).await;
    let error = db.ping().await.unwrap_err();
    assert!(format!("{error:#}").to_lowercase().contains("certificate"), "{error:#}");
}

#[tokio::test]
async fn after_a_password_rotation_the_next_connection_reads_the_secret_again() {
    let mut server = TlsServer::new("before-rotation").await;
    let id = crate::support::create_secret(&server.secret("before-rotation")).await;
    let db = connect(&secret_config(&id)).await;
    db.migrate().await.unwrap();
    every_operation(&db).await;

    // Rotation: the database changes first, then the secret (the rotation function's order
    // is create, set, test, finish; between set and finish old credentials fail).
    server.change_password("after-rotation").await;
    crate::support::rotate_secret(&id, &server.secret("after-rotation")).await;
    every_operation(&db).await;
}

#[tokio::test]
async fn a_refused_password_with_an_unchanged_secret_fails_without_looping() {
    let mut server = TlsServer::new("the-password").await;
    let id = crate::support::create_secret(&server.secret("the-password")).await;
    let db = connect(&secret_config(&id)).await;
    db.ping().await.unwrap();
    server.change_password("changed-behind-our-back").await;
    let error = db.ping().await.unwrap_err();
    assert!(
        format!("{error:#}").contains("password authentication failed"),
        "{error:#}"
    );
}
