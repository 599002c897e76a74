//! Atomic file writes and removals. Blocking: call from `spawn_blocking` in async code.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The mode of a file written with mode 0.
pub const DEFAULT_FILE_MODE: u32 = 0o644;
const DIRECTORY_MODE: u32 = 0o755;

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("mode {0:#o} has bits beyond 0o7777")]
    InvalidMode(u32),
    #[error("path {0:?} has no parent directory or file name")]
    NoParent(PathBuf),
    #[error("{action} {path:?}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

fn io_error<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> FileError + 'a {
    move |source| FileError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `content` to `path` with `mode` so that readers see either the old or the new file,
/// never a partial one, also across a crash: a temporary file in the same directory is written,
/// synced and renamed over `path`, then the directory is synced. Creates missing parents.
/// Returns false, writing nothing, when the file already has this content and mode.
pub fn write_atomically(path: &Path, content: &[u8], mode: u32) -> Result<bool, FileError> {
    let mode = if mode == 0 { DEFAULT_FILE_MODE } else { mode };
    if mode > 0o7777 {
        return Err(FileError::InvalidMode(mode));
    }
    let (Some(parent), Some(file_name)) = (path.parent(), path.file_name()) else {
        return Err(FileError::NoParent(path.to_path_buf()));
    };
    if has_content_and_mode(path, content, mode) {
        return Ok(false);
    }
    DirBuilder::new()
        .recursive(true)
        .mode(DIRECTORY_MODE)
        .create(parent)
        .map_err(io_error("creating directory", parent))?;
    let temporary = parent.join(format!(
        ".{}.hakube-tmp-{:016x}",
        file_name.to_string_lossy(),
        rand::random::<u64>()
    ));
    let written = write_new_file(&temporary, content, mode)
        .and_then(|()| fs::rename(&temporary, path).map_err(io_error("renaming into", path)));
    if let Err(e) = written {
        // The temporary file is ours and useless now; failing to remove it changes nothing.
        let _ = fs::remove_file(&temporary);
        return Err(e);
    }
    File::open(parent)
        .and_then(|dir| dir.sync_all())
        .map_err(io_error("syncing directory", parent))?;
    Ok(true)
}

fn write_new_file(path: &Path, content: &[u8], mode: u32) -> Result<(), FileError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io_error("creating", path))?;
    file.write_all(content).map_err(io_error("writing", path))?;
    // The umask may have cleared bits of the mode given at creation.
    file.set_permissions(Permissions::from_mode(mode))
        .map_err(io_error("setting the mode of", path))?;
    file.sync_all().map_err(io_error("syncing", path))
}

fn has_content_and_mode(path: &Path, content: &[u8], mode: u32) -> bool {
    let Ok(metadata) = fs::symlink_metadata(path) else {
        return false;
    };
    if !metadata.is_file()
        || metadata.len() != content.len() as u64
        || metadata.permissions().mode() & 0o7777 != mode
    {
        return false;
    }
    let mut existing = Vec::with_capacity(content.len());
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut existing))
        .map(|_| existing == content)
        .unwrap_or(false)
}

/// Removes a file, a symbolic link (not its target) or a directory with its contents.
/// Returns false when nothing was there.
pub fn remove_path(path: &Path) -> Result<bool, FileError> {
    let metadata = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_error("inspecting", path)(e)),
    };
    let removed = if metadata.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    };
    match removed {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_error("removing", path)(e)),
    }
}

/// Creates `path` and its parents with `mode` for the directories it creates.
pub fn create_dir_with_mode(path: &Path, mode: u32) -> Result<(), FileError> {
    DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .map_err(io_error("creating directory", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_with_mode_creates_parents_and_reports_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/secret.key");
        assert!(write_atomically(&path, b"one", 0o600).unwrap());
        assert_eq!(fs::read(&path).unwrap(), b"one");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o7777,
            0o600
        );
        assert!(!write_atomically(&path, b"one", 0o600).unwrap());
        assert!(write_atomically(&path, b"one", 0o640).unwrap());
        assert!(write_atomically(&path, b"two", 0o640).unwrap());
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let leftovers: Vec<_> = fs::read_dir(dir.path().join("a/b"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("secret.key")]);
    }

    #[test]
    fn refuses_impossible_modes() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            write_atomically(&dir.path().join("f"), b"", 0o17777),
            Err(FileError::InvalidMode(_))
        ));
    }

    #[test]
    fn removes_files_and_directories_and_tolerates_absence() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("sub");
        write_atomically(&sub.join("x/y"), b"y", 0).unwrap();
        assert!(remove_path(&sub).unwrap());
        assert!(!sub.exists());
        assert!(!remove_path(&sub).unwrap());
    }
}
