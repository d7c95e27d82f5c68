//! Headless Chromium for the status page's tests: a command with nothing but loopback, the DOM
//! after the page's scripts ran, and attribute lookup in it.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::peers;

/// Headless Chromium with nothing but loopback: no background traffic, every host name but
/// 127.0.0.1 unresolvable, a throwaway profile and home.
pub fn chromium(bin: &Path, tmp: &Path) -> Command {
    let mut cmd = Command::new(bin);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-extensions",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-pings",
        "--hide-scrollbars",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--virtual-time-budget=5000",
    ])
    .arg(format!("--user-data-dir={}", tmp.join("profile").display()))
    .env("HOME", tmp)
    .env("XDG_CONFIG_HOME", tmp.join("config"))
    .env("XDG_CACHE_HOME", tmp.join("cache"));
    cmd
}

/// The value of attribute `attr` on the element whose opening tag contains `marker`.
pub fn attr_of<'a>(dom: &'a str, marker: &str, attr: &str) -> Option<&'a str> {
    let at = dom.find(marker)?;
    let start = dom[..at].rfind('<')?;
    let tag = &dom[start..at + dom[at..].find('>')?];
    let key = format!("{attr}=\"");
    let v = &tag[tag.find(&key)? + key.len()..];
    Some(&v[..v.find('"')?])
}

/// The page's DOM after its scripts ran (5 s of virtual time).
pub fn dump_dom(chrome: &Path, tmp: &Path, url: &str) -> String {
    let mut cmd = chromium(chrome, tmp);
    cmd.arg("--dump-dom").arg(url);
    let (status, dom) = peers::run_with_timeout(cmd, &tmp.join("dom.html"), Duration::from_secs(120));
    let stderr = || std::fs::read_to_string(tmp.join("dom.err")).unwrap_or_default();
    assert!(status.success(), "chromium --dump-dom: {status}\n{}", stderr());
    assert!(dom.contains("data-member"), "the page's script did not render:\n{dom}\n{}", stderr());
    dom
}
