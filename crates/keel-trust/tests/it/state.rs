use keel_trust::{State, verify_manifest};

use crate::common::*;

#[test]
fn anti_rollback_with_state_file() {
    let a = key(1);
    let ring = ring(1, &[&a]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");

    let check = |version: u64, m: &keel_trust::Manifest| {
        let mut st = State::load(&path).unwrap();
        let mut r = verify_manifest(m, &ring, &opts());
        st.check_report(&mut r);
        st.record(&r);
        st.save(&path).unwrap();
        let _ = version;
        r
    };
    assert!(check(2, &signed(2, &[&a])).valid);
    assert!(check(3, &signed(3, &[&a])).valid);
    let r = check(2, &signed(2, &[&a]));
    assert_eq!(codes(&r), ["rolled_back"]);
    assert!(r.problems[0].message.contains("below 3, already accepted"));
    // The same version with other content: mix-and-match.
    let mut other = crate::common::manifest(3);
    other.entries[0].size = 1;
    other.sign(&a).unwrap();
    assert_eq!(codes(&check(3, &other)), ["version_reused"]);
    // Re-verifying the accepted version is fine.
    assert!(check(3, &signed(3, &[&a])).valid);
    let st = State::load(&path).unwrap();
    assert_eq!(st.manifests["dataset"].version, 3);
    assert_eq!(st.policy_serial, 1);
    assert!(st.check_policy(0).is_err());
}

#[test]
fn corrupt_state_file_is_an_error_not_a_reset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    std::fs::write(&path, b"{\"schema_version\":1,").unwrap();
    assert!(State::load(&path).is_err());
}

#[test]
fn concurrent_updates_are_all_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    // Eight writers (as eight keel processes would: each update opens the lock file anew),
    // each accepting 25 manifests of its own.
    std::thread::scope(|s| {
        for w in 0..8 {
            let path = &path;
            s.spawn(move || {
                for v in 0..25 {
                    State::update(path, |st| {
                        st.manifests.insert(
                            format!("w{w}-m{v}"),
                            keel_trust::Accepted {
                                version: v,
                                digest: format!("d{v}"),
                            },
                        );
                        Ok(())
                    })
                    .unwrap();
                }
            });
        }
    });
    assert_eq!(State::load(&path).unwrap().manifests.len(), 8 * 25);
}

#[test]
fn a_failed_update_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    State::update(&path, |st| {
        st.policy_serial = 3;
        Ok(())
    })
    .unwrap();
    let err = State::update(&path, |st| {
        st.policy_serial = 9;
        st.check_policy(1)
    });
    assert!(err.is_err());
    assert_eq!(State::load(&path).unwrap().policy_serial, 3);
}
