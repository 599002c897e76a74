//! Size-based rotation of unit log files.
//!
//! A unit writes its log file directly (so it needs no hostd to keep running), which means the
//! file cannot be renamed away under it: its descriptor would follow the rename. Instead the
//! file is copied to `<log>.1` (older copies shifting to `.2`, `.3`, ...) and truncated in
//! place; the unit appends (O_APPEND), so its next write lands at the new end. Lines written
//! between the copy and the truncation are lost; that window is one copy long.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

pub fn rotated_path(log: &Path, index: u32) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(format!(".{index}"));
    PathBuf::from(name)
}

/// Rotates `log` if it is larger than `max_size`, keeping `keep` old files.
/// Returns whether it rotated.
pub fn rotate_if_larger(log: &Path, max_size: u64, keep: u32) -> io::Result<bool> {
    let size = match fs::metadata(log) {
        Ok(metadata) => metadata.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if size <= max_size {
        return Ok(false);
    }
    if keep > 0 {
        for index in (1..keep).rev() {
            let from = rotated_path(log, index);
            if from.exists() {
                fs::rename(&from, rotated_path(log, index + 1))?;
            }
        }
        fs::copy(log, rotated_path(log, 1))?;
    }
    OpenOptions::new().write(true).open(log)?.set_len(0)?;
    Ok(true)
}

/// The last `max_bytes` of a file.
pub fn read_tail(path: &Path, max_bytes: u64) -> io::Result<Vec<u8>> {
    let mut file = fs::File::open(path)?;
    let size = file.metadata()?.len();
    file.seek(SeekFrom::Start(size.saturating_sub(max_bytes)))?;
    let mut tail = Vec::new();
    file.take(max_bytes).read_to_end(&mut tail)?;
    Ok(tail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn rotation_keeps_the_newest_copies_and_appending_writers_continue() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("unit.log");
        let mut writer = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        for round in 0..4u8 {
            writer.write_all(&[b'a' + round; 20]).unwrap();
            assert!(rotate_if_larger(&log, 10, 2).unwrap());
        }
        assert!(!rotate_if_larger(&log, 10, 2).unwrap());
        assert_eq!(fs::read(rotated_path(&log, 1)).unwrap(), vec![b'd'; 20]);
        assert_eq!(fs::read(rotated_path(&log, 2)).unwrap(), vec![b'c'; 20]);
        assert!(!rotated_path(&log, 3).exists());
        writer.write_all(b"after").unwrap();
        assert_eq!(fs::read(&log).unwrap(), b"after");
    }

    #[test]
    fn tails_are_the_end_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("unit.log");
        fs::write(&log, b"0123456789").unwrap();
        assert_eq!(read_tail(&log, 4).unwrap(), b"6789");
        assert_eq!(read_tail(&log, 100).unwrap(), b"0123456789");
    }
}
