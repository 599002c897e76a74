//! Staged rotation of a Cluster's certificate authorities, asked for by a new value of
//! `spec.certificates.authorityRotation`: the new authorities are trusted everywhere first, then
//! every leaf is re-issued by them, then the old ones are dropped. Each phase is recorded in the
//! Cluster's status before the PKI acts on it, and moves on only once every host runs what the
//! phase renders and serves, so a restarted or new operator leader resumes where the last left.
//! Pure: the controller supplies what it observed.

use hakube_operator_api::cluster::AuthorityRotationPhase as Phase;

use crate::pki::Stage;

/// The rotation as recorded in the Cluster's status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rotation {
    pub request: String,
    pub phase: Phase,
}

/// What the PKI does in `recorded`'s phase.
pub fn stage(recorded: Option<&Rotation>) -> Stage {
    match recorded.map(|r| r.phase) {
        None | Some(Phase::Completed) => Stage::Steady,
        Some(Phase::TrustingNew) => Stage::BothTrusted {
            sign_with_next: false,
        },
        Some(Phase::ReissuingLeaves) => Stage::BothTrusted {
            sign_with_next: true,
        },
        Some(Phase::DroppingOld) => Stage::Promote,
    }
}

/// What the controller saw this reconcile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Every host runs what this reconcile rendered, serves, and no Secret changed.
    pub settled: bool,
    /// The Cluster has never been available: its authorities are as new as any rotation's.
    pub bringing_up: bool,
}

/// The rotation to record now, when it changes: a new request starts one (or, for a Cluster
/// still coming up, is answered at once); a settled phase gives way to the next. A request
/// changed mid-rotation waits for the running rotation to complete.
pub fn advance(
    requested: Option<&str>,
    recorded: Option<&Rotation>,
    progress: Progress,
) -> Option<Rotation> {
    match recorded {
        Some(rotation) if rotation.phase != Phase::Completed => {
            let next = match rotation.phase {
                Phase::TrustingNew => Phase::ReissuingLeaves,
                Phase::ReissuingLeaves => Phase::DroppingOld,
                Phase::DroppingOld | Phase::Completed => Phase::Completed,
            };
            progress.settled.then(|| Rotation {
                request: rotation.request.clone(),
                phase: next,
            })
        }
        _ => {
            let request = requested?;
            if recorded.is_some_and(|r| r.request == request) {
                return None;
            }
            Some(Rotation {
                request: request.to_string(),
                phase: if progress.bringing_up {
                    Phase::Completed
                } else {
                    Phase::TrustingNew
                },
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTLED: Progress = Progress {
        settled: true,
        bringing_up: false,
    };
    const ROLLING: Progress = Progress {
        settled: false,
        bringing_up: false,
    };

    fn at(request: &str, phase: Phase) -> Rotation {
        Rotation {
            request: request.into(),
            phase,
        }
    }

    #[test]
    fn nothing_happens_without_a_new_request() {
        assert_eq!(advance(None, None, SETTLED), None);
        let done = at("r1", Phase::Completed);
        assert_eq!(advance(Some("r1"), Some(&done), SETTLED), None);
        assert_eq!(advance(None, Some(&done), SETTLED), None);
        assert_eq!(stage(Some(&done)), Stage::Steady);
        assert_eq!(stage(None), Stage::Steady);
    }

    #[test]
    fn a_request_walks_the_three_stages_each_once_the_hosts_settle() {
        let started = advance(Some("r1"), None, ROLLING).unwrap();
        assert_eq!(started, at("r1", Phase::TrustingNew));
        assert_eq!(
            stage(Some(&started)),
            Stage::BothTrusted {
                sign_with_next: false
            }
        );
        assert_eq!(advance(Some("r1"), Some(&started), ROLLING), None);

        let reissuing = advance(Some("r1"), Some(&started), SETTLED).unwrap();
        assert_eq!(reissuing, at("r1", Phase::ReissuingLeaves));
        assert_eq!(
            stage(Some(&reissuing)),
            Stage::BothTrusted {
                sign_with_next: true
            }
        );

        let dropping = advance(Some("r1"), Some(&reissuing), SETTLED).unwrap();
        assert_eq!(dropping, at("r1", Phase::DroppingOld));
        assert_eq!(stage(Some(&dropping)), Stage::Promote);
        assert_eq!(advance(Some("r1"), Some(&dropping), ROLLING), None);

        let done = advance(Some("r1"), Some(&dropping), SETTLED).unwrap();
        assert_eq!(done, at("r1", Phase::Completed));
        assert_eq!(stage(Some(&done)), Stage::Steady);
    }

    #[test]
    fn a_second_request_starts_again_and_one_made_mid_rotation_waits() {
        let done = at("r1", Phase::Completed);
        assert_eq!(
            advance(Some("r2"), Some(&done), ROLLING),
            Some(at("r2", Phase::TrustingNew))
        );
        let reissuing = at("r1", Phase::ReissuingLeaves);
        assert_eq!(
            advance(Some("r2"), Some(&reissuing), SETTLED),
            Some(at("r1", Phase::DroppingOld))
        );
        // Taking the request back does not abandon a rotation half done.
        assert_eq!(
            advance(None, Some(&reissuing), SETTLED),
            Some(at("r1", Phase::DroppingOld))
        );
    }

    #[test]
    fn a_cluster_coming_up_answers_the_request_with_its_new_authorities() {
        let progress = Progress {
            settled: false,
            bringing_up: true,
        };
        assert_eq!(
            advance(Some("r1"), None, progress),
            Some(at("r1", Phase::Completed))
        );
    }
}
