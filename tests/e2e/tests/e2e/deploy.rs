//! deploy/ is checked offline in the suite: `tests/deploy/validate.py`
//! renders the kustomize base and production overlay, validates every
//! object strictly against the Kubernetes schemas (1.30 and 1.37), checks
//! what an operator relies on (replicas, gRPC probes, non-root, Secret
//! references, the migration Job, HPA against PDB, the NetworkPolicy, every
//! environment variable a real setting), lints the Dockerfile with
//! hadolint, checks that deploy/Containerfile.scratch gives the same entry
//! point, command, user, environment, port and working directory as the
//! Dockerfile's final stage, checks the collector config's pipelines, and
//! checks that the tenant IAM policy allows exactly the IAM calls the code
//! makes. (Building and starting the image: tests/deploy/image.sh.)

use std::process::Command;

use super::support::workspace;

#[test]
fn deploy_manifests_dockerfile_collector_and_policies_validate() {
    let python = workspace().join("tests/.venv/bin/python");
    assert!(
        python.exists(),
        "tests/.venv is missing: run ./tests/run.sh, which installs the validator"
    );
    let output = Command::new(python)
        .arg(workspace().join("tests/deploy/validate.py"))
        .output()
        .expect("run tests/deploy/validate.py");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let failures: Vec<&str> = stdout.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert!(
        output.status.success() && failures.is_empty(),
        "deploy/ does not validate (exit {:?}):\n{}\n{stdout}\n{stderr}",
        output.status.code(),
        failures.join("\n")
    );
    // It really checked: the summary names well over a hundred checks.
    let summary = stdout.lines().last().unwrap_or_default();
    let passed: u32 = summary
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(passed >= 100, "too few checks ran: {summary}");
}
