//! Real third-party programs used as peers (`dig`, `dnsmasq`, Python clients). Under `CI=true` a missing peer
//! fails the test (`.ci/run` installs them); elsewhere the test says it skipped.

use std::path::PathBuf;

/// Finds `prog` on `PATH` (and in /usr/sbin, where Debian puts dnsmasq).
pub fn find(prog: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).chain(["/usr/sbin".into(), "/sbin".into()]).map(|d| d.join(prog)).find(|p| p.is_file())
}

/// The peer's path; panics under CI when missing, else prints a skip notice and returns None.
pub fn require(prog: &str) -> Option<PathBuf> {
    match find(prog) {
        Some(p) => Some(p),
        None if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{prog} is required under CI=true (.ci/run installs it) but was not found")
        }
        None => {
            eprintln!("SKIPPED: {prog} is not installed (apt-get install it, or run .ci/run)");
            None
        }
    }
}

/// A `python3` that can import `module` (installed from PyPI as `package`); panics under CI when
/// there is none, else prints a skip notice and returns None.
pub fn require_python_module(module: &str, package: &str) -> Option<PathBuf> {
    let python = find("python3");
    let importable = python.as_ref().is_some_and(|p| {
        std::process::Command::new(p)
            .args(["-c", &format!("import {module}")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    match python {
        Some(p) if importable => Some(p),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("python3 with the {module} module is required under CI=true (.ci/run installs {package})")
        }
        _ => {
            eprintln!("SKIPPED: python3 cannot import {module} (pip install {package}, or run .ci/run)");
            None
        }
    }
}
