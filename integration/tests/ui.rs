//! The status page at `/ui`, rendered by a real headless Chromium against a 3-agent cluster:
//! the DOM after the page's scripts ran shows every member, every service and instance with
//! its health, user-supplied text stays text, a screenshot is a real picture, and members that
//! die or leave are shown so.
//! `GOSSIPD_UI_SCREENSHOT=docs/ui.png` copies the screenshot there (how the README's is made).

use std::time::Duration;

use integration::agent::Agent;
use integration::browser::{attr_of, chromium, dump_dom};
use integration::peers;
use integration::wait_for;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);

/// What a user could put in a tag, which the page must show as text.
const PROBE_TAG: &str = "<b>not bold</b>";

fn register(agent: &Agent, body: &str) {
    let (status, text) = agent.put("/v1/agent/service/register", body);
    assert_eq!(status, 200, "{body}: {text}");
}

/// The health statuses of a service's instances on `agent`, by instance id (worst check).
fn health_by_id(agent: &Agent, service: &str) -> Vec<(String, String)> {
    let list = agent.get(&format!("/v1/health/service/{service}")).ok();
    let mut out: Vec<(String, String)> = list
        .as_ref()
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|e| {
                    let rank = |s: &str| ["passing", "warning", "critical"].iter().position(|x| *x == s).unwrap_or(2);
                    let worst = e["Checks"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|c| c["Status"].as_str())
                        .max_by_key(|s| rank(s))
                        .unwrap_or("passing");
                    (e["Service"]["ID"].as_str().unwrap_or_default().to_owned(), worst.to_owned())
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[test]
fn ui_page_renders_members_services_and_health_in_chromium() {
    let Some(chrome) = peers::require("chromium") else { return };
    let root = tempfile::tempdir().unwrap();
    let (a, mut b, mut c) = Agent::three(root.path());
    register(&a, r#"{"ID":"web-1","Name":"web","Address":"127.0.0.10","Port":8080,"Tags":["v1","primary"]}"#);
    register(
        &b,
        r#"{"ID":"web-2","Name":"web","Address":"127.0.0.11","Port":8080,"Tags":["v2"],
            "Check":{"TTL":"10m","Status":"critical"}}"#,
    );
    register(&c, r#"{"ID":"db-1","Name":"db","Port":5432,"Tags":["primary"]}"#);
    let api = serde_json::json!({
        "ID": "api-1", "Name": "api", "Address": "127.0.0.20", "Port": 8443, "Tags": [PROBE_TAG],
        "Check": {"TTL": "10m"},
    });
    register(&c, &api.to_string());
    let (status, body) = c.put("/v1/agent/check/warn/service:api-1?note=slow", "");
    assert_eq!(status, 200, "{body}");

    // alpha's API shows every instance with its health before the browser looks.
    wait_for("alpha to see every instance's health", WAIT, || {
        let ok = health_by_id(&a, "web") == [("web-1".into(), "passing".into()), ("web-2".into(), "critical".into())]
            && health_by_id(&a, "db") == [("db-1".to_string(), "passing".to_string())]
            && health_by_id(&a, "api") == [("api-1".to_string(), "warning".to_string())];
        ok.then_some(())
    });

    let url = format!("http://{}/ui", a.http);
    let tmp = root.path().join("chromium");
    std::fs::create_dir_all(&tmp).unwrap();
    let dom = dump_dom(&chrome, &tmp, &url);

    // Every member, alive, and the agent that serves the page.
    for name in ["alpha", "bravo", "charlie"] {
        assert_eq!(attr_of(&dom, &format!("data-member=\"{name}\""), "data-state"), Some("alive"), "{dom}");
    }
    assert!(dom.contains("<b id=\"node\">alpha</b>"), "{dom}");
    // Every service, every instance with node, address:port and health.
    for service in ["web", "db", "api"] {
        assert!(dom.contains(&format!("data-service=\"{service}\"")), "{service} missing:\n{dom}");
    }
    for (id, health) in [("web-1", "passing"), ("web-2", "critical"), ("db-1", "passing"), ("api-1", "warning")] {
        assert_eq!(attr_of(&dom, &format!("data-instance=\"{id}\""), "data-health"), Some(health), "{id}:\n{dom}");
    }
    for text in ["127.0.0.10:8080", "127.0.0.11:8080", "127.0.0.1:5432", "127.0.0.20:8443", "web.service.gossip"] {
        assert!(dom.contains(text), "{text} missing:\n{dom}");
    }
    assert!(dom.contains("Service 'api' health: warning"), "the failing check is not named:\n{dom}");
    // Services with an instance not passing come first (api, web), then the healthy (db).
    let at = |s: &str| dom.find(&format!("data-service=\"{s}\"")).unwrap();
    assert!(at("api") < at("web") && at("web") < at("db"), "failing services are not first:\n{dom}");
    // The tag a user typed is shown as text, never parsed as markup.
    assert!(dom.contains("&lt;b&gt;not bold&lt;/b&gt;"), "{dom}");
    assert!(!dom.contains(PROBE_TAG), "{dom}");

    // A screenshot: a real picture of the right size, not a blank page.
    let png_path = tmp.join("ui.png");
    let mut cmd = chromium(&chrome, &tmp);
    cmd.arg(format!("--screenshot={}", png_path.display())).arg("--window-size=1200,900").arg(&url);
    let (status, _) = peers::run_with_timeout(cmd, &tmp.join("shot.txt"), Duration::from_secs(120));
    assert!(status.success(), "chromium --screenshot: {status}");
    let bytes = std::fs::read(&png_path).expect("the screenshot");
    assert!(bytes.len() > 20_000, "screenshot is only {} bytes", bytes.len());
    let decoder = png::Decoder::new(std::io::Cursor::new(&bytes));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut pixels = vec![0; reader.output_buffer_size().expect("buffer size")];
    let info = reader.next_frame(&mut pixels).expect("PNG pixels");
    assert_eq!((info.width, info.height), (1200, 900));
    let px = info.color_type.samples();
    let colours: std::collections::HashSet<&[u8]> = pixels[..info.buffer_size()].chunks(px).collect();
    assert!(colours.len() > 50, "only {} distinct colours: a blank page?", colours.len());
    if let Some(dest) = std::env::var_os("GOSSIPD_UI_SCREENSHOT") {
        std::fs::write(&dest, &bytes).expect("copy the screenshot");
    }

    // Charlie dies, then bravo leaves: the page shows them failed and left, and their
    // instances are gone (only live nodes' instances are in the catalog).
    c.kill();
    wait_for("alpha to see charlie failed", Duration::from_secs(30), || {
        (member_status(&a, "charlie") == 4).then_some(())
    });
    let status = b.interrupt();
    assert!(status.success(), "SIGINT should exit 0, got {status}");
    wait_for("alpha to see bravo left", WAIT, || (member_status(&a, "bravo") == 3).then_some(()));
    let dom = dump_dom(&chrome, &tmp, &url);
    assert_eq!(attr_of(&dom, "data-member=\"alpha\"", "data-state"), Some("alive"), "{dom}");
    assert_eq!(attr_of(&dom, "data-member=\"bravo\"", "data-state"), Some("left"), "{dom}");
    assert_eq!(attr_of(&dom, "data-member=\"charlie\"", "data-state"), Some("failed"), "{dom}");
    assert_eq!(attr_of(&dom, "data-instance=\"web-1\"", "data-health"), Some("passing"), "{dom}");
    for gone in ["data-instance=\"web-2\"", "data-service=\"db\"", "data-service=\"api\""] {
        assert!(!dom.contains(gone), "{gone} is still shown:\n{dom}");
    }
}

/// Serf status code of member `name` as `agent` sees it (0 when unknown).
fn member_status(agent: &Agent, name: &str) -> u64 {
    let members = agent.get("/v1/agent/members").unwrap_or(Value::Null);
    members.as_array().into_iter().flatten().find(|m| m["Name"] == name).and_then(|m| m["Status"].as_u64()).unwrap_or(0)
}
