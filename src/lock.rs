//! The data directory lock: one process at a time. The server and every
//! command that writes the data directory (`admin …`, `bench-seed`) take an
//! exclusive `flock` on `DATA_DIR/villagehub.lock` in `Node::open`; the
//! second one gets a clear error instead of a second log writer. The kernel
//! releases the lock when the process ends, even on kill -9.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Held for as long as the value lives.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
    pub path: PathBuf,
}

impl DataDirLock {
    pub fn acquire(data_dir: &Path) -> anyhow::Result<DataDirLock> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| anyhow::anyhow!("cannot create data directory {}: {e}", data_dir.display()))?;
        let path = data_dir.join("villagehub.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
        // SAFETY: flock on a file descriptor we own; no memory is involved.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                anyhow::bail!(
                    "data directory {} is in use by another villagehub process (a running server?); \
                     stop it first",
                    data_dir.display()
                );
            }
            anyhow::bail!("cannot lock {}: {err}", path.display());
        }
        Ok(DataDirLock { _file: file, path })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::acquire(dir.path()).unwrap();
        let err = DataDirLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(err.contains("in use"), "{err}");
        drop(first);
        DataDirLock::acquire(dir.path()).unwrap();
    }
}
