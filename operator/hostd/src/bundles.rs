//! Bundles: versions of hakube's binaries, downloaded from the operator's artifact endpoint
//! over mutual TLS, checked against their sha256 and unpacked into `<bundles>/<version>/`.
//!
//! A bundle directory appears whole or not at all: the archive is unpacked into a temporary
//! directory as it downloads, and that directory is renamed into place once the archive has
//! matched its sha256.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::http_client::{HttpClient, HttpError};
use crate::units::spec::valid_bundle_version;

/// Inside each bundle directory: what was fetched.
const METADATA_FILE: &str = ".hakube-bundle.json";
/// Prefix of downloads and unpackings in progress; removed at start-up.
const TEMPORARY_PREFIX: &str = ".tmp-";
/// A download stalls if no data arrives for this long.
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error(
        "bundle version {0:?} must match [A-Za-z0-9][A-Za-z0-9._+-]* (at most 128 characters)"
    )]
    InvalidVersion(String),
    #[error("sha256 {0:?} is not 64 hexadecimal digits")]
    InvalidSha256(String),
    #[error("bundle URL {0:?} must be https")]
    NotHttps(String),
    #[error("bundle {version} is already present with sha256 {present}, not {requested}")]
    Conflict {
        version: String,
        present: String,
        requested: String,
    },
    #[error("downloading {url}: {source}")]
    Download { url: String, source: HttpError },
    #[error("downloading {url}: HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("downloading {url}: {reason}")]
    Transfer { url: String, reason: String },
    #[error("bundle {version} from {url}: sha256 is {actual}, expected {expected}; nothing kept")]
    Mismatch {
        version: String,
        url: String,
        expected: String,
        actual: String,
    },
    #[error("bundle {version}: unpacking: {reason}")]
    Unpack { version: String, reason: String },
    #[error("bundle store {path:?}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("bundle {version} is used by units {units:?}")]
    InUse { version: String, units: Vec<String> },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleInfo {
    pub version: String,
    pub sha256: String,
    pub archive_bytes: u64,
}

pub struct BundleStore {
    dir: PathBuf,
    /// Over mutual TLS with hostd's certificate, verifying the server with the cluster CA.
    client: HttpClient,
    /// One fetch or removal at a time: two fetches of one version must not race.
    changes: tokio::sync::Mutex<()>,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> BundleError + '_ {
    move |source| BundleError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl BundleStore {
    /// Creates the directory and removes what interrupted fetches left.
    pub fn open(dir: PathBuf, client: HttpClient) -> Result<Self, BundleError> {
        std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        for entry in std::fs::read_dir(&dir).map_err(io_error(&dir))?.flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(TEMPORARY_PREFIX)
            {
                let path = entry.path();
                if let Err(e) = crate::files::remove_path(&path) {
                    tracing::warn!("removing a leftover of an interrupted fetch: {e}");
                }
            }
        }
        Ok(BundleStore {
            dir,
            client,
            changes: tokio::sync::Mutex::new(()),
        })
    }

    pub fn path(&self, version: &str) -> PathBuf {
        self.dir.join(version)
    }

    /// Returns the bundle and whether it was downloaded now.
    pub async fn fetch(
        &self,
        version: &str,
        url: &str,
        sha256: &str,
    ) -> Result<(BundleInfo, bool), BundleError> {
        if !valid_bundle_version(version) {
            return Err(BundleError::InvalidVersion(version.to_string()));
        }
        let expected = sha256.to_ascii_lowercase();
        if expected.len() != 64 || !expected.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(BundleError::InvalidSha256(sha256.to_string()));
        }
        if !url.starts_with("https://") {
            return Err(BundleError::NotHttps(url.to_string()));
        }
        let _change = self.changes.lock().await;
        if let Some(present) = read_metadata(&self.path(version)) {
            if present.sha256 == expected {
                return Ok((present, false));
            }
            return Err(BundleError::Conflict {
                version: version.to_string(),
                present: present.sha256,
                requested: expected,
            });
        }
        // Unpacked as it arrives, into a temporary directory that becomes the bundle only once
        // the whole archive has matched its sha256: the host's disk and the network work at
        // the same time, and no copy of the archive is written.
        let unpack_dir = self.dir.join(format!(
            "{TEMPORARY_PREFIX}{version}-{:016x}",
            rand::random::<u64>()
        ));
        let (chunks, received) = tokio::sync::mpsc::channel(UNPACK_QUEUE_CHUNKS);
        let unpacking = {
            let unpack_dir = unpack_dir.clone();
            tokio::task::spawn_blocking(move || unpack(ChannelReader::new(received), &unpack_dir))
        };
        let downloaded = self.download(url, chunks).await;
        let unpacked = unpacking
            .await
            .unwrap_or_else(|e| Err(e.to_string()))
            .map_err(|reason| BundleError::Unpack {
                version: version.to_string(),
                reason,
            });
        let info = downloaded.and_then(|(actual, archive_bytes)| {
            if actual != expected {
                return Err(BundleError::Mismatch {
                    version: version.to_string(),
                    url: url.to_string(),
                    expected: expected.clone(),
                    actual,
                });
            }
            unpacked?;
            Ok(BundleInfo {
                version: version.to_string(),
                sha256: expected.clone(),
                archive_bytes,
            })
        });
        let installed =
            info.and_then(|info| install(&unpack_dir, &self.path(version), &info).map(|()| info));
        match installed {
            Ok(info) => {
                tracing::info!(version, url, "bundle fetched");
                Ok((info, true))
            }
            Err(e) => {
                discard(&unpack_dir);
                Err(e)
            }
        }
    }

    /// Streams the body to `chunks` (the unpacking), hashing it; returns its sha256 and size.
    /// Should the unpacking stop early, the rest is still read and hashed, so that a corrupted
    /// archive is reported as not matching its sha256.
    async fn download(
        &self,
        url: &str,
        chunks: tokio::sync::mpsc::Sender<Bytes>,
    ) -> Result<(String, u64), BundleError> {
        let response = self
            .client
            .get(url)
            .await
            .map_err(|source| BundleError::Download {
                url: url.to_string(),
                source,
            })?;
        let status = response.status();
        if !status.is_success() {
            let body = crate::http_client::read_body_limited(response, 4096)
                .await
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            return Err(BundleError::Status {
                url: url.to_string(),
                status: status.as_u16(),
                body,
            });
        }
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut body = response.into_body();
        loop {
            let frame = match tokio::time::timeout(READ_TIMEOUT, body.frame()).await {
                Err(_) => {
                    return Err(BundleError::Transfer {
                        url: url.to_string(),
                        reason: format!("no data for {READ_TIMEOUT:?}"),
                    })
                }
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    return Err(BundleError::Transfer {
                        url: url.to_string(),
                        reason: e.to_string(),
                    })
                }
                Ok(Some(Ok(frame))) => frame,
            };
            if let Ok(data) = frame.into_data() {
                hasher.update(&data);
                size += data.len() as u64;
                // A closed channel means the unpacking failed; its error is reported then.
                let _ = chunks.send(data).await;
            }
        }
        Ok((hex(&hasher.finalize()), size))
    }

    pub fn list(&self) -> Vec<BundleInfo> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut bundles: Vec<BundleInfo> = entries
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .filter_map(|e| read_metadata(&e.path()))
            .collect();
        bundles.sort_by(|a, b| a.version.cmp(&b.version));
        bundles
    }

    /// False when the version was not present.
    pub async fn remove(&self, version: &str, used_by: Vec<String>) -> Result<bool, BundleError> {
        if !valid_bundle_version(version) {
            return Err(BundleError::InvalidVersion(version.to_string()));
        }
        if !used_by.is_empty() {
            return Err(BundleError::InUse {
                version: version.to_string(),
                units: used_by,
            });
        }
        let _change = self.changes.lock().await;
        let path = self.path(version);
        // Renamed away first, so that a half-removed bundle never looks present.
        let doomed = self.dir.join(format!(
            "{TEMPORARY_PREFIX}removing-{version}-{:016x}",
            rand::random::<u64>()
        ));
        match std::fs::rename(&path, &doomed) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_error(&path)(e)),
        }
        tokio::task::spawn_blocking(move || crate::files::remove_path(&doomed))
            .await
            .map_err(|e| BundleError::Io {
                path: path.clone(),
                source: std::io::Error::other(e.to_string()),
            })?
            .map_err(|e| BundleError::Io {
                path,
                source: std::io::Error::other(e.to_string()),
            })?;
        Ok(true)
    }
}

/// Chunks of a download waiting for the unpacking: a few MiB at most.
const UNPACK_QUEUE_CHUNKS: usize = 64;

/// Unpacks a compressed tar stream into `unpack_dir`.
fn unpack(compressed: impl Read, unpack_dir: &Path) -> Result<(), String> {
    let stream = hakube_hostd_api::bundle::tar_stream(compressed).map_err(|e| e.to_string())?;
    let mut tar = tar::Archive::new(stream);
    tar.set_preserve_permissions(true);
    tar.set_overwrite(false);
    // `unpack` refuses entries that would land outside the directory (.., absolute links).
    tar.unpack(unpack_dir).map_err(|e| e.to_string())
}

/// Makes an unpacked bundle the version's: its metadata written, the directory renamed into
/// place and the rename synced.
fn install(unpack_dir: &Path, target: &Path, info: &BundleInfo) -> Result<(), BundleError> {
    let unpack_error = |reason: String| BundleError::Unpack {
        version: info.version.clone(),
        reason,
    };
    let metadata = serde_json::to_vec_pretty(info).map_err(|e| unpack_error(e.to_string()))?;
    crate::files::write_atomically(&unpack_dir.join(METADATA_FILE), &metadata, 0o644)
        .map_err(|e| unpack_error(e.to_string()))?;
    std::fs::rename(unpack_dir, target).map_err(io_error(target))?;
    if let Some(parent) = target.parent() {
        std::fs::File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(io_error(parent))?;
    }
    Ok(())
}

/// The chunks of a download as a blocking reader, for the unpacking thread.
struct ChannelReader {
    chunks: tokio::sync::mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl ChannelReader {
    fn new(chunks: tokio::sync::mpsc::Receiver<Bytes>) -> Self {
        ChannelReader {
            chunks,
            current: Bytes::new(),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

fn read_metadata(bundle_dir: &Path) -> Option<BundleInfo> {
    let bytes = std::fs::read(bundle_dir.join(METADATA_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn discard(path: &Path) {
    if let Err(e) = crate::files::remove_path(path) {
        tracing::warn!("{e}");
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lowercase_and_padded() {
        assert_eq!(hex(&[0x00, 0xab, 0x0f]), "00ab0f");
    }

    #[test]
    fn unpacking_is_complete_or_absent() {
        let dir = tempfile::tempdir().unwrap();
        let mut archive = Vec::new();
        {
            let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
                &mut archive,
                Default::default(),
            ));
            let mut header = tar::Header::new_gnu();
            header.set_size(3);
            header.set_mode(0o755);
            header.set_cksum();
            builder
                .append_data(&mut header, "bin/tool", &b"abc"[..])
                .unwrap();
            builder.into_inner().unwrap().finish().unwrap();
        }
        let info = BundleInfo {
            version: "v1".into(),
            sha256: "x".into(),
            archive_bytes: 1,
        };
        let target = dir.path().join("v1");
        let unpack_dir = dir.path().join(".tmp-v1");
        // In chunks, as a download delivers them.
        let (chunks, received) = tokio::sync::mpsc::channel(UNPACK_QUEUE_CHUNKS);
        let unpacking = std::thread::spawn({
            let unpack_dir = unpack_dir.clone();
            move || unpack(ChannelReader::new(received), &unpack_dir)
        });
        for piece in archive.chunks(7) {
            chunks.blocking_send(Bytes::copy_from_slice(piece)).unwrap();
        }
        drop(chunks);
        unpacking.join().unwrap().unwrap();
        assert!(!target.exists(), "not the version's before it is installed");
        install(&unpack_dir, &target, &info).unwrap();
        assert_eq!(std::fs::read(target.join("bin/tool")).unwrap(), b"abc");
        assert_eq!(read_metadata(&target), Some(info.clone()));
        assert!(!unpack_dir.exists());

        let broken = unpack(&b"not gzip"[..], &dir.path().join(".tmp-v2")).unwrap_err();
        assert!(broken.contains("not a bundle"), "{broken}");
    }
}
