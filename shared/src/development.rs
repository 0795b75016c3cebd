//! The embedded default's development setup: a data directory holding the SQLite database and
//! a generated JWT key, so that `make run` needs no services and no configuration.
//!
//! [`bootstrap`] makes both, explicitly, at the cold start of a function whose database is the
//! embedded one (never while configuration is parsed, and never anywhere else). It also says
//! loudly that this is a development setup.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

/// The shortest key the token settings accept; a generated one is longer.
const KEY_MIN_BYTES: usize = 32;

/// Where the embedded database lives in the data directory.
pub fn database_path(data_dir: &Path) -> PathBuf {
    data_dir.join("favorites.sqlite")
}

/// Where the development JWT key lives in the data directory.
pub fn jwt_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("dev-jwt.key")
}

/// Creates the data directory and the development JWT key when they do not exist yet.
pub fn bootstrap(data_dir: &Path) -> anyhow::Result<()> {
    tracing::warn!(
        data_dir = %data_dir.display(),
        "DEVELOPMENT SETUP: embedded SQLite database and a generated JWT key in the local data \
         directory; set DATABASE_URL and JWT_SECRET for anything else"
    );
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating the development data directory {}", data_dir.display()))?;
    ensure_key(&jwt_key_path(data_dir))
}

/// A random key written on first use and kept, so that tokens survive a restart of `make run`.
/// Written with `create_new`, so two functions starting at once agree on one key: the loser
/// of the race waits for the winner's whole key.
fn ensure_key(path: &Path) -> anyhow::Result<()> {
    let key: String = {
        use rand::Rng;
        let bytes: [u8; 32] = rand::rng().random();
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    };
    match std::fs::OpenOptions::new().write(true).create_new(true).open(path) {
        Ok(mut file) => file
            .write_all(key.as_bytes())
            .with_context(|| format!("writing the development key {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            for _ in 0..50 {
                let existing = std::fs::read_to_string(path)
                    .with_context(|| format!("reading the development key {}", path.display()))?;
                if existing.trim().len() >= KEY_MIN_BYTES {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            anyhow::bail!("{} holds no usable key; delete it", path.display())
        }
        Err(e) => Err(e).with_context(|| format!("creating the development key {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bootstrap_generates_one_key_and_keeps_it() {
        let dir = std::env::temp_dir().join(format!("favorites-dev-{}", uuid::Uuid::new_v4()));
        bootstrap(&dir).unwrap();
        let first = std::fs::read_to_string(jwt_key_path(&dir)).unwrap();
        bootstrap(&dir).unwrap();
        let second = std::fs::read_to_string(jwt_key_path(&dir)).unwrap();
        assert_eq!(first, second);
        assert!(first.len() >= KEY_MIN_BYTES);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
