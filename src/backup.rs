//! Online backup and offline restore of a node's store.
//!
//! A backup is a consistent copy of the SQLite file made with SQLite's
//! backup API while the server keeps running (WAL lets it read a snapshot
//! beside the writer). Restoring puts such a copy in place of a stopped
//! node's store; on start the node replays whatever it lacks from the logs
//! (in cluster mode, from Redis). The token key is not part of a backup:
//! it is configuration, and in a cluster every node has the same one.
//!
//! Pictures (`images/`) are files, not rows: a backup copies them into a
//! directory beside the backup file, `<out>.images/`, and a restore copies
//! back those the node lacks. A picture's name is its hash, so copying
//! while uploads go on is safe: each file is either whole or absent.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

/// Copies the store in `data_dir` to `out` (which must not exist), pages at
/// a time so that the running writer is never blocked for long. Returns the
/// number of events per log in the copy, for the operator to check.
pub fn backup(data_dir: &Path, out: &Path) -> anyhow::Result<Vec<(u64, u64)>> {
    anyhow::ensure!(!out.exists(), "{} exists already; choose a new file", out.display());
    let source_path = data_dir.join("villagehub.sqlite3");
    anyhow::ensure!(source_path.exists(), "no store in {}", data_dir.display());
    let source = Connection::open_with_flags(&source_path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    source.busy_timeout(Duration::from_secs(5))?;
    let mut target = Connection::open(out)?;
    {
        let copy = rusqlite::backup::Backup::new(&source, &mut target)?;
        copy.run_to_completion(256, Duration::from_millis(5), None)?;
    }
    drop(target);
    // After the store: a picture is uploaded before any event names it, so
    // every picture the copied events name is copied too.
    copy_images(&data_dir.join("images"), &images_beside(out))?;
    heads_of(out)
}

/// Where a backup file's pictures are kept: `<file>.images/`.
pub fn images_beside(file: &Path) -> std::path::PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".images");
    name.into()
}

/// Copies every picture of `from` (`<2 hex>/<hash>` files) that `to` lacks,
/// each through a temp file and a rename; returns how many were copied.
/// Anything else in `from` (temp files of uploads in progress) is skipped.
pub fn copy_images(from: &Path, to: &Path) -> anyhow::Result<usize> {
    let mut copied = 0;
    let Ok(shards) = std::fs::read_dir(from) else { return Ok(0) };
    for shard in shards {
        let shard = shard?;
        let shard_name = shard.file_name().to_string_lossy().into_owned();
        if shard_name.len() != 2 || !shard.file_type()?.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(shard.path())? {
            let file = file?;
            let name = file.file_name().to_string_lossy().into_owned();
            if !protocol::is_image_hash(&name) || !name.starts_with(&shard_name) {
                continue;
            }
            let target_dir = to.join(&shard_name);
            let target = target_dir.join(&name);
            if target.exists() {
                continue;
            }
            std::fs::create_dir_all(&target_dir)?;
            let staging = target_dir.join(format!(".{name}.restoring"));
            std::fs::copy(file.path(), &staging)?;
            std::fs::File::open(&staging)?.sync_all()?;
            std::fs::rename(&staging, &target)?;
            copied += 1;
        }
    }
    Ok(copied)
}

/// Puts the backup `from` in place of the store in `data_dir`. The server
/// must not be running on that directory.
pub fn restore(data_dir: &Path, from: &Path) -> anyhow::Result<Vec<(u64, u64)>> {
    // Refused while a server (or an admin command) holds the directory.
    let _lock = crate::lock::DataDirLock::acquire(data_dir)?;
    let heads = heads_of(from)?;
    std::fs::create_dir_all(data_dir)?;
    let target = data_dir.join("villagehub.sqlite3");
    for suffix in ["-wal", "-shm"] {
        let side = data_dir.join(format!("villagehub.sqlite3{suffix}"));
        if side.exists() {
            std::fs::remove_file(side)?;
        }
    }
    let staging = data_dir.join("villagehub.sqlite3.restoring");
    std::fs::copy(from, &staging)?;
    std::fs::File::open(&staging)?.sync_all()?;
    std::fs::rename(&staging, &target)?;
    copy_images(&images_beside(from), &data_dir.join("images"))?;
    Ok(heads)
}

/// The last seq of every log in a store file, read without changing it.
fn heads_of(path: &Path) -> anyhow::Result<Vec<(u64, u64)>> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut stmt = conn.prepare("SELECT log, MAX(seq) FROM events GROUP BY log ORDER BY log")?;
    let heads = stmt
        .query_map([], |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(heads)
}
