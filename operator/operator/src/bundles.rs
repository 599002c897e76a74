//! Version bundles: `<bundle-dir>/<version>.tar.gz`, each holding the hakube binaries of one
//! version. The operator serves them to hosts (which check the sha256 it sends along) and
//! renders only the components a version contains.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("reading bundle directory {dir}: {source}")]
    ReadDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("reading bundle {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One version's bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bundle {
    pub version: String,
    pub path: PathBuf,
    pub sha256: String,
    /// File names at the top of the archive.
    pub binaries: Vec<String>,
}

const SUFFIX: &str = ".tar.gz";

/// Every bundle in `dir`, by version.
pub fn scan(dir: &Path) -> Result<BTreeMap<String, Bundle>, BundleError> {
    let entries = std::fs::read_dir(dir).map_err(|source| BundleError::ReadDir {
        dir: dir.to_path_buf(),
        source,
    })?;
    let mut bundles = BTreeMap::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(version) = name.strip_suffix(SUFFIX) else {
            continue;
        };
        let path = entry.path();
        let read = |source| BundleError::Read {
            path: path.clone(),
            source,
        };
        let bytes = std::fs::read(&path).map_err(read)?;
        let sha256 = hex(&Sha256::digest(&bytes));
        let mut binaries = Vec::new();
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
        for file in archive.entries().map_err(read)? {
            let mut file = file.map_err(read)?;
            let name = file.path().map_err(read)?.to_string_lossy().into_owned();
            let name = name.trim_start_matches("./").to_string();
            if !name.is_empty() && !name.contains('/') {
                binaries.push(name);
            }
            // Entries must be read through for the next header.
            std::io::copy(&mut file.by_ref(), &mut std::io::sink()).map_err(read)?;
        }
        binaries.sort();
        bundles.insert(
            version.to_string(),
            Bundle {
                version: version.to_string(),
                path,
                sha256,
                binaries,
            },
        );
    }
    Ok(bundles)
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A version name safe to use as a file name and URL segment.
pub fn is_version_name(version: &str) -> bool {
    !version.is_empty()
        && version.len() <= 128
        && !version.starts_with('.')
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+'))
}
