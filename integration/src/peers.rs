//! Real third-party programs used as peers (`dig`, `dnsmasq`). Under `CI=true` a missing peer
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
