//! deploy/: the Dockerfile against hadolint-style rules, every Kubernetes
//! manifest and the Helm chart's rendered output against
//! `kubernetes-validate --strict` (offline), and the chart rendering the same
//! objects as the plain manifests (the tested source).

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{external_tool, output_text};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn the_dockerfile_builds_small_non_root_pinned_and_secret_free() {
    let text = std::fs::read_to_string(repo().join("deploy/Dockerfile")).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    let froms: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert!(froms.len() >= 2, "a multi-stage build: {froms:?}");
    for f in &froms {
        let image = f.split_whitespace().nth(1).unwrap();
        let tag = image.split_once(':').map(|(_, t)| t).unwrap_or("");
        assert!(
            !tag.is_empty() && tag != "latest" && tag.chars().any(|c| c.is_ascii_digit()),
            "base image not pinned to a versioned tag: {f}"
        );
    }
    let last_from = lines.iter().rposition(|l| l.starts_with("FROM ")).unwrap();
    let user = lines[last_from..]
        .iter()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("the runtime stage sets USER");
    assert!(
        !user.starts_with("root") && !user.starts_with("0"),
        "runs as root: {user}"
    );
    for l in &lines {
        let upper = l.to_uppercase();
        if upper.starts_with("ENV ") || upper.starts_with("ARG ") {
            for word in ["KEK=", "PASSWORD", "SECRET=", "TOKEN="] {
                assert!(!upper.contains(word), "a secret in a layer: {l}");
            }
        }
        if upper.starts_with("COPY ") || upper.starts_with("ADD ") {
            for word in [".KEY", "KEK", ".P12"] {
                assert!(!upper.contains(word), "a secret copied into the image: {l}");
            }
        }
    }
    assert!(text.contains("VOLUME [\"/var/lib/idreg\"]"));
    assert!(text.contains("--locked"), "the build uses Cargo.lock");
}

/// (kind, name) of every object in the YAML files.
fn objects(files: &[PathBuf]) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for f in files {
        let text = std::fs::read_to_string(f).unwrap();
        for doc in text.split("\n---") {
            let kind = doc.lines().find_map(|l| l.strip_prefix("kind: "));
            let name = doc
                .lines()
                .skip_while(|l| !l.starts_with("metadata:"))
                .find_map(|l| l.strip_prefix("  name: "));
            if let (Some(k), Some(n)) = (kind, name) {
                out.insert((k.trim().to_owned(), n.trim().to_owned()));
            }
        }
    }
    out
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    v.sort();
    v
}

fn validate(tool: &Path, files: &[PathBuf]) {
    let out = Command::new(tool)
        .arg("--strict")
        .args(files)
        .output()
        .unwrap();
    let text = output_text(&out);
    assert!(out.status.success(), "kubernetes-validate failed:\n{text}");
    let passed = text.matches(" passed for resource ").count();
    assert_eq!(
        passed,
        objects(files).len(),
        "every object validated:\n{text}"
    );
}

#[test]
fn manifests_and_the_rendered_chart_validate_and_match() {
    let Some(validator) = external_tool("kubernetes-validate") else {
        return;
    };
    let manifests = yaml_files(&repo().join("deploy/kubernetes"));
    validate(&validator, &manifests);

    // The chart, rendered by tests/clients/render_chart.py with its defaults.
    let python = validator.with_file_name("python3");
    let out_dir = tempfile::tempdir().unwrap();
    let out = Command::new(&python)
        .arg(repo().join("tests/clients/render_chart.py"))
        .arg(repo().join("deploy/helm/idreg"))
        .arg(out_dir.path())
        .arg("idreg")
        .output()
        .unwrap();
    assert!(out.status.success(), "render: {out:?}");
    let rendered = yaml_files(out_dir.path());
    validate(&validator, &rendered);
    let plain: BTreeSet<_> = objects(&manifests)
        .into_iter()
        .filter(|(k, _)| k != "Secret") // the KEK Secret is the operator's, not the chart's
        .collect();
    assert_eq!(objects(&rendered), plain);

    // The pod simulation (tests/k8s_pods.rs) runs what the StatefulSet runs.
    let sts = std::fs::read_to_string(repo().join("deploy/kubernetes/statefulset.yaml")).unwrap();
    assert!(sts.contains(r#"args: ["serve", "--k8s"]"#));
    assert!(sts.contains(r#""cluster", "leave", "--k8s""#));
    let config = std::fs::read_to_string(repo().join("deploy/kubernetes/configmap.yaml")).unwrap();
    for (key, value) in [
        ("IDREG_PKI_DIR", "/etc/idreg/pki"),
        ("IDREG_PEER_ADDR", "0.0.0.0:50052"),
        ("IDREG_HEALTH_ADDR", "0.0.0.0:50053"),
    ] {
        assert!(config.contains(&format!("{key}: {value}")), "{key}");
    }
    assert!(sts.contains("mountPath: /etc/idreg/pki"));
    // Probes ask the plaintext health port, never the TLS ones.
    for probe in ["readinessProbe:", "livenessProbe:"] {
        let at = sts.find(probe).unwrap();
        assert!(
            sts[at..].lines().nth(2).unwrap().contains("port: 50053"),
            "{probe}"
        );
    }
    // Every node's Secret, and the CAs' certificates only (no CA key).
    for n in 1..=7 {
        assert!(sts.contains(&format!("name: idreg-node-{n}")), "node {n}");
    }
    assert!(!sts.contains("path: peer-ca.key") && !sts.contains("path: client-ca.key"));
    assert!(sts.contains("podManagementPolicy: Parallel"));
}
