//! ARCHITECTURE.md stays true: its layering table is exactly the crates'
//! dependencies as `cargo metadata` sees them, its code map names every
//! source file, it points at nothing outside the repository, and the
//! openraft built is the patched copy it describes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The outside crates the layering table speaks for.
const WATCHED: &[&str] = &[
    "coap-lite",
    "openraft",
    "prost",
    "rocksdb",
    "tokio",
    "tonic",
    "webrtc-dtls",
];

type Edges = BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)>;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn architecture() -> String {
    std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap()
}

fn list(cell: &str) -> BTreeSet<String> {
    cell.split(',')
        .map(|s| s.trim().trim_matches('`').to_owned())
        .filter(|s| !s.is_empty() && s != "—")
        .collect()
}

/// The table under "## Layering": crate -> (workspace crates, outside crates).
fn stated(doc: &str) -> Edges {
    let section = doc
        .split("\n## Layering\n")
        .nth(1)
        .expect("ARCHITECTURE.md has a Layering section");
    let section = section.split("\n## ").next().unwrap();
    let mut edges = Edges::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').collect();
        assert_eq!(cells.len(), 3, "a layering row has three cells: {line}");
        let name = cells[0].trim().trim_matches('`').to_owned();
        edges.insert(name, (list(cells[1]), list(cells[2])));
    }
    edges
}

/// What the manifests say, normal dependencies only.
fn actual() -> Edges {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let packages = meta["packages"].as_array().unwrap();
    let ours: BTreeSet<String> = packages
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    let mut edges = Edges::new();
    for p in packages {
        let mut inside = BTreeSet::new();
        let mut outside = BTreeSet::new();
        for d in p["dependencies"].as_array().unwrap() {
            if !d["kind"].is_null() {
                continue; // dev or build
            }
            let name = d["name"].as_str().unwrap().to_owned();
            if ours.contains(&name) {
                inside.insert(name);
            } else if WATCHED.contains(&name.as_str()) {
                outside.insert(name);
            }
        }
        edges.insert(p["name"].as_str().unwrap().to_owned(), (inside, outside));
    }
    edges
}

#[test]
fn the_layering_table_is_the_dependency_graph() {
    let stated = stated(&architecture());
    let actual = actual();
    let mut wrong = Vec::new();
    for (name, (inside, outside)) in &actual {
        match stated.get(name) {
            None => wrong.push(format!("{name} is not in the layering table")),
            Some((s_in, s_out)) => {
                for (what, have, said) in [("uses", inside, s_in), ("uses", outside, s_out)] {
                    for d in have.difference(said) {
                        wrong.push(format!("{name} {what} {d}, which the table does not allow"));
                    }
                    for d in said.difference(have) {
                        wrong.push(format!("the table says {name} uses {d}; it does not"));
                    }
                }
            }
        }
    }
    for name in stated.keys().filter(|n| !actual.contains_key(*n)) {
        wrong.push(format!(
            "the table lists {name}, which is no crate of the workspace"
        ));
    }
    assert!(
        wrong.is_empty(),
        "ARCHITECTURE.md's layering is wrong:\n{}",
        wrong.join("\n")
    );
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            sources(&path, out);
        } else if matches!(path.extension().and_then(|x| x.to_str()), Some("rs" | "py")) {
            out.push(path);
        }
    }
}

#[test]
fn the_code_map_names_every_source_file() {
    let doc = architecture();
    let root = root();
    let mut files = Vec::new();
    for crate_dir in std::fs::read_dir(root.join("crates")).unwrap().flatten() {
        for sub in ["src", "tests", "benches", "examples"] {
            sources(&crate_dir.path().join(sub), &mut files);
        }
    }
    sources(&root.join("tests"), &mut files);
    // Module roots and unit-test files carry no name worth a line.
    let missing: Vec<String> = files
        .iter()
        .filter(|f| {
            let name = f.file_name().unwrap().to_str().unwrap();
            !matches!(
                name,
                "lib.rs" | "main.rs" | "mod.rs" | "tests.rs" | "build.rs"
            ) && !doc.contains(&format!("`{name}`"))
                && !doc.contains(&format!("/{name}`"))
        })
        .map(|f| f.strip_prefix(&root).unwrap().display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md's code map does not name: {missing:#?}"
    );
}

#[test]
fn it_points_at_nothing_outside_the_repository() {
    let doc = architecture();
    let outside: Vec<&str> = doc.lines().filter(|l| l.contains("../")).collect();
    assert!(outside.is_empty(), "{outside:#?}");
}

/// The openraft built is the patched copy in `vendor/openraft`
/// (`IDREG-PATCH.md`: the leader's flush overlaps replication). A version
/// bump that left the `[patch.crates-io]` entry unused would bring back the
/// flush before replication without a word, so it fails here instead.
#[test]
fn openraft_is_the_vendored_patched_copy() {
    let lock = std::fs::read_to_string(root().join("Cargo.lock")).unwrap();
    let openraft: Vec<&str> = lock
        .split("[[package]]")
        .filter(|p| p.contains("\nname = \"openraft\"\n"))
        .collect();
    assert_eq!(openraft.len(), 1, "one openraft in Cargo.lock");
    assert!(
        !openraft[0].contains("source ="),
        "Cargo.lock takes openraft from a registry, not vendor/openraft:{}",
        openraft[0]
    );
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    assert!(
        manifest.contains("openraft = { path = \"vendor/openraft\" }"),
        "Cargo.toml patches openraft with vendor/openraft"
    );
    let core =
        std::fs::read_to_string(root().join("vendor/openraft/src/core/raft_core.rs")).unwrap();
    assert!(
        core.contains("fn append_to_log_in_background"),
        "vendor/openraft lacks idreg.patch"
    );
}
