//! Network namespaces a test creates for itself (`ip netns add`), with `lo` up and nothing
//! else: programs inside can only reach each other on 127.0.0.0/8, and privileged ports such
//! as 53 are free. Names carry the test's tag and the process id, so parallel runs never
//! collide; [`Netns`] deletes the namespace and its `/etc/netns/NAME` directory when dropped,
//! also when the test fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::peers;

/// A network namespace owned by the test.
#[derive(Debug)]
pub struct Netns {
    /// Its name (`gsd-TAG-PID`).
    pub name: String,
    ip: PathBuf,
}

impl Netns {
    /// Creates `gsd-TAG-PID` and brings its `lo` up. Needs root and iproute2: when either is
    /// missing the test skips (None), or fails under `CI=true`.
    pub fn create(tag: &str) -> Option<Netns> {
        let ip = peers::require("ip")?;
        let name = format!("gsd-{tag}-{}", std::process::id());
        // A leftover of an earlier run that was killed with this same pid.
        let _ = Command::new(&ip).args(["netns", "delete", &name]).stderr(Stdio::null()).status();
        let out = Command::new(&ip).args(["netns", "add", &name]).output().expect("run ip netns add");
        if !out.status.success() {
            let why = String::from_utf8_lossy(&out.stderr).trim().to_owned();
            return peers::unavailable(&format!("cannot create a network namespace (needs root): ip netns add: {why}"));
        }
        let ns = Netns { name, ip };
        let out = Command::new(&ns.ip).args(["-n", &ns.name, "link", "set", "lo", "up"]).output().expect("run ip");
        assert!(out.status.success(), "ip link set lo up: {}", String::from_utf8_lossy(&out.stderr));
        Some(ns)
    }

    /// `ip netns exec NAME program`: a command that runs `program` inside the namespace, with
    /// the files of [`Netns::etc_dir`] bind-mounted over their `/etc` counterparts.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(&self.ip);
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// `/etc/netns/NAME`: `ip netns exec` mounts each file in it over the same name in `/etc`.
    pub fn etc_dir(&self) -> PathBuf {
        Path::new("/etc/netns").join(&self.name)
    }

    /// Writes `/etc/netns/NAME/FILE` (seen as `/etc/FILE` inside the namespace).
    pub fn write_etc(&self, file: &str, contents: &str) {
        let dir = self.etc_dir();
        std::fs::create_dir_all(&dir).expect("create /etc/netns/NAME");
        std::fs::write(dir.join(file), contents).expect("write /etc/netns/NAME file");
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new(&self.ip).args(["netns", "delete", &self.name]).stderr(Stdio::null()).status();
        let _ = std::fs::remove_dir_all(self.etc_dir());
    }
}
