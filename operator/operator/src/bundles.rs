//! Version bundles: `<bundle-dir>/<version>.tar.zst` (or `.tar.gz`), each holding the hakube
//! binaries of one version. The operator serves them to hosts (which check the sha256 it sends
//! along) and renders only the components a version contains. A bundle's builder may describe
//! it in a first entry, [`MANIFEST`], which spares the operator a pass over the whole archive.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use hakube_hostd_api::bundle::{self, Manifest, MANIFEST};
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
    #[error("bundle {path}: its {MANIFEST} is malformed: {source}")]
    Manifest {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// One version's bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bundle {
    pub version: String,
    pub path: PathBuf,
    /// The archive's file name, which hosts fetch it by.
    pub file_name: String,
    pub sha256: String,
    /// File names at the top of the archive.
    pub binaries: Vec<String>,
}

/// The bundles read so far, by path, with the size and modification time they were read at:
/// each archive is hashed and listed once, not on every reconcile.
#[derive(Default)]
pub struct Catalog {
    read: Mutex<HashMap<PathBuf, (u64, SystemTime, Bundle)>>,
}

impl Catalog {
    /// Every bundle in `dir`, by version; archives changed since they were last read are read
    /// again.
    pub fn scan(&self, dir: &Path) -> Result<BTreeMap<String, Bundle>, BundleError> {
        let entries = std::fs::read_dir(dir).map_err(|source| BundleError::ReadDir {
            dir: dir.to_path_buf(),
            source,
        })?;
        let mut read = self.read.lock().unwrap_or_else(PoisonError::into_inner);
        let mut bundles = BTreeMap::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(version) = bundle::version_of(&name) else {
                continue;
            };
            // A version with both archives is served from the preferred one.
            let preferred = |other: &Bundle| {
                bundle::SUFFIXES.iter().position(|s| name.ends_with(s))
                    < bundle::SUFFIXES
                        .iter()
                        .position(|s| other.file_name.ends_with(s))
            };
            if bundles.get(version).is_some_and(|other| !preferred(other)) {
                continue;
            }
            let path = entry.path();
            let metadata = entry.metadata().map_err(|source| BundleError::Read {
                path: path.clone(),
                source,
            })?;
            let stamp = (
                metadata.len(),
                metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            );
            let bundle = match read.get(&path) {
                Some((len, modified, bundle)) if (*len, *modified) == stamp => bundle.clone(),
                _ => {
                    let bundle = read_bundle(&path, &name, version)?;
                    read.insert(path, (stamp.0, stamp.1, bundle.clone()));
                    bundle
                }
            };
            bundles.insert(version.to_string(), bundle);
        }
        Ok(bundles)
    }
}

/// Hashes one archive and lists the binaries at its top.
fn read_bundle(path: &Path, file_name: &str, version: &str) -> Result<Bundle, BundleError> {
    let read = |source| BundleError::Read {
        path: path.to_path_buf(),
        source,
    };
    let bytes = std::fs::read(path).map_err(read)?;
    let sha256 = hex(&Sha256::digest(&bytes));
    let mut binaries = Vec::new();
    let mut archive = tar::Archive::new(bundle::tar_stream(&bytes[..]).map_err(read)?);
    for (index, file) in archive.entries().map_err(read)?.enumerate() {
        let mut file = file.map_err(read)?;
        let name = file.path().map_err(read)?.to_string_lossy().into_owned();
        let name = name.trim_start_matches("./").to_string();
        if name == MANIFEST {
            if index == 0 {
                let manifest: Manifest =
                    serde_json::from_reader(&mut file).map_err(|source| BundleError::Manifest {
                        path: path.to_path_buf(),
                        source,
                    })?;
                binaries = manifest.binaries;
                binaries.retain(|name| !name.is_empty() && !name.contains('/'));
                break;
            }
        } else if !name.is_empty() && !name.contains('/') {
            binaries.push(name);
        }
        // Entries must be read through for the next header.
        std::io::copy(&mut file.by_ref(), &mut std::io::sink()).map_err(read)?;
    }
    binaries.sort();
    Ok(Bundle {
        version: version.to_string(),
        path: path.to_path_buf(),
        file_name: file_name.to_string(),
        sha256,
        binaries,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    type Archive = tar::Builder<flate2::write::GzEncoder<std::fs::File>>;

    fn build(path: &Path, fill: impl FnOnce(&mut Archive)) {
        let file = std::fs::File::create(path).unwrap();
        let mut archive =
            tar::Builder::new(flate2::write::GzEncoder::new(file, Default::default()));
        fill(&mut archive);
        archive.into_inner().unwrap().finish().unwrap();
    }

    fn append(archive: &mut Archive, name: &str, content: &[u8]) {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o755);
        header.set_cksum();
        archive.append_data(&mut header, name, content).unwrap();
    }

    fn write_bundle(path: &Path, binaries: &[&str]) {
        build(path, |archive| {
            for name in binaries {
                append(archive, name, b"\x7fELF");
            }
        });
    }

    fn manifest(binaries: &[&str]) -> Manifest {
        Manifest {
            binaries: binaries.iter().map(|b| b.to_string()).collect(),
        }
    }

    #[test]
    fn a_manifest_first_names_the_binaries_and_one_later_is_no_binary() {
        let dir = tempfile::tempdir().unwrap();
        // Whatever follows a first manifest is not read: it is the builder's word.
        build(&dir.path().join("v1.tar.gz"), |archive| {
            manifest(&["hakube-apiserver", "hakube-scheduler"])
                .append_to(archive)
                .unwrap();
            append(archive, "hakube-apiserver", b"\x7fELF");
        });
        build(&dir.path().join("v2.tar.gz"), |archive| {
            append(archive, "hakube-apiserver", b"\x7fELF");
            manifest(&["hakube-scheduler"]).append_to(archive).unwrap();
        });
        let bundles = Catalog::default().scan(dir.path()).unwrap();
        assert_eq!(
            bundles["v1"].binaries,
            ["hakube-apiserver", "hakube-scheduler"]
        );
        assert_eq!(bundles["v2"].binaries, ["hakube-apiserver"]);

        let malformed = dir.path().join("v3.tar.gz");
        build(&malformed, |archive| append(archive, MANIFEST, b"nope}"));
        let error = Catalog::default().scan(dir.path()).unwrap_err();
        assert!(
            matches!(&error, BundleError::Manifest { path, .. } if path == &malformed),
            "{error}"
        );
    }

    #[test]
    fn a_zstd_archive_is_preferred_to_a_gzip_one_of_the_same_version() {
        let dir = tempfile::tempdir().unwrap();
        write_bundle(&dir.path().join("v1.tar.gz"), &["hakube-apiserver"]);
        let file = std::fs::File::create(dir.path().join("v1.tar.zst")).unwrap();
        let mut archive = tar::Builder::new(bundle::zstd_writer(file).unwrap());
        manifest(&["hakube-apiserver", "hakube-scheduler"])
            .append_to(&mut archive)
            .unwrap();
        archive.into_inner().unwrap().finish().unwrap();
        let bundles = Catalog::default().scan(dir.path()).unwrap();
        assert_eq!(bundles.len(), 1);
        assert_eq!(bundles["v1"].file_name, "v1.tar.zst");
        assert_eq!(
            bundles["v1"].binaries,
            ["hakube-apiserver", "hakube-scheduler"]
        );
    }

    #[test]
    fn bundles_are_read_once_and_again_when_they_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.tar.gz");
        write_bundle(&path, &["hakube-apiserver"]);
        std::fs::write(dir.path().join("notes.txt"), "not a bundle").unwrap();
        let catalog = Catalog::default();
        let first = catalog.scan(dir.path()).unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(first["v1"].binaries, ["hakube-apiserver"]);
        assert_eq!(first["v1"].sha256.len(), 64);
        assert_eq!(catalog.scan(dir.path()).unwrap(), first);

        write_bundle(&path, &["hakube-apiserver", "hakube-scheduler"]);
        let file = std::fs::File::options().append(true).open(&path).unwrap();
        file.set_modified(SystemTime::now() + std::time::Duration::from_secs(5))
            .unwrap();
        let second = catalog.scan(dir.path()).unwrap();
        assert_eq!(
            second["v1"].binaries,
            ["hakube-apiserver", "hakube-scheduler"]
        );
        assert_ne!(second["v1"].sha256, first["v1"].sha256);
    }
}
