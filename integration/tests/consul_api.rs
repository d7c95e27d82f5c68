//! Consul API compatibility with a real, unmodified Consul client: `py-consul` (PyPI, module
//! `consul`) drives a 3-agent cluster through `integration/py/consul_client.py`: registration
//! with tags, meta and a TTL check, agent/catalog/health reads on other agents, TTL pass and
//! fail, a blocking query released by another agent's registration, members, self, status,
//! deregistration. Skipped when py-consul is missing, except under CI=true where it fails.

use std::process::Command;
use std::time::Duration;

use integration::agent::{Agent, Options};
use integration::{peers, wait_for};

#[test]
fn py_consul_drives_a_three_agent_cluster() {
    let Some(python) = peers::require_python_module("consul", "py-consul") else { return };
    let root = tempfile::tempdir().unwrap();
    let a = Agent::start(root.path(), Options { name: "alpha".into(), ..Default::default() });
    let b = Agent::start(root.path(), Options { name: "bravo".into(), seeds: vec![a.gossip], ..Default::default() });
    let c = Agent::start(root.path(), Options { name: "charlie".into(), seeds: vec![a.gossip], ..Default::default() });
    for x in [&a, &b, &c] {
        wait_for("3 alive members", Duration::from_secs(20), || (x.alive_members().len() == 3).then_some(()));
    }
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("py/consul_client.py");
    let out = Command::new(python)
        .arg(&script)
        .args([a.http, b.http, c.http].map(|h| h.to_string()))
        .env_remove("CONSUL_HTTP_ADDR")
        .env_remove("CONSUL_HTTP_TOKEN")
        // The script checks with `assert`, which -O / PYTHONOPTIMIZE would strip.
        .env_remove("PYTHONOPTIMIZE")
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "py-consul script failed ({}):\n{stdout}\n{stderr}\nalpha's log:\n{}",
        out.status,
        a.log()
    );
    eprintln!("{stdout}");
    let last = stdout.lines().last().unwrap_or_default();
    assert!(last.starts_with("ok: ") && last.ends_with(" steps"), "{stdout}");
}
