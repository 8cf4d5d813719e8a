//! Fresh, migrated databases for tests: a SQLite file in its own temporary directory, or a
//! new PostgreSQL database on the local server (`postgres://postgres@127.0.0.1/test` with
//! trust auth; `TICKWATCH_TEST_PG_URL` names another admin database).

use std::path::PathBuf;

use sea_orm::{ConnectionTrait, DatabaseConnection};
use tickwatch_schema::db;

use crate::Error;

/// The admin database used to create and drop per-test PostgreSQL databases.
pub const DEFAULT_PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1/test";

/// A migrated database that belongs to one test.
#[derive(Debug)]
pub struct TestDb {
    /// The URL the code under test should use.
    pub url: String,
    pub conn: DatabaseConnection,
    cleanup: Cleanup,
}

#[derive(Debug)]
enum Cleanup {
    Done,
    Dir(PathBuf),
    Postgres { admin_url: String, name: String },
}

impl TestDb {
    /// A SQLite database in a new temporary directory, removed on drop.
    pub async fn sqlite() -> Result<TestDb, Error> {
        let dir =
            std::env::temp_dir().join(format!("tickwatch-test-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)?;
        let url = format!("sqlite://{}?mode=rwc", dir.join("test.db").display());
        let conn = db::connect(&url).await?;
        db::migrate_up(&conn).await?;
        Ok(TestDb {
            url,
            conn,
            cleanup: Cleanup::Dir(dir),
        })
    }

    /// A new PostgreSQL database `tw_test_<uuid>` on the local server. Call [`TestDb::close`]
    /// at the end of the test to drop it.
    pub async fn postgres() -> Result<TestDb, Error> {
        let admin_url = std::env::var("TICKWATCH_TEST_PG_URL")
            .unwrap_or_else(|_| DEFAULT_PG_ADMIN_URL.to_string());
        let name = format!("tw_test_{}", uuid::Uuid::new_v4().simple());
        let admin = db::connect(&admin_url).await?;
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .map_err(tickwatch_schema::Error::from)?;
        admin.close().await.map_err(tickwatch_schema::Error::from)?;
        let url = replace_database(&admin_url, &name);
        let conn = db::connect(&url).await?;
        db::migrate_up(&conn).await?;
        Ok(TestDb {
            url,
            conn,
            cleanup: Cleanup::Postgres { admin_url, name },
        })
    }

    /// Closes the pool and drops the database (PostgreSQL) or its directory (SQLite).
    pub async fn close(mut self) -> Result<(), Error> {
        let cleanup = std::mem::replace(&mut self.cleanup, Cleanup::Done);
        self.conn
            .clone()
            .close()
            .await
            .map_err(tickwatch_schema::Error::from)?;
        match cleanup {
            Cleanup::Done => {}
            Cleanup::Dir(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cleanup::Postgres { admin_url, name } => {
                let admin = db::connect(&admin_url).await?;
                admin
                    .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .map_err(tickwatch_schema::Error::from)?;
                admin.close().await.map_err(tickwatch_schema::Error::from)?;
            }
        }
        Ok(())
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match std::mem::replace(&mut self.cleanup, Cleanup::Done) {
            Cleanup::Done => {}
            Cleanup::Dir(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            // Not closed: the test failed (or forgot). Dropping the database needs an async
            // round trip, and this may run inside the test's runtime, which cannot be
            // blocked on: a helper thread with its own runtime does it, so a failed test
            // leaves no `tw_test_*` database behind. `WITH (FORCE)` ends the pool's
            // sessions, which still belong to the test's runtime.
            Cleanup::Postgres { admin_url, name } => {
                let dropped = std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    runtime.block_on(async {
                        let admin = db::connect(&admin_url).await?;
                        admin
                            .execute_unprepared(&format!(
                                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                            ))
                            .await
                            .map_err(tickwatch_schema::Error::from)?;
                        admin.close().await.map_err(tickwatch_schema::Error::from)?;
                        Ok::<(), Error>(())
                    })
                })
                .join();
                if !matches!(dropped, Ok(Ok(()))) {
                    eprintln!("test database was not dropped: {dropped:?}");
                }
            }
        }
    }
}

/// `postgres://user@host/olddb?x` → `postgres://user@host/<name>?x`.
fn replace_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_part = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{host_part}/{name}?{query}"),
        None => format!("{host_part}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_name_is_replaced() {
        assert_eq!(
            replace_database("postgres://postgres@127.0.0.1/test", "tw_x"),
            "postgres://postgres@127.0.0.1/tw_x"
        );
        assert_eq!(
            replace_database("postgres://u:p@h:5432/db?sslmode=disable", "n"),
            "postgres://u:p@h:5432/n?sslmode=disable"
        );
        assert_eq!(replace_database("postgres://h", "n"), "postgres://h/n");
    }
}
