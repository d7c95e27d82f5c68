//! The docs cannot drift from the binary: every shell block of README.md and docs/OPERATIONS.md
//! is run by `scripts/docs-run.py` (in order, in a network namespace of its own with a private
//! /tmp; blocks that cannot run here say why in a `docs-run: skip` directive, which the runner
//! prints). Needs root (namespaces); under CI=true that is required, elsewhere it is skipped.

use std::path::Path;
use std::process::Command;

#[test]
fn every_shell_block_of_the_readme_and_operations_runs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root");
    let bin = integration::agent::binary();
    if integration::peers::require("dig").is_none() || integration::peers::require("unshare").is_none() {
        return;
    }
    let out = Command::new("python3")
        .current_dir(root)
        .args(["scripts/docs-run.py", "--bin"])
        .arg(&bin)
        .args(["README.md", "docs/OPERATIONS.md"])
        .output()
        .expect("run scripts/docs-run.py");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if out.status.code() == Some(77) {
        assert!(!std::env::var("CI").is_ok_and(|v| v == "true"), "docs-run needs root under CI=true:\n{text}");
        eprintln!("SKIPPED: {text}");
        return;
    }
    assert!(out.status.success(), "a documented command failed:\n{text}");
    // Both files ran blocks (a parser that found nothing would pass vacuously).
    for f in ["README.md", "docs/OPERATIONS.md"] {
        let line =
            text.lines().find(|l| l.starts_with(&format!("{f}: "))).unwrap_or_else(|| panic!("{f} not run:\n{text}"));
        let ran: usize = line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or(0);
        assert!(ran >= 3, "{f}: only {ran} blocks ran:\n{text}");
    }
    println!("{text}");
}
