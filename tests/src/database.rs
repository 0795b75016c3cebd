//! Throwaway Postgres databases: created from an admin URL (`TEST_DATABASE_URL`), migrated with
//! the service's own migrations, dropped when done. Nothing else on the server is touched.
//!
//! The one way the benchmarks make a database; `drop_now` at the end of a run, and `Drop` as the
//! fallback when a run fails half-way.

use std::str::FromStr;

use anyhow::Context;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

/// The service's Postgres migrations, as the `migrate` function applies them.
static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// A role with a password that owns a database, to connect as production does (password
/// authentication, not trust).
#[derive(Clone, Debug)]
pub struct Owner {
    pub role: String,
    pub password: String,
}

impl Owner {
    /// A new role name and a random password.
    pub fn generate(prefix: &str) -> Self {
        Self {
            role: format!("{prefix}_{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
            password: uuid::Uuid::new_v4().simple().to_string(),
        }
    }
}

pub struct TestDatabase {
    pub name: String,
    /// The database's URL with the admin's credentials.
    pub url: String,
    admin_url: String,
    owner: Option<Owner>,
    dropped: bool,
}

/// `TEST_DATABASE_URL`: an admin URL of a Postgres server where databases may be created.
pub fn admin_url() -> anyhow::Result<String> {
    std::env::var("TEST_DATABASE_URL")
        .context("TEST_DATABASE_URL is not set: an admin URL of a Postgres server where databases may be created")
}

impl TestDatabase {
    /// A new database `<prefix>_<random>` on the server of `admin_url`, migrated; with an
    /// owner, the role is created too, owns the database and everything the migrations make.
    pub async fn create(admin_url: &str, prefix: &str, owner: Option<Owner>) -> anyhow::Result<Self> {
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(admin_url)
            .await
            .context("connecting to the admin URL")?;
        if let Some(owner) = &owner {
            // Identifiers and the password are ours (letters, digits, underscores), never input.
            execute(
                &mut admin,
                &format!("create role {} login password '{}'", owner.role, owner.password),
            )
            .await?;
        }
        let owned_by = owner.as_ref().map(|o| format!(" owner {}", o.role)).unwrap_or_default();
        execute(&mut admin, &format!("create database {name}{owned_by}")).await?;
        admin.close().await.ok();
        let database = Self {
            url: url_with_database(admin_url, &name)?,
            name,
            admin_url: admin_url.to_string(),
            owner,
            dropped: false,
        };
        if let Err(error) = database.migrate().await {
            database.drop_now().await.ok();
            return Err(error);
        }
        Ok(database)
    }

    async fn migrate(&self) -> anyhow::Result<()> {
        let mut options = PgConnectOptions::from_str(&self.admin_url)
            .context("parsing the admin URL")?
            .database(&self.name);
        if let Some(owner) = &self.owner {
            // Connected as the admin, acting as the owner: what the migrations create is its.
            options = options.options([("role", owner.role.as_str())]);
        }
        let mut connection = PgConnection::connect_with(&options)
            .await
            .context("connecting to the new database")?;
        MIGRATIONS
            .run(&mut connection)
            .await
            .context("migrating the new database")?;
        connection.close().await.ok();
        Ok(())
    }

    /// Drops the database (ending its connections) and its owner.
    pub async fn drop_now(mut self) -> anyhow::Result<()> {
        self.dropped = true;
        drop_database(&self.admin_url, &self.name, self.owner.as_ref()).await
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        // Drop may run inside a runtime that is blocked while we wait: use a thread with a
        // runtime of its own.
        let (admin_url, name, owner) = (self.admin_url.clone(), self.name.clone(), self.owner.clone());
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting a runtime to drop the database")?
                .block_on(drop_database(&admin_url, &name, owner.as_ref()))
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("warning: could not drop database {}; drop it by hand", self.name);
        }
    }
}

/// What RDS does when it creates an instance: the master role `owner` with its password and an
/// empty database `name` it owns (the `migrate` function fills it). A role an earlier run left
/// gets the new password.
pub async fn create_instance(admin_url: &str, name: &str, owner: &Owner) -> anyhow::Result<()> {
    let mut admin = PgConnection::connect(admin_url)
        .await
        .context("connecting to the admin URL")?;
    let exists: bool = sqlx::query_scalar("select exists (select 1 from pg_roles where rolname = $1)")
        .bind(&owner.role)
        .fetch_one(&mut admin)
        .await?;
    let verb = if exists { "alter" } else { "create" };
    // The names come from the template and the password from the generated secret (letters
    // and digits); never from a request.
    execute(
        &mut admin,
        &format!("{verb} role \"{}\" login password '{}'", owner.role, owner.password),
    )
    .await?;
    execute(
        &mut admin,
        &format!("create database \"{name}\" owner \"{}\"", owner.role),
    )
    .await?;
    admin.close().await.ok();
    Ok(())
}

async fn drop_database(admin_url: &str, name: &str, owner: Option<&Owner>) -> anyhow::Result<()> {
    let mut admin = PgConnection::connect(admin_url)
        .await
        .context("connecting to the admin URL")?;
    execute(&mut admin, &format!("drop database if exists {name} with (force)")).await?;
    if let Some(owner) = owner {
        execute(&mut admin, &format!("drop role if exists {}", owner.role)).await?;
    }
    admin.close().await.ok();
    Ok(())
}

async fn execute(connection: &mut PgConnection, statement: &str) -> anyhow::Result<()> {
    sqlx::raw_sql(statement)
        .execute(connection)
        .await
        .with_context(|| format!("running `{}`", statement.split(" password ").next().unwrap_or_default()))?;
    Ok(())
}

/// `admin_url` with its database (the URL's path) replaced by `name`; user, password, host,
/// port and query kept.
pub fn url_with_database(admin_url: &str, name: &str) -> anyhow::Result<String> {
    let mut url = reqwest::Url::parse(admin_url).context("parsing the admin URL")?;
    url.set_path(name);
    Ok(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_url_keeps_everything_but_the_database() {
        assert_eq!(
            url_with_database("postgres://postgres@127.0.0.1:5432/postgres", "bench").unwrap(),
            "postgres://postgres@127.0.0.1:5432/bench"
        );
        assert_eq!(
            url_with_database("postgresql://postgres@localhost/postgres?host=/tmp/pg&port=5", "b").unwrap(),
            "postgresql://postgres@localhost/b?host=/tmp/pg&port=5"
        );
    }
}
