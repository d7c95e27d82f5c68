#!/usr/bin/env python3
"""Several datacenters on loopback (issue #15): the time of a remote lookup beside a local one,
the time until a lost datacenter is answered SERVFAIL, and the WAN pool's bytes per agent per
second at idle beside the LAN pool's. Standard library only; prints figures, asserts nothing.

  bench-dc.py [--dcs 3] [--queries 2000] [--idle-seconds 30] [--keep]

--dcs datacenters dc1..dcN, each a LAN pool of two agents: xN-wan (in the WAN pool,
--wan-bind 127.0.0.1:0, seeded with dc1's WAN agent) and xN-lan (LAN only). One cluster key and
one CA for all (bench-peers.py's machinery, as bench-churn.py), gossip at the default interval
(1 s). Each LAN agent registers `web` (port 8000+N) through its HTTP API.

lookup: --queries SRV queries over UDP, one at a time, three kinds in turn: to dc1's WAN agent
`web.service.gossip` (local) and `web.service.dc2.gossip` (forwarded to dc2 and back), and the
latter to dc1's LAN-only agent (relayed through dc1's WAN agent); printed: median and 99th
percentile of each, and their ratio to the local one.
idle: every agent's WAN and LAN gossip bytes over --idle-seconds of quiet.
failover: dc1's WAN agent holds `api` with a TTL check and a prepared query `api-ha`
(OnlyPassing, NearestN 1); dc2's LAN agent holds `api` too. The check is failed, then passed,
through the HTTP API; printed: the time from each change until the query's execution
(GET /v1/query/api-ha/execute, polled back to back) answers from dc2, then from dc1 again, and
how long one execution takes in each state (median of 200).
watch: one blocking read of dc2 (`?dc=dc2&index=N&wait=600s`) held on the first agent for
--idle-seconds: every WAN agent's bytes beside the idle figure, then the time until a
registration in dc2 comes back through it.
lost: the last datacenter's WAN agent is killed (SIGKILL); from then on, queries of
`web.service.dcN.gossip` every 50 ms until one answers SERVFAIL: printed, the time from the kill
and the time that SERVFAIL answer took.
"""
import argparse, http.client, importlib.util, json, os, shutil, signal, socket, statistics, struct, subprocess, sys, tempfile, threading, time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True
_spec = importlib.util.spec_from_file_location("bench_peers", os.path.join(HERE, "bench-peers.py"))
bp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bp)

PROCS = []
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


class Agent:
    def __init__(self, root, name, dc, seeds=(), wan_seeds=None):
        self.name, self.dc = name, dc
        self.dir = os.path.join(root, name)
        os.makedirs(self.dir, exist_ok=True)
        args = [bp.BIN, "agent", "--node", name, "--datacenter", dc, "--bind", "127.0.0.1:0",
                "--dns", "127.0.0.1:0", "--http", "127.0.0.1:0", "--data-dir", self.dir,
                "--cluster-key-file", bp.cluster_key_file(root), "--log-level", "warn",
                *bp.gossipd_flags("gossipd", name)]
        for s in seeds:
            args += ["--seed", s]
        if wan_seeds is not None:
            args += ["--wan-bind", "127.0.0.1:0"]
            for s in wan_seeds:
                args += ["--wan-seed", s]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(self.dir, "log"), "a"))
        PROCS.append(self.proc)
        path, deadline = os.path.join(self.dir, "addrs.json"), time.time() + 20
        while True:
            try:
                self.addrs = json.load(open(path))
                self.http = bp.HttpConn(self.addrs["http"])
                self.get("/v1/agent/members")
                break
            except (OSError, ValueError, ConnectionError, RuntimeError):
                if self.proc.poll() is not None or time.time() > deadline:
                    raise SystemExit(f"agent {name} did not start: {open(os.path.join(self.dir, 'log')).read()[-2000:]}")
                time.sleep(0.02)

    def get(self, path):
        status, body = self.http.call("GET", path)
        if status != 200:
            raise RuntimeError(f"{self.name}: GET {path}: {status} {body[:200]!r}")
        return json.loads(body)

    def put(self, path, obj):
        status, body = self.http.call("PUT", path, json.dumps(obj).encode())
        if status != 200:
            raise SystemExit(f"{self.name}: PUT {path}: {status} {body[:200]!r}")


def srv(dns, name, qid):
    """(rcode, answers, seconds) of one SRV query over UDP (3 s timeout)."""
    host, port = dns.rsplit(":", 1)
    q = struct.pack(">HHHHHH", qid & 0xFFFF, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack(">HH", 33, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(3)
    t = time.perf_counter()
    try:
        s.sendto(q, (host, int(port)))
        while True:
            r = s.recv(4096)
            if len(r) >= 12 and r[:2] == q[:2]:
                break
    except OSError:
        return "timeout", 0, time.perf_counter() - t
    finally:
        s.close()
    took = time.perf_counter() - t
    return RCODES.get(r[3] & 0xF, str(r[3] & 0xF)), struct.unpack(">H", r[6:8])[0], took


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dcs", type=int, default=3)
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--idle-seconds", type=float, default=30)
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    root = tempfile.mkdtemp(prefix="gossipd-bench-dc-", dir=bp.SHM)
    try:
        g = subprocess.run([bp.BIN, "--version"], capture_output=True, text=True).stdout.strip()
        print(f"# {g}; {a.dcs} datacenters of 2 agents on loopback; load {open('/proc/loadavg').read().split()[:3]}")
        wans, lans = [], []
        for i in range(1, a.dcs + 1):
            dc = f"dc{i}"
            seeds = [wans[0].addrs["wan"]] if wans else []
            w = Agent(root, f"x{i}-wan", dc, wan_seeds=seeds)
            l = Agent(root, f"x{i}-lan", dc, seeds=[w.addrs["gossip"]])
            l.put("/v1/agent/service/register", {"ID": f"web-{i}", "Name": "web", "Port": 8000 + i, "Address": "127.0.0.1"})
            wans.append(w)
            lans.append(l)
        start, deadline = time.time(), time.time() + 60
        while not all(sum(1 for m in w.get("/v1/agent/members?wan=1") if m["Status"] == 1) == a.dcs for w in wans):
            if time.time() > deadline:
                raise SystemExit("the WAN pool did not converge in 60 s")
            time.sleep(0.1)
        print(f"WAN pool of {a.dcs} converged {time.time() - start:.1f} s after the last agent started")
        home = wans[0]
        while srv(home.addrs["dns"], "web.service.dc2.gossip", 1)[:2] != ("NOERROR", 1) or \
                srv(home.addrs["dns"], "web.service.gossip", 2)[:2] != ("NOERROR", 1):
            if time.time() > deadline:
                raise SystemExit("web is not answered locally and in dc2")
            time.sleep(0.1)

        # Local, remote, and remote asked of dc1's LAN-only agent (relayed through its WAN one).
        relay = lans[0]
        while srv(relay.addrs["dns"], "web.service.dc2.gossip", 3)[:2] != ("NOERROR", 1):
            if time.time() > deadline:
                raise SystemExit("web in dc2 is not answered through the relay")
            time.sleep(0.1)
        local, remote, relayed, bad = [], [], [], 0
        for k in range(a.queries):
            kind = k % 3
            server = relay if kind == 2 else home
            name = "web.service.gossip" if kind == 0 else "web.service.dc2.gossip"
            rcode, an, took = srv(server.addrs["dns"], name, k)
            if (rcode, an) != ("NOERROR", 1):
                bad += 1
            (local, remote, relayed)[kind].append(took * 1e6)
        ml, mr, mx = statistics.median(local), statistics.median(remote), statistics.median(relayed)
        print(f"lookup ({a.queries} UDP SRV queries, the three kinds in turn, {bad} not NOERROR with 1 answer):")
        print(f"  local   web.service.gossip      to {home.name}  median {ml:7.0f} us  p99 {pct(local, 0.99):7.0f} us")
        print(f"  remote  web.service.dc2.gossip  to {home.name}  median {mr:7.0f} us  p99 {pct(remote, 0.99):7.0f} us"
              f"  ({mr / ml:.1f}x local: one WAN round trip on loopback plus the remote agent's resolution)")
        print(f"  relayed web.service.dc2.gossip  to {relay.name}  median {mx:7.0f} us  p99 {pct(relayed, 0.99):7.0f} us"
              f"  ({mx / ml:.1f}x local: a LAN round trip to {home.name} more)")

        home.put("/v1/agent/service/register", {"ID": "api-1", "Name": "api", "Port": 9001, "Address": "127.0.0.1",
                                                 "Check": {"CheckID": "api-ttl", "TTL": "600s"}})
        home.put("/v1/agent/check/pass/api-ttl", {})
        lans[1].put("/v1/agent/service/register", {"ID": "api-2", "Name": "api", "Port": 9002, "Address": "127.0.0.1"})
        status, body = home.http.call("POST", "/v1/query", json.dumps({"Name": "api-ha", "Service": {
            "Service": "api", "OnlyPassing": True, "Failover": {"NearestN": 1}}}).encode())
        if status != 200:
            raise SystemExit(f"POST /v1/query: {status} {body[:200]!r}")

        def where():
            t = time.perf_counter()
            e = home.get("/v1/query/api-ha/execute")
            return e["Datacenter"], len(e["Nodes"]), time.perf_counter() - t

        deadline = time.time() + 30
        while where()[:2] != ("dc1", 1):
            if time.time() > deadline:
                raise SystemExit("api-ha is not answered in dc1")
            time.sleep(0.05)
        local_exec = statistics.median(where()[2] for _ in range(200)) * 1e6

        def switch(verb, want):
            t0 = time.perf_counter()
            home.put(f"/v1/agent/check/{verb}/api-ttl", {})
            while True:
                dc, n, _ = where()
                if dc == want and n == 1:
                    return time.perf_counter() - t0
                if time.perf_counter() - t0 > 30:
                    return None
        out = switch("fail", "dc2")
        remote_exec = statistics.median(where()[2] for _ in range(200)) * 1e6
        back = switch("pass", "dc1")
        fmt = lambda x: "never (30 s)" if x is None else f"{x * 1000:.1f} ms"
        print(f"failover: check failed -> answered from dc2 after {fmt(out)}; passed -> dc1 again after {fmt(back)}")
        print(f"  one execution: {local_exec:.0f} us answered locally, {remote_exec:.0f} us failed over "
              f"(median of 200; the failed-over one reads dc2's health through the WAN pool)")

        def counters():
            out = {}
            for x in wans + lans:
                m = x.get("/v1/agent/metrics")
                w = m.get("WAN") or {}
                out[x.name] = (m["Gossip"]["BytesIn"] + m["Gossip"]["BytesOut"],
                               (w.get("BytesIn", 0) + w.get("BytesOut", 0)) if w else None)
            return out
        before, t0 = counters(), time.time()
        time.sleep(a.idle_seconds)
        after, dt = counters(), time.time() - t0
        print(f"idle, bytes per agent per second (in + out) over {dt:.0f} s:")
        idle_wan = {}
        for name in sorted(after):
            lan = (after[name][0] - before[name][0]) / dt
            wan = None if after[name][1] is None else (after[name][1] - before[name][1]) / dt
            idle_wan[name] = wan
            print(f"  {name:8s}  LAN {lan:7.0f} B/s  WAN {'-' if wan is None else f'{wan:7.0f} B/s'}")

        # watch: one blocking read of dc2 (as consul-template's `service "web@dc2"`) held open on
        # home; its WAN cost beside the idle figures, then how long a change in dc2 takes to
        # come back through it.
        def blocking_get(addr, path):
            host, port = addr.rsplit(":", 1)
            c = http.client.HTTPConnection(host, int(port), timeout=700)
            c.request("GET", path)
            r = c.getresponse()
            body = r.read()
            c.close()
            return int(r.getheader("X-Consul-Index") or 0), json.loads(body)
        index, _ = blocking_get(home.addrs["http"], "/v1/health/service/web?dc=dc2")
        seen, returns = {}, [0]

        def watcher(i):
            while time.time() < t_end:
                i, body = blocking_get(home.addrs["http"], f"/v1/health/service/web?dc=dc2&index={i}&wait=600s")
                returns[0] += 1
                if len(body) >= 2:
                    seen["t"] = time.perf_counter()
                    return
        t_end = time.time() + a.idle_seconds + 60
        th = threading.Thread(target=watcher, args=(index,), daemon=True)
        th.start()
        time.sleep(1)
        before, t0 = counters(), time.time()
        time.sleep(a.idle_seconds)
        after, dt = counters(), time.time() - t0
        print(f"watch: one blocking read of dc2 held on {home.name} for {dt:.0f} s "
              f"({returns[0]} early returns), WAN bytes per second (in + out):")
        for name in sorted(after):
            if after[name][1] is None:
                continue
            wan = (after[name][1] - before[name][1]) / dt
            print(f"  {name:8s}  WAN {wan:7.0f} B/s  ({wan - idle_wan[name]:+5.0f} B/s beside idle)")
        t_reg = time.perf_counter()
        lans[1].put("/v1/agent/service/register", {"ID": "web-w", "Name": "web", "Port": 8999, "Address": "127.0.0.1"})
        th.join(30)
        took = seen.get("t")
        print(f"  a registration in dc2 came back through the watch after "
              f"{'never (30 s)' if took is None else f'{(took - t_reg) * 1000:.1f} ms'}"
              f" (the LAN rumor to dc2's WAN agent, then one WAN round trip)")

        lost = wans[-1]
        os.kill(lost.proc.pid, signal.SIGKILL)
        killed, qid = time.time(), 10_000
        while True:
            rcode, _, took = srv(home.addrs["dns"], f"web.service.dc{a.dcs}.gossip", qid)
            qid += 1
            if rcode == "SERVFAIL":
                print(f"lost: dc{a.dcs}'s only WAN agent killed; the first SERVFAIL came {time.time() - killed:.2f} s after "
                      f"the kill and took {took * 1000:.0f} ms to answer")
                break
            if time.time() > killed + 60:
                print("lost: no SERVFAIL within 60 s")
                break
            time.sleep(0.05)
        rcode, _, took = srv(home.addrs["dns"], f"web.service.dc{a.dcs}.gossip", qid)
        print(f"  next query: {rcode} in {took * 1000:.0f} ms")
    finally:
        for p in PROCS:
            if p.poll() is None:
                p.kill()
        for p in PROCS:
            p.wait()
        bp.close_authority()
        if a.keep:
            print(f"(kept {root})")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
