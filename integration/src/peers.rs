//! Real third-party programs used as peers (`dig`, `dnsmasq`, `unbound`, `chromium`, `ip`, Python
//! clients). Under `CI=true` a missing peer fails the test (`.ci/run` installs them); elsewhere
//! the test says it skipped.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use crate::wait_for;

/// Finds `prog` on `PATH` (and in /usr/sbin, where Debian puts dnsmasq and unbound).
pub fn find(prog: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).chain(["/usr/sbin".into(), "/sbin".into()]).map(|d| d.join(prog)).find(|p| p.is_file())
}

/// True when running under CI (`CI=true`), where nothing may be skipped.
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Something the test needs is missing: panics under CI, else prints a skip notice and
/// returns None.
pub fn unavailable<T>(what: &str) -> Option<T> {
    if ci() {
        panic!("{what}: required under CI=true (.ci/run installs the programs; run it as root)");
    }
    eprintln!("SKIPPED: {what}");
    None
}

/// The peer's path; panics under CI when missing, else prints a skip notice and returns None.
pub fn require(prog: &str) -> Option<PathBuf> {
    match find(prog) {
        Some(p) => Some(p),
        None => unavailable(&format!("{prog} is not installed (apt-get install it, or run .ci/run)")),
    }
}

/// Runs `cmd` with stdout and stderr sent to `out` and `out`.err, killing it after `timeout`
/// (a hung peer must not hang the suite). Returns the exit status and stdout.
pub fn run_with_timeout(mut cmd: Command, out: &Path, timeout: Duration) -> (ExitStatus, String) {
    let err = out.with_extension("err");
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(out).expect("stdout file"))
        .stderr(std::fs::File::create(&err).expect("stderr file"));
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let mut killer = KillOnDrop(Some(child.id()));
    let status = wait_for(&format!("{cmd:?} to exit"), timeout, || child.try_wait().ok().flatten());
    killer.0 = None;
    (status, std::fs::read_to_string(out).unwrap_or_default())
}

/// Kills a process id when dropped (also when the test panics while waiting for it).
#[derive(Debug)]
struct KillOnDrop(Option<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
        }
    }
}

/// `dig @SERVER -p PORT +time=2 +tries=1 ARGS...`; returns its standard output.
pub fn dig(dig: &Path, server: std::net::SocketAddr, args: &[&str]) -> String {
    let out = Command::new(dig)
        .arg(format!("@{}", server.ip()))
        .arg("-p")
        .arg(server.port().to_string())
        .args(["+time=2", "+tries=1"])
        .args(args)
        .output()
        .expect("run dig");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A loopback port that was free for UDP a moment ago (for peers that cannot bind port 0 and
/// report it).
pub fn free_udp_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    s.local_addr().expect("local addr").port()
}

/// A peer process, killed (SIGKILL) and reaped when dropped, also when the test fails.
#[derive(Debug)]
pub struct Running(pub std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
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
