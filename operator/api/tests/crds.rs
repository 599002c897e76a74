//! The CRDs committed under `config/crd/` are the ones the types generate. `make crds`
//! (`HAKUBE_UPDATE_CRDS=1`) rewrites them.

use std::path::PathBuf;

#[test]
fn committed_crds_match_the_types() {
    let dir = manifest_dir().join("../../config/crd");
    let update = std::env::var_os("HAKUBE_UPDATE_CRDS").is_some();
    for (file, yaml) in hakube_operator_api::crd_manifests().unwrap() {
        let path = dir.join(file);
        if update {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &yaml).unwrap();
            continue;
        }
        let committed = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; run `make crds`", path.display()));
        assert!(
            committed == yaml,
            "{} is stale; run `make crds` and commit it",
            path.display()
        );
    }
}

/// This crate's directory, read at run time: cargo reuses test binaries between checkouts that
/// share a target directory, so the compile-time value may name another checkout.
fn manifest_dir() -> PathBuf {
    PathBuf::from(
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into()),
    )
}
