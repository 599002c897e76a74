//! Which paths the operator may write and remove: absolute, normal paths strictly under one of
//! the allowed prefixes, and not inside hostd's own state.

use std::path::{Component, Path, PathBuf};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PathError {
    #[error("path is empty")]
    Empty,
    #[error("path {0:?} is not absolute")]
    NotAbsolute(String),
    #[error("path {0:?} contains '.' or '..' components")]
    NotNormal(String),
    #[error("path {0:?} contains a NUL byte")]
    Nul(String),
    #[error("path {path:?} is not under an allowed prefix ({allowed})")]
    NotAllowed { path: String, allowed: String },
    #[error("path {0:?} is inside hostd's own state")]
    Reserved(String),
}

/// The allowed prefixes and the reserved directories, both in lexical and (when they exist)
/// canonical form, so that symbolic links inside an allowed prefix cannot lead outside of it.
#[derive(Debug, Clone)]
pub struct AllowedPaths {
    prefixes: Vec<PathBuf>,
    reserved: Vec<PathBuf>,
}

impl AllowedPaths {
    /// `reserved`: directories under a prefix that stay hostd's own (keys, unit state, bundles).
    pub fn new(prefixes: &[PathBuf], reserved: &[PathBuf]) -> Self {
        AllowedPaths {
            prefixes: with_canonical_forms(prefixes),
            reserved: with_canonical_forms(reserved),
        }
    }

    /// The path, if the operator may write or remove it.
    pub fn check(&self, path: &str) -> Result<PathBuf, PathError> {
        let path = check_lexically(path, &self.prefixes, &self.reserved)?;
        // The path itself may not exist yet. If its nearest existing ancestor is at or under an
        // allowed prefix, that ancestor with links resolved must still be inside one; if it is
        // above the prefix, nothing below it exists and so no link can lead elsewhere.
        let Some(ancestor) = path
            .parent()
            .and_then(|parent| parent.ancestors().find(|a| a.symlink_metadata().is_ok()))
        else {
            return Ok(path);
        };
        if !self.prefixes.iter().any(|p| ancestor.starts_with(p)) {
            return Ok(path);
        }
        let resolved = ancestor.canonicalize().map_err(|_| PathError::NotAllowed {
            path: path.display().to_string(),
            allowed: self.describe(),
        })?;
        if !self.prefixes.iter().any(|p| resolved.starts_with(p)) {
            return Err(PathError::NotAllowed {
                path: path.display().to_string(),
                allowed: self.describe(),
            });
        }
        if self.reserved.iter().any(|r| resolved.starts_with(r)) {
            return Err(PathError::Reserved(path.display().to_string()));
        }
        Ok(path)
    }

    fn describe(&self) -> String {
        self.prefixes
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The checks that need no file system: the path is absolute and normal, strictly under one of
/// `prefixes` and not at or under one of `reserved`.
pub fn check_lexically(
    path: &str,
    prefixes: &[PathBuf],
    reserved: &[PathBuf],
) -> Result<PathBuf, PathError> {
    if path.is_empty() {
        return Err(PathError::Empty);
    }
    if path.contains('\0') {
        return Err(PathError::Nul(path.to_string()));
    }
    let candidate = Path::new(path);
    if !candidate.is_absolute() {
        return Err(PathError::NotAbsolute(path.to_string()));
    }
    // `Path::components` drops interior "." silently, so look at the raw segments.
    if path
        .split('/')
        .any(|segment| segment == "." || segment == "..")
    {
        return Err(PathError::NotNormal(path.to_string()));
    }
    let normal: PathBuf = candidate
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect();
    let strictly_under = |prefix: &PathBuf| normal.starts_with(prefix) && normal != *prefix;
    if !prefixes.iter().any(strictly_under) {
        return Err(PathError::NotAllowed {
            path: path.to_string(),
            allowed: prefixes
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    if reserved.iter().any(|r| normal.starts_with(r)) {
        return Err(PathError::Reserved(path.to_string()));
    }
    Ok(normal)
}

fn with_canonical_forms(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut all = Vec::new();
    for path in paths {
        all.push(path.clone());
        if let Ok(canonical) = path.canonicalize() {
            if canonical != *path {
                all.push(canonical);
            }
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefixes() -> Vec<PathBuf> {
        vec![
            PathBuf::from("/var/lib/hakube"),
            PathBuf::from("/etc/hakube"),
        ]
    }

    fn reserved() -> Vec<PathBuf> {
        vec![PathBuf::from("/var/lib/hakube/pki")]
    }

    #[test]
    fn paths_strictly_under_a_prefix_are_allowed() {
        assert_eq!(
            check_lexically("/etc/hakube/etcd/etcd.conf", &prefixes(), &reserved()),
            Ok(PathBuf::from("/etc/hakube/etcd/etcd.conf"))
        );
        assert_eq!(
            check_lexically("/var/lib/hakube/x//y/", &prefixes(), &reserved()),
            Ok(PathBuf::from("/var/lib/hakube/x/y"))
        );
    }

    #[test]
    fn prefixes_themselves_siblings_and_outsiders_are_refused() {
        for path in [
            "/etc/hakube",
            "/etc/hakube/",
            "/etc/hakube-other/file",
            "/etc/passwd",
            "/",
        ] {
            assert!(
                matches!(
                    check_lexically(path, &prefixes(), &reserved()),
                    Err(PathError::NotAllowed { .. })
                ),
                "{path}"
            );
        }
    }

    #[test]
    fn relative_dotted_and_nul_paths_are_refused() {
        assert_eq!(
            check_lexically("etc/hakube/x", &prefixes(), &reserved()),
            Err(PathError::NotAbsolute("etc/hakube/x".into()))
        );
        assert_eq!(
            check_lexically("/etc/hakube/../passwd", &prefixes(), &reserved()),
            Err(PathError::NotNormal("/etc/hakube/../passwd".into()))
        );
        assert_eq!(
            check_lexically("/etc/hakube/./x", &prefixes(), &reserved()),
            Err(PathError::NotNormal("/etc/hakube/./x".into()))
        );
        assert_eq!(
            check_lexically("/etc/hakube/a\0b", &prefixes(), &reserved()),
            Err(PathError::Nul("/etc/hakube/a\0b".into()))
        );
        assert_eq!(
            check_lexically("", &prefixes(), &reserved()),
            Err(PathError::Empty)
        );
    }

    #[test]
    fn hostds_own_state_is_refused() {
        assert_eq!(
            check_lexically("/var/lib/hakube/pki/host.key", &prefixes(), &reserved()),
            Err(PathError::Reserved("/var/lib/hakube/pki/host.key".into()))
        );
        assert_eq!(
            check_lexically("/var/lib/hakube/pki", &prefixes(), &reserved()),
            Err(PathError::Reserved("/var/lib/hakube/pki".into()))
        );
    }

    #[test]
    fn symbolic_links_out_of_a_prefix_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let allowed = dir.path().join("allowed");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&allowed).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, allowed.join("link")).unwrap();
        std::os::unix::fs::symlink(dir.path(), allowed.join("up")).unwrap();
        let paths = AllowedPaths::new(std::slice::from_ref(&allowed), &[]);
        for through_link in [allowed.join("link/file"), allowed.join("up/file")] {
            assert!(matches!(
                paths.check(through_link.to_str().unwrap()),
                Err(PathError::NotAllowed { .. })
            ));
        }
        let inside = allowed.join("sub/file");
        assert_eq!(paths.check(inside.to_str().unwrap()), Ok(inside.clone()));
        let not_yet_created = dir.path().join("later/file");
        let later = AllowedPaths::new(&[dir.path().join("later")], &[]);
        assert_eq!(
            later.check(not_yet_created.to_str().unwrap()),
            Ok(not_yet_created.clone())
        );
    }
}
