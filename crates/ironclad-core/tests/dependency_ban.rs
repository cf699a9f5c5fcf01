//! Architecture Invariant: the decision core does no I/O, so none of the
//! crates that do (an async runtime, a database, HTTP, metrics or tracing)
//! may appear among its normal dependencies, direct or transitive. This
//! test asks cargo for the resolved tree and fails naming the crate and
//! the path that brought it in.

use std::process::Command;

/// Crates whose presence would mean the core reaches for I/O or globals.
const BANNED: &[&str] = &[
    "tokio", "rusqlite", "reqwest", "axum", "hyper", "metrics", "tracing",
];

#[test]
fn core_has_no_io_dependencies() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let out = Command::new(cargo)
        .args([
            "tree",
            "-p",
            "ironclad-core",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "cargo tree failed: {stderr}");
    let tree = String::from_utf8_lossy(&out.stdout);
    let names: Vec<&str> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert!(
        names.contains(&"ironclad-core") && names.len() > 3,
        "cargo tree printed no dependency tree:\n{tree}"
    );
    let found: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| {
            BANNED
                .iter()
                .any(|b| n == b || n.starts_with(&format!("{b}-")))
        })
        .collect();
    assert!(
        found.is_empty(),
        "ironclad-core must not depend on {found:?}; run `cargo tree -p ironclad-core -e normal -i {}` to see what pulls it in",
        found.first().copied().unwrap_or_default()
    );
}
