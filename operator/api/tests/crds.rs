//! The CRDs committed under `config/crd/` are the ones the types generate. `make crds`
//! (`HAKUBE_UPDATE_CRDS=1`) rewrites them.

use std::path::PathBuf;

#[test]
fn committed_crds_match_the_types() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../config/crd");
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
