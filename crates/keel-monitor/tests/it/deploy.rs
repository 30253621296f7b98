//! The shipped Prometheus rules: the same as the built-in ones, valid, and unit-tested.

use std::path::PathBuf;
use std::process::Command;

fn deploy() -> PathBuf {
    keel_testkit::workspace_root().join("deploy/prometheus")
}

fn promtool(args: &[&str]) -> (bool, String) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(deploy())
        .output()
        .expect(
            "promtool (Debian package prometheus) is installed by scripts/install-tools --test",
        );
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn the_shipped_rule_file_is_the_built_in_rule_set() {
    let shipped = std::fs::read_to_string(deploy().join("keel.rules.yml")).unwrap();
    assert_eq!(
        shipped.trim_end(),
        keel_monitor::default_rules::prometheus_rules().trim_end(),
        "deploy/prometheus/keel.rules.yml is stale: run `keel alerts rules --prometheus > deploy/prometheus/keel.rules.yml`"
    );
}

#[test]
fn promtool_checks_and_unit_tests_every_shipped_alert() {
    let (ok, out) = promtool(&["check", "rules", "keel.rules.yml", "slo.rules.yml"]);
    assert!(ok, "{out}");
    let (ok, out) = promtool(&["test", "rules", "tests/keel.test.yml", "tests/slo.test.yml"]);
    assert!(ok, "{out}");
    // Every alert of every shipped file has a test in which it fires.
    let tests = std::fs::read_to_string(deploy().join("tests/keel.test.yml")).unwrap()
        + &std::fs::read_to_string(deploy().join("tests/slo.test.yml")).unwrap();
    for file in ["keel.rules.yml", "slo.rules.yml"] {
        let text = std::fs::read_to_string(deploy().join(file)).unwrap();
        for line in text.lines() {
            if let Some(name) = line.trim().strip_prefix("- alert: ") {
                let fired = tests
                    .split("alertname: ")
                    .skip(1)
                    .any(|t| t.starts_with(&format!("{name}\n")) && t.contains("exp_labels"));
                assert!(
                    fired,
                    "alert {name} of {file} has no promtool test where it fires"
                );
            }
        }
    }
}

#[test]
fn docs_list_every_built_in_rule_with_its_expression_and_runbook() {
    let doc =
        std::fs::read_to_string(keel_testkit::workspace_root().join("docs/monitoring.md")).unwrap();
    for b in keel_monitor::default_rules::BUILTIN {
        assert!(
            doc.contains(&format!("### {}\n", b.name)),
            "docs/monitoring.md lacks a section for {}",
            b.name
        );
        assert!(
            doc.contains(b.expr),
            "docs/monitoring.md lacks the expression of {}",
            b.name
        );
        assert!(
            doc.contains(b.runbook),
            "docs/monitoring.md lacks the runbook of {}",
            b.name
        );
    }
}
