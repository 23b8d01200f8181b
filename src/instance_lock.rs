//! The single-writer guard: an exclusive OS lock on a file beside the
//! SQLite database, so two processes never drive the same aggregates or
//! spend the same nonces (the reference issuer collided on nonces during
//! rollouts).
//!
//! The lock is `flock(2)` (std's [`File::try_lock`]) on `<database
//! file>.lock`, taken without waiting. The kernel drops it the moment the
//! holding process dies, however it dies, so a restart after a crash or a
//! SIGKILL starts at once; a heartbeat row alone cannot tell a dead
//! holder from a slow one and had to wait for a TTL. Files are opened
//! close-on-exec, so a child process never inherits the lock.
//!
//! The file names its holder (pid, holder id, start time) so a refused
//! start can say who holds it. The file is never deleted: removing it
//! while held would let a second process lock a new file of the same
//! name. Its text describes the *last* holder; whether anyone holds it
//! now is only known to the kernel (`fuser -v <path>`).
//!
//! A database without a file (`sqlite::memory:`, or SQLite's nameless
//! temporary database) takes no lock: no other process can open it, so
//! there is nothing to guard.
//!
//! `flock` is only reliable on a local filesystem: on NFS it is emulated
//! with byte-range locks that a crashed client may keep. SQLite itself
//! needs a local filesystem for WAL mode anyway.

use std::fmt;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::SqlitePool;

use crate::clock::IdGenerator;

/// Identifies one running instance (in the lock file and the lease row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseHolder(String);

impl LeaseHolder {
    /// Process id plus a fresh uuid: unique even across restarts that
    /// reuse a pid.
    pub fn generate(ids: &dyn IdGenerator) -> Self {
        Self(format!("pid{}-{}", std::process::id(), ids.uuid()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Appended to the database file's path to name the lock file.
pub const LOCK_FILE_SUFFIX: &str = ".lock";

#[derive(Debug, thiserror::Error)]
pub enum InstanceLockError {
    #[error(
        "another instance ({holder}) holds the single-writer lock {path}: \
         stop it first; the lock is freed the moment that process exits",
        path = .path.display()
    )]
    Held { path: PathBuf, holder: LockHolder },
    #[error("cannot {action} the lock file {path}: {source}", path = .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("cannot find the database file: {0}")]
    Database(#[from] sqlx::Error),
}

/// Who holds (or last held) a lock, as its lock file tells. Every field
/// is optional: the file may be empty (created by a process that died
/// before writing it) or edited by hand.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LockHolder {
    pub pid: Option<u32>,
    pub holder: Option<String>,
    pub started_at: Option<String>,
}

impl LockHolder {
    fn parse(text: &str) -> Self {
        let mut found = Self::default();
        for line in text.lines() {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let value = value.trim();
            // The first occurrence wins: a rewrite puts the new text at
            // the start before it trims the old tail.
            match key.trim() {
                "pid" if found.pid.is_none() => found.pid = value.parse().ok(),
                "holder" if found.holder.is_none() => {
                    found.holder = Some(value.to_owned());
                }
                "started_at" if found.started_at.is_none() => {
                    found.started_at = Some(value.to_owned());
                }
                _ => {}
            }
        }
        found
    }

    fn render(&self) -> String {
        let mut lines = vec![
            "# issuance-bot single-writer lock. Held by the process below \
             only while it runs;"
                .to_owned(),
            "# never delete this file while any instance might run.".to_owned(),
        ];
        if let Some(pid) = self.pid {
            lines.push(format!("pid={pid}"));
        }
        if let Some(holder) = &self.holder {
            lines.push(format!("holder={holder}"));
        }
        if let Some(started_at) = &self.started_at {
            lines.push(format!("started_at={started_at}"));
        }
        lines.push(String::new());
        lines.join("\n")
    }
}

impl fmt::Display for LockHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pid {
            Some(pid) => write!(f, "pid {pid}")?,
            None => write!(f, "pid unknown: the lock file names no process")?,
        }
        if let Some(holder) = &self.holder {
            write!(f, ", holder {holder}")?;
        }
        if let Some(started_at) = &self.started_at {
            write!(f, ", started {started_at}")?;
        }
        Ok(())
    }
}

/// The held lock (or, for a database without a file, the proof that none
/// is needed). Dropping it releases the lock; [`InstanceLock::release`]
/// does so explicitly and logs it.
#[derive(Debug)]
pub struct InstanceLock {
    held: Option<HeldFile>,
}

#[derive(Debug)]
struct HeldFile {
    file: File,
    path: PathBuf,
}

/// The file SQLite opened as the `main` database of `pool`, or `None` for
/// an in-memory or temporary database. Asking SQLite rather than parsing
/// the URL covers every URL form and resolves relative paths.
pub async fn database_file(
    pool: &SqlitePool,
) -> Result<Option<PathBuf>, sqlx::Error> {
    let databases: Vec<(i64, String, Option<String>)> =
        sqlx::query_as("PRAGMA database_list")
            .fetch_all(pool)
            .await?;
    Ok(databases
        .into_iter()
        .find(|(_, name, _)| name == "main")
        .and_then(|(_, _, file)| file)
        .filter(|file| !file.is_empty())
        .map(PathBuf::from))
}

/// `<database file>.lock`, beside the database. The database path is
/// made canonical first, so a symlink or a second spelling of the same
/// database finds the same lock file.
pub fn lock_path(database_file: &Path) -> PathBuf {
    let canonical = std::fs::canonicalize(database_file)
        .unwrap_or_else(|_| database_file.to_path_buf());
    let mut path = canonical.into_os_string();
    path.push(LOCK_FILE_SUFFIX);
    PathBuf::from(path)
}

impl InstanceLock {
    /// Takes the lock for the database `pool` is open on, without
    /// waiting: [`InstanceLockError::Held`] names the holder if another
    /// process has it.
    pub async fn acquire(
        pool: &SqlitePool,
        holder: &LeaseHolder,
        started_at: DateTime<Utc>,
    ) -> Result<Self, InstanceLockError> {
        let Some(database) = database_file(pool).await? else {
            tracing::info!(
                target: "startup",
                "in-memory database: no single-writer lock (no other \
                 process can open it)"
            );
            return Ok(Self { held: None });
        };
        Self::acquire_file(&lock_path(&database), holder, started_at)
    }

    /// Takes the lock on the file at `path` (created if missing), then
    /// writes our pid, holder id and start time into it.
    pub fn acquire_file(
        path: &Path,
        holder: &LeaseHolder,
        started_at: DateTime<Utc>,
    ) -> Result<Self, InstanceLockError> {
        let io_error = |action| {
            move |source| InstanceLockError::Io {
                action,
                path: path.to_path_buf(),
                source,
            }
        };
        // Not truncated on open: until the lock is ours the text belongs
        // to whoever holds it.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io_error("open"))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(InstanceLockError::Held {
                    path: path.to_path_buf(),
                    holder: read_holder(path),
                });
            }
            Err(TryLockError::Error(source)) => {
                return Err(io_error("lock")(source));
            }
        }
        let text = LockHolder {
            pid: Some(std::process::id()),
            holder: Some(holder.as_str().to_owned()),
            started_at: Some(
                started_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            ),
        }
        .render();
        // New text first, then the old tail is cut: a reader never sees
        // an empty file, and the first `pid=` it finds is ours.
        file.seek(SeekFrom::Start(0))
            .and_then(|_| file.write_all(text.as_bytes()))
            .and_then(|()| file.stream_position())
            .and_then(|end| file.set_len(end))
            .map_err(io_error("write"))?;
        tracing::info!(
            target: "startup",
            path = %path.display(),
            "single-writer lock taken"
        );
        Ok(Self {
            held: Some(HeldFile {
                file,
                path: path.to_path_buf(),
            }),
        })
    }

    /// The lock file, or `None` when the database has no file.
    #[cfg(test)]
    pub fn path(&self) -> Option<&Path> {
        self.held.as_ref().map(|held| held.path.as_path())
    }

    /// Frees the lock. Call it last, once nothing writes to the database
    /// any more: a successor may start the moment it returns.
    pub fn release(self) {
        let Some(HeldFile { file, path }) = self.held else {
            return;
        };
        // Closing the file frees the lock too; unlocking first makes the
        // moment explicit and reports a failure.
        if let Err(error) = file.unlock() {
            tracing::warn!(
                target: "shutdown",
                path = %path.display(),
                %error,
                "could not unlock the single-writer lock; closing it instead"
            );
        }
        drop(file);
        tracing::info!(
            target: "shutdown",
            path = %path.display(),
            "single-writer lock released"
        );
    }
}

/// What the lock file says about its holder; nothing if it cannot be
/// read (the refusal itself must not fail for that).
fn read_holder(path: &Path) -> LockHolder {
    std::fs::read_to_string(path)
        .map(|text| LockHolder::parse(&text))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::clock::SequentialIds;

    fn started() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 2, 12, 0, 0).unwrap()
    }

    fn holders() -> (LeaseHolder, LeaseHolder) {
        let ids = SequentialIds::new();
        (LeaseHolder::generate(&ids), LeaseHolder::generate(&ids))
    }

    #[test]
    fn a_second_taker_is_refused_and_told_who_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("issuance.db.lock");
        let (first, second) = holders();
        let lock =
            InstanceLock::acquire_file(&path, &first, started()).unwrap();
        assert_eq!(lock.path(), Some(path.as_path()));

        // flock is per open file: a second open in this process conflicts
        // exactly as another process would.
        let error =
            InstanceLock::acquire_file(&path, &second, started()).unwrap_err();
        let message = error.to_string();
        match error {
            InstanceLockError::Held {
                path: held_path,
                holder,
            } => {
                assert_eq!(held_path, path);
                assert_eq!(holder.pid, Some(std::process::id()));
                assert_eq!(holder.holder.as_deref(), Some(first.as_str()));
                assert_eq!(
                    holder.started_at.as_deref(),
                    Some("2026-12-02T12:00:00.000Z")
                );
            }
            other => panic!("expected Held, got {other:?}"),
        }
        assert!(
            message.contains(&format!("pid {}", std::process::id())),
            "{message}"
        );
        assert!(message.contains(&path.display().to_string()), "{message}");
        drop(lock);
    }

    #[test]
    fn release_and_drop_free_the_lock_for_the_next_holder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("issuance.db.lock");
        let (first, second) = holders();

        InstanceLock::acquire_file(&path, &first, started())
            .unwrap()
            .release();
        let again =
            InstanceLock::acquire_file(&path, &second, started()).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            LockHolder::parse(&text).holder.as_deref(),
            Some(second.as_str())
        );
        // Dropping without release() frees it as well (as process exit
        // does).
        drop(again);
        InstanceLock::acquire_file(&path, &first, started()).unwrap();
    }

    #[test]
    fn a_dead_holders_file_never_blocks_and_is_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("issuance.db.lock");
        // Left by a process that was killed: text, but no lock. Longer
        // than ours, so a tail would remain if it were not cut.
        std::fs::write(
            &path,
            format!(
                "pid=999999\nholder=pid999999-old\nstarted_at=2020\n{}\n",
                "x".repeat(400)
            ),
        )
        .unwrap();
        let (first, _) = holders();
        let _lock =
            InstanceLock::acquire_file(&path, &first, started()).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("999999"), "{text}");
        assert!(!text.contains("xxx"), "{text}");
        let holder = LockHolder::parse(&text);
        assert_eq!(holder.pid, Some(std::process::id()));
        assert_eq!(holder.holder.as_deref(), Some(first.as_str()));
    }

    #[test]
    fn an_empty_or_foreign_lock_file_is_reported_as_unknown() {
        let holder = LockHolder::parse("");
        assert_eq!(holder, LockHolder::default());
        assert_eq!(
            holder.to_string(),
            "pid unknown: the lock file names no process"
        );
        let holder = LockHolder::parse("# comment\npid=12\nnoise\npid=13\n");
        assert_eq!(holder.pid, Some(12));
        assert_eq!(holder.to_string(), "pid 12");
    }

    #[test]
    fn an_unopenable_lock_file_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir").join("issuance.db.lock");
        let (first, _) = holders();
        let error =
            InstanceLock::acquire_file(&path, &first, started()).unwrap_err();
        assert!(
            matches!(error, InstanceLockError::Io { action: "open", .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains("missing-dir"), "{error}");
    }

    #[test]
    fn the_lock_file_sits_beside_the_canonical_database_path() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("issuance.db");
        std::fs::write(&database, b"").unwrap();
        let canonical_dir = std::fs::canonicalize(dir.path()).unwrap();
        assert_eq!(
            lock_path(&database),
            canonical_dir.join("issuance.db.lock")
        );
        // Another spelling of the same file finds the same lock.
        let detour = dir.path().join(".").join("issuance.db");
        assert_eq!(lock_path(&detour), lock_path(&database));
        #[cfg(unix)]
        {
            let link = dir.path().join("link.db");
            std::os::unix::fs::symlink(&database, &link).unwrap();
            assert_eq!(lock_path(&link), lock_path(&database));
        }
    }

    #[tokio::test]
    async fn a_file_database_is_locked_beside_it_and_memory_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/issuance.db", dir.path().display());
        let pool = sqlite_es::open_pool(&url, 2).await.unwrap();
        let (first, second) = holders();
        let lock = InstanceLock::acquire(&pool, &first, started())
            .await
            .unwrap();
        let expected = std::fs::canonicalize(dir.path())
            .unwrap()
            .join("issuance.db.lock");
        assert_eq!(lock.path(), Some(expected.as_path()));
        let refused = InstanceLock::acquire(&pool, &second, started()).await;
        assert!(
            matches!(refused, Err(InstanceLockError::Held { .. })),
            "{refused:?}"
        );
        lock.release();

        let memory = sqlite_es::open_pool("sqlite::memory:", 1).await.unwrap();
        assert_eq!(database_file(&memory).await.unwrap(), None);
        let lock = InstanceLock::acquire(&memory, &first, started())
            .await
            .unwrap();
        assert_eq!(lock.path(), None);
        // Two "holders" of an in-memory database: each is its own process's
        // private database, so nothing to refuse.
        InstanceLock::acquire(&memory, &second, started())
            .await
            .unwrap();
    }
}
