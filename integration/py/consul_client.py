"""Drives a running 3-agent gossipd cluster with the py-consul client, unchanged.

Usage: python3 consul_client.py HTTP_A HTTP_B HTTP_C  (each HOST:PORT; agents alpha, bravo,
charlie, already joined). Exits 0 and prints "ok: N steps" when every step held; on the first
failure raises (non-zero exit) with what was expected and what came back.
"""

import sys
import threading
import time

import consul
from consul import Check

DATACENTER = "gossip"
steps = 0


def step(what):
    global steps
    steps += 1
    print(f"step {steps}: {what}", flush=True)


def eventually(what, fn, timeout=20.0):
    """Polls fn() until it returns a truthy value (no timing is asserted: only the outcome)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; last value: {last!r}")


def client(addr):
    host, port = addr.rsplit(":", 1)
    return consul.Consul(host=host, port=int(port))


def main():
    a, b, c = (client(x) for x in sys.argv[1:4])

    step("agent.members: three alive members, Serf shape")
    members = a.agent.members()
    assert sorted(m["Name"] for m in members) == ["alpha", "bravo", "charlie"], members
    assert all(m["Status"] == 1 and isinstance(m["Port"], int) and m["Addr"] for m in members), members

    step("agent.self: this agent's config and member")
    me = a.agent.self()
    assert me["Config"]["NodeName"] == "alpha", me
    assert me["Config"]["Datacenter"] == DATACENTER, me
    assert me["Config"]["Server"] is False, me
    assert me["Member"]["Name"] == "alpha", me

    step("status.leader / status.peers: the agent itself, all alive members")
    leader = a.status.leader()
    assert isinstance(leader, str) and leader.startswith("127.0.0.1:"), leader
    assert leader == f'{me["Member"]["Addr"]}:{me["Member"]["Port"]}', (leader, me["Member"])
    peers = c.status.peers()
    assert sorted(peers) == sorted(f'{m["Addr"]}:{m["Port"]}' for m in members), (peers, members)

    step("agent.service.register with tags, meta and a TTL check")
    ok = a.agent.service.register(
        "web",
        service_id="web-1",
        address="127.0.0.10",
        port=8080,
        tags=["v1", "primary"],
        meta={"version": "1.2"},
        check=Check.ttl("30s"),
    )
    assert ok is True, ok

    step("agent.services and agent.service_definition")
    services = a.agent.services()
    web = services["web-1"]
    assert (web["ID"], web["Service"], web["Port"], web["Address"]) == ("web-1", "web", 8080, "127.0.0.10"), web
    assert web["Tags"] == ["v1", "primary"] and web["Meta"] == {"version": "1.2"}, web
    definition = a.agent.service_definition("web-1")
    assert definition["Service"] == "web" and definition["Port"] == 8080, definition
    assert a.agent.service_definition("nope") is None, "unknown service: 404, None"

    step("agent.checks: the TTL check starts critical")
    checks = a.agent.checks()
    assert checks["service:web-1"]["Status"] == "critical", checks
    assert checks["service:web-1"]["ServiceID"] == "web-1", checks

    step("agent.check.ttl_pass, then health.service(passing=True) on another agent")
    assert a.agent.check.ttl_pass("service:web-1", notes="all good") is True
    assert a.agent.checks()["service:web-1"]["Status"] == "passing"
    _, healthy = eventually(
        "web passing on charlie", lambda: (lambda r: r if r[1] else None)(c.health.service("web", passing=True))
    )
    assert len(healthy) == 1, healthy
    entry = healthy[0]
    assert entry["Node"]["Node"] == "alpha", entry
    assert entry["Service"]["ID"] == "web-1" and entry["Service"]["Port"] == 8080, entry
    assert entry["Service"]["Address"] == "127.0.0.10", entry
    assert all(ch["Status"] == "passing" for ch in entry["Checks"]), entry

    step("catalog.services on another agent, with an index")
    index, catalog_services = c.catalog.services()
    assert int(index) > 0, index
    assert sorted(catalog_services["web"]) == ["primary", "v1"], catalog_services

    step("catalog.service by tag, dc and near accepted")
    _, tagged = c.catalog.service("web", tag="primary", dc=DATACENTER, near="_agent")
    assert [(s["ServiceID"], s["Node"], s["ServicePort"], s["ServiceAddress"]) for s in tagged] == [
        ("web-1", "alpha", 8080, "127.0.0.10")
    ], tagged
    assert tagged[0]["Datacenter"] == DATACENTER and tagged[0]["ServiceMeta"] == {"version": "1.2"}, tagged
    _, untagged = c.catalog.service("web", tag="canary")
    assert untagged == [], untagged
    try:
        c.catalog.services(dc="elsewhere")
        raise AssertionError("an unknown datacenter must be refused")
    except consul.ConsulException as e:
        assert "No path to datacenter" in str(e), e

    step("catalog.nodes, catalog.node, catalog.datacenters")
    _, nodes = b.catalog.nodes()
    assert sorted(n["Node"] for n in nodes) == ["alpha", "bravo", "charlie"], nodes
    _, node = b.catalog.node("alpha")
    assert node["Node"]["Node"] == "alpha" and "web-1" in node["Services"], node
    assert node["Services"]["web-1"]["Port"] == 8080, node
    _, missing = b.catalog.node("nobody")
    assert missing is None, missing
    assert b.catalog.datacenters() == [DATACENTER]

    step("agent.check.ttl_warn, health.state and health.checks")
    assert a.agent.check.ttl_warn("service:web-1", notes="slow") is True
    warning = eventually(
        "web warning on bravo", lambda: [ch for ch in b.health.state("warning")[1] if ch["ServiceID"] == "web-1"]
    )
    assert warning[0]["CheckID"] == "service:web-1" and warning[0]["Node"] == "alpha", warning
    _, web_checks = b.health.checks("web")
    assert [ch["Status"] for ch in web_checks] == ["warning"], web_checks
    _, local_checks = a.health.checks("web")
    assert [(ch["CheckID"], ch["Output"]) for ch in local_checks] == [("service:web-1", "slow")], local_checks
    _, node_checks = b.health.node("alpha")
    assert {ch["CheckID"] for ch in node_checks} == {"serfHealth", "service:web-1"}, node_checks
    _, passing = b.health.state("passing")
    assert sum(ch["CheckID"] == "serfHealth" for ch in passing) == 3, passing

    step("agent.check.ttl_fail: web leaves passing answers everywhere")
    assert a.agent.check.ttl_fail("service:web-1", notes="down") is True
    # (web was already out of `passing` answers while warning: wait for the critical status.)
    eventually(
        "web critical on charlie",
        lambda: any(ch["Status"] == "critical" for w in c.health.service("web")[1] for ch in w["Checks"]),
    )
    assert c.health.service("web", passing=True)[1] == []
    _, all_web = c.health.service("web")
    assert len(all_web) == 1, all_web

    step("blocking query on charlie returns when bravo registers")
    index, api = c.catalog.service("api")
    assert api == [], api
    result = {}

    def block():
        idx, data = index, []
        deadline = time.monotonic() + 30
        # As a Consul client does: re-issue with the new index until the answer changes.
        while not data and time.monotonic() < deadline:
            new_idx, data = c.catalog.service("api", index=idx, wait="20s")
            assert int(new_idx) >= int(idx), (new_idx, idx)
            idx = new_idx
        result["index"], result["data"] = idx, data

    waiter = threading.Thread(target=block)
    waiter.start()
    assert b.agent.service.register("api", service_id="api-1", port=9000, tags=["internal"]) is True
    waiter.join(40)
    assert not waiter.is_alive(), "the blocking query never returned"
    assert int(result["index"]) > int(index), result
    assert [(s["ServiceID"], s["Node"]) for s in result["data"]] == [("api-1", "bravo")], result

    step("health.service blocking query (index + wait) times out cleanly with the same index")
    index, _ = c.health.service("web")
    new_index, _ = c.health.service("web", index=index, wait="100ms")
    assert int(new_index) >= int(index), (new_index, index)

    step("agent.service.deregister")
    assert a.agent.service.deregister("web-1") is True
    assert "web-1" not in a.agent.services()
    assert a.agent.service.deregister("web-1") is False, "unknown service id: 404"
    eventually("web gone from charlie's catalog", lambda: c.catalog.service("web")[1] == [])
    eventually("web gone from charlie's service list", lambda: "web" not in c.catalog.services()[1])
    assert b.agent.service.deregister("api-1") is True

    print(f"ok: {steps} steps", flush=True)


if __name__ == "__main__":
    main()
