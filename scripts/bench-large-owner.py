#!/usr/bin/env python3
"""Large owners (issue #16), real agents on loopback: one agent's N services reaching the
others, a fresh agent getting the whole catalog, bytes, receive-buffer drops and RSS.
Standard library only; prints figures, asserts nothing. Run through
scripts/bench-large-owner.sh (which builds the release binary), or directly:

  bench-large-owner.py [--sizes 5000,20000] [--rounds 1] [--clients 8] [--agents 5]
                       [--poll-ms 150] [--converge-timeout 300] [--fresh-timeout 300]
                       [--register-timeout 600] [--max-entries 0] [--perf DIR]

Per N and round, a new cluster (GossipdCluster of scripts/bench-peers.py: a cluster CA made for
the run, a certificate per agent, the default 1 s gossip interval, data directories on tmpfs).
The owner g0's certificate is signed with `--max-entries` (default: the largest N + 1000): the
default quota, 10,000 services per node, would refuse the rest of a 20,000 burst (403).

1. **Burst.** `--agents` agents (g0 is every other's seed), membership converged, catalog
   quiet. `--clients` threads, each on its own keep-alive HTTP connection, PUT
   /v1/agent/service/register on g0 one request at a time until N are registered: instance
   `web-NNNNN`, name `web`, an IPv4 address, a port, tag `v1`, meta {zone, rev} (about 135 B
   encoded, see below). Stamped: the first request sent, the last acknowledgement received.
   Meanwhile the main thread polls every agent every --poll-ms for its instance count and
   stamps when each reaches baseline + N. The count polled is `Catalog.Instances` of
   GET /v1/agent/metrics (the catalog view's instance count, a few hundred bytes of JSON
   whatever N is), not /v1/catalog/service/web, whose answer is ~10 MB of JSON at 20,000.
2. **Bytes.** Each agent's `Gossip.BytesIn` / `BytesOut` (and datagrams) from the same
   endpoint, before the burst and 5 s after every agent had everything (so retransmissions
   and the tail of the pulls are counted). These are the gossip layer's plaintext bytes (what
   the Noise transport carried, without its 16-byte tag and header per datagram).
3. **Drops.** `/proc/net/snmp` `Udp: RcvbufErrors` before and after: machine-wide (other jobs
   on the machine count too); and, per agent, the `drops` column of /proc/net/udp for the
   agent's gossip socket (exact, ours only; it includes a socket's other drop causes).
4. **Fresh agent.** A new agent (its own name and certificate, empty data directory) started
   with --seed g1; stamped from its spawn until its count equals g1's; its BytesIn (5 s after),
   the owner's and g1's BytesOut meanwhile, drops as above.
Small owner: once the owner's own catalog holds half the burst, g1 registers one service of its own
(`small-owner`); each other agent is polled for it with the counts (GET /v1/catalog/service/
small-owner) and the time until the last has it is printed: a small owner's change must not
starve behind a large one's burst. The counts above leave it out.
5. **RSS.** VmRSS of the replicas g1..g(n-1) before the burst (holding nothing but membership)
   and after (holding N); per-entry growth = difference / N, against the encoded entry size.

Encoded size: computed here exactly as gossip-core's `message::entry_len` encodes an entry
(key `svc/ID`, varint version, tag, varint length, the service's fields, 64-byte signature),
with the owner's version counter taken as baseline + i (its varint width is 2 bytes below
16,384, 3 above). "What an agent lacked" is the sum over the N entries; the agents' own
entries (status, certificate binding) and the heads are not counted, so ratios are slightly
pessimistic, by the bytes a join to an empty catalog takes (printed as "join overhead": the
BytesIn of g(n-1) from its start to the burst, an idle few seconds included).
"""
import argparse, importlib.util, json, os, shutil, signal, subprocess, sys, tempfile, threading, time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ left in scripts/ by the import below
_spec = importlib.util.spec_from_file_location("bench_peers", os.path.join(HERE, "bench-peers.py"))
bp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bp)


def loadavg():
    return " ".join(open("/proc/loadavg").read().split()[:3])


def rcvbuf_errors():
    lines = [l.split() for l in open("/proc/net/snmp") if l.startswith("Udp:")]
    head, vals = lines[0], lines[1]
    return int(vals[head.index("RcvbufErrors")])


def socket_drops(ports):
    """The drops column of /proc/net/udp for sockets bound to 127.0.0.1:port."""
    want = {f"0100007F:{p:04X}": p for p in ports}
    out = {p: 0 for p in ports}
    with open("/proc/net/udp") as f:
        next(f)
        for line in f:
            x = line.split()
            if x[1] in want:
                out[want[x[1]]] += int(x[-1])
    return out


def varint_len(v):
    n = 1
    while v >= 0x80:
        v >>= 7
        n += 1
    return n


def s_len(s):
    b = s.encode()
    return varint_len(len(b)) + len(b)


def instance(i):
    return {"ID": f"web-{i:05d}", "Name": "web", "Address": f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
            "Port": 8000 + i % 1000, "Tags": ["v1"], "Meta": {"zone": f"z{i % 3}", "rev": f"{i * 2654435761 % 2**32:08x}"}}


def entry_len(inst, version):
    """gossip-core message::entry_len of the instance's entry (docs/PROTOCOL.md section 3.2)."""
    body = s_len(inst["ID"]) + s_len(inst["Name"]) + 5 + 2  # id, name, opt_ip (v4), port
    body += varint_len(len(inst["Tags"])) + sum(s_len(t) for t in inst["Tags"])
    body += varint_len(len(inst["Meta"])) + sum(s_len(k) + s_len(v) for k, v in inst["Meta"].items())
    body += 2 + 2 + 1  # weights, health
    return s_len("svc/" + inst["ID"]) + varint_len(version) + 1 + varint_len(body) + body + 64


class Cluster(bp.GossipdCluster):
    """GossipdCluster, plus one more agent started later (the fresh agent) on ports[n]."""

    def spawn_extra(self, i, seed):
        d = os.path.join(self.root, f"g{i}")
        os.makedirs(d, exist_ok=True)
        args = [bp.BIN, "agent", "--node", f"g{i}", "--bind", f"127.0.0.1:{self.ports[i]}",
                "--dns", "127.0.0.1:0", "--http", "127.0.0.1:0", "--data-dir", d,
                "--cluster-key-file", bp.cluster_key_file(self.root), "--log-level", "warn",
                *bp.gossipd_flags(self.system, f"g{i}"), "--seed", f"127.0.0.1:{self.ports[seed]}"]
        t0 = time.time()
        self.procs.append(subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                           stderr=open(os.path.join(d, "log"), "w")))
        path = os.path.join(d, "addrs.json")
        for _ in range(400):
            try:
                addrs = json.load(open(path))
                break
            except (OSError, ValueError):
                time.sleep(0.01)
        else:
            raise SystemExit(f"gossipd agent g{i} did not start")
        self.addrs.append(addrs)
        self.http.append(bp.HttpConn(addrs["http"]))
        return t0

    def instances(self, i):
        return self.metrics(i)["Catalog"]["Instances"]


def sign_owner(max_entries):
    """g0's certificate with room for the burst: a certificate's default quota is the cluster
    default, 10,000 services (`gossipd ca sign --max-entries`), which refuses a larger owner's
    registrations (403, "this node's certificate allows at most 10000 services")."""
    auth = bp.authority()
    if "g0" not in auth.signed:
        subprocess.run([bp.BIN, "ca", "sign", "--ca", auth.ca, "--name", "g0", "--services", "*", "--roles", "operator",
                        "--max-entries", str(max_entries), "--out", auth.certs], check=True, capture_output=True)
        auth.signed.add("g0")


def register_burst(c, n, clients, deadline):
    """n registrations on agent 0 by `clients` threads; returns (t_first, t_last_ack, errors,
    per-request latencies)."""
    stamps = {"first": None, "last": 0.0}
    errors, lat = [], []
    lock = threading.Lock()
    conns = [bp.HttpConn(c.addrs[0]["http"]) for _ in range(clients)]
    for x in conns:
        x.sock.settimeout(120)
    start = threading.Barrier(clients + 1)

    def worker(k):
        start.wait()
        mine = []
        last_ack = 0.0
        for i in range(k, n, clients):
            if time.time() > deadline:
                with lock:
                    errors.append("deadline")
                break
            body = json.dumps(instance(i)).encode()
            t = time.time()
            with lock:
                if stamps["first"] is None:
                    stamps["first"] = t
            try:
                status, text = conns[k].call("PUT", "/v1/agent/service/register", body)
            except OSError as e:
                with lock:
                    errors.append(f"{type(e).__name__}: {e}")
                break
            a = time.time()
            if status != 200:
                with lock:
                    errors.append(f"{status} {text[:200]!r}")
                break
            mine.append(a - t)
            last_ack = a
        with lock:
            stamps["last"] = max(stamps["last"], last_ack)
            lat.extend(mine)

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    return threads, stamps, errors, lat, conns


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))] if xs else float("nan")


def one_run(a, n, rnd, summary):
    k = a.agents
    root = tempfile.mkdtemp(prefix="gossipd-bench-large-", dir=bp.SHM)
    ports = bp.port_block(k + 1, 21000)
    c = Cluster(k, root, ports, "gossipd")
    r = {"n": n, "round": rnd}
    try:
        bp.gossipd_flags("gossipd", f"g{k}")  # sign the fresh agent's certificate up front
        t_start = time.time()
        c.start()
        until = time.time() + 60
        while time.time() < until:
            if all(x >= k for x in c.converged()):
                break
            time.sleep(0.2)
        else:
            raise SystemExit(f"membership did not converge: {c.converged()}")
        # Quiet catalog: every agent's instance count equal and unchanged for a second.
        until = time.time() + 30
        prev = None
        while time.time() < until:
            cur = [c.instances(i) for i in range(k)]
            if cur == prev and len(set(cur)) == 1:
                break
            prev = cur
            time.sleep(1.0)
        base = cur[0]
        m0 = [c.metrics(i)["Gossip"] for i in range(k)]
        rss0 = [bp.rss_kib(p.pid) for p in c.procs]
        join_overhead = m0[k - 1]["BytesIn"]
        snmp0, drops0 = rcvbuf_errors(), socket_drops(ports[:k])
        la0 = loadavg()
        print(f"\n## N = {n}, round {rnd}: {k} agents converged {time.time() - t_start:.1f} s after the first "
              f"start; baseline {base} instances; load average {la0}", flush=True)

        # 1. The burst, polled from here.
        perf = []
        if a.perf:
            for i in (0, 1):
                out = os.path.join(a.perf, f"g{i}-n{n}-r{rnd}.perf.data")
                perf.append((out, subprocess.Popen(["perf", "record", "-F", "99", "-g", "-p", str(c.procs[i].pid),
                                                    "-o", out], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
        deadline = time.time() + a.register_timeout
        threads, stamps, errors, lat, conns = register_burst(c, n, a.clients, deadline)
        t_req = time.time()
        reached = [None] * k
        n_wait = n
        progress = [[] for _ in range(k)]  # (t, count) when the count changed
        last = [None] * k
        reg_done = None
        stop_at = None
        poll = a.poll_ms / 1000
        # The small owner: once half the burst is acknowledged, g1 registers one service of its
        # own; stamped when each other agent has it (it must not starve behind the burst).
        probe_conn = bp.HttpConn(c.addrs[1]["http"]) if k > 1 else None
        probe_at, probe_seen = None, [None] * k
        probe_conns = [bp.HttpConn(c.addrs[i]["http"]) for i in range(k)]
        while True:
            tp = time.time()
            if probe_conn is not None and probe_at is None and (last[0] or 0) >= n // 2:
                body = json.dumps({"ID": "small-1", "Name": "small-owner", "Port": 9, "Address": "127.0.0.9"}).encode()
                status, _ = probe_conn.call("PUT", "/v1/agent/service/register", body)
                probe_at = time.time() if status == 200 else None
                probe_conn = None
            for i in range(k):
                if probe_at is not None and probe_seen[i] is None and i != 1:
                    status, text = probe_conns[i].call("GET", "/v1/catalog/service/small-owner")
                    if status == 200 and b"small-1" in text:
                        probe_seen[i] = time.time()
            for i in range(k):
                if reached[i] is not None:
                    continue
                got = c.instances(i) - base - (1 if probe_seen[i] is not None or (i == 1 and probe_at) else 0)
                if got != last[i]:
                    progress[i].append((time.time(), got))
                    last[i] = got
                if got >= n_wait:
                    reached[i] = time.time()
            if reg_done is None and not any(t.is_alive() for t in threads):
                reg_done = time.time()
                stop_at = (stamps["last"] or reg_done) + a.converge_timeout
                if errors:
                    # Wait for what was acknowledged, not for N.
                    print(f"registration stopped after {len(lat)} acknowledgements: {errors[:3]}", flush=True)
                    n_wait = len(lat)
                    reached = [r if r is not None else (time.time() if (last[i] or 0) >= n_wait else None)
                               for i, r in enumerate(reached)]
            if reg_done is not None and all(x is not None for x in reached):
                break
            if (stop_at is not None and time.time() > stop_at) or time.time() > deadline + a.converge_timeout:
                break
            time.sleep(max(0.0, poll - (time.time() - tp)))
        if probe_at is not None:
            # Those still without it after the burst: polled on, 30 s at most.
            until = time.time() + 30
            while time.time() < until and any(probe_seen[i] is None for i in range(k) if i != 1):
                for i in range(k):
                    if i != 1 and probe_seen[i] is None:
                        status, text = probe_conns[i].call("GET", "/v1/catalog/service/small-owner")
                        if status == 200 and b"small-1" in text:
                            probe_seen[i] = time.time()
                time.sleep(0.05)
        for t in threads:
            t.join(timeout=5)
        for x in conns:
            try:
                x.sock.close()
            except OSError:
                pass
        for out, p in perf:
            p.send_signal(signal.SIGINT)
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            print(f"perf profile during the burst: {out}")
        t0, t_ack = stamps["first"] or t_req, stamps["last"]
        la1 = loadavg()
        registered = len(lat)
        time.sleep(5)
        m1 = [c.metrics(i)["Gossip"] for i in range(k)]
        snmp1, drops1 = rcvbuf_errors(), socket_drops(ports[:k])
        rss1 = [bp.rss_kib(p.pid) for p in c.procs]
        counts = [c.instances(i) - base - (1 if probe_at else 0) for i in range(k)]
        enc = sum(entry_len(instance(i), base + 8 + i) for i in range(n_wait))
        reg_s = t_ack - t0
        print(f"registered {registered}/{n} through g0's API with {a.clients} clients in {reg_s:.1f} s "
              f"({registered / max(reg_s, 1e-9):.0f}/s; request latency median {pct(lat, 0.5) * 1000:.1f} ms, "
              f"99th {pct(lat, 0.99) * 1000:.0f} ms, max {max(lat, default=0) * 1000:.0f} ms)"
              + (f"; errors: {errors[:3]}" if errors else ""))
        print(f"encoded size of the {n} entries: {enc} B ({enc / n:.1f} B/entry); join overhead "
              f"(g{k - 1}'s BytesIn before the burst) {join_overhead} B")
        r.update(reg=reg_s, enc=enc, la=f"{la0} / {la1}", errors=len(errors))
        for i in range(k):
            t = reached[i]
            d_in = m1[i]["BytesIn"] - m0[i]["BytesIn"]
            d_out = m1[i]["BytesOut"] - m0[i]["BytesOut"]
            dg_in = m1[i]["DatagramsIn"] - m0[i]["DatagramsIn"]
            dg_out = m1[i]["DatagramsOut"] - m0[i]["DatagramsOut"]
            marks = []
            for q in (0.25, 0.5, 0.75):
                hit = next((tt for tt, got in progress[i] if got >= q * n), None)
                marks.append(f"{q:.0%} at {hit - t0:.1f} s" if hit else f"{q:.0%} never")
            when = (f"had all {n} {t - t0:.1f} s after the first request, {t - t_ack:+.1f} s after the last ack"
                    if t else f"had {counts[i]} of {n} when the script stopped waiting")
            print(f"g{i}{' (owner)' if i == 0 else ''}: {when} ({', '.join(marks)}); in {d_in / 1e6:.2f} MB "
                  f"({d_in / enc:.2f}x encoded, {dg_in} datagrams), out {d_out / 1e6:.2f} MB ({dg_out} datagrams); "
                  f"socket drops {drops1[ports[i]] - drops0[ports[i]]}; RSS {rss0[i] / 1024:.1f} -> {rss1[i] / 1024:.1f} MiB")
        others = range(1, k)
        done = [reached[i] for i in others]
        r["all_first"] = max(done) - t0 if all(done) else None
        r["all_ack"] = max(done) - t_ack if all(done) else None
        r["in"] = [(m1[i]["BytesIn"] - m0[i]["BytesIn"]) for i in others]
        r["owner_out"] = m1[0]["BytesOut"] - m0[0]["BytesOut"]
        r["snmp"] = snmp1 - snmp0
        r["drops"] = sum(drops1[ports[i]] - drops0[ports[i]] for i in range(k))
        growth = [(rss1[i] - rss0[i]) * 1024 / n for i in others]
        r["rss"] = [rss1[i] / 1024 for i in others]
        r["growth"] = growth
        print(f"burst: every other agent had all {n} "
              + (f"{r['all_first']:.1f} s after the first request, {r['all_ack']:+.1f} s after the last ack"
                 if r["all_first"] is not None else "NOT within the timeout")
              + f"; RcvbufErrors (machine-wide) +{r['snmp']}, drops on our sockets +{r['drops']}; "
              f"load average {la0} -> {la1}")
        if probe_at is not None:
            print("small owner: seen by " + ", ".join(
                f"g{i} after {(probe_seen[i] - probe_at) * 1000:.0f} ms" if probe_seen[i] else f"g{i} never"
                for i in range(k) if i != 1))
            seen = [probe_seen[i] - probe_at for i in range(k) if i != 1 and probe_seen[i] is not None]
            missing = sum(1 for i in range(k) if i != 1 and probe_seen[i] is None)
            r["probe"] = max(seen) if seen and not missing else None
            print(f"small owner: g1's one service, registered when the owner held half the burst, reached "
                  f"every other agent after {max(seen) * 1000:.0f} ms (median {sorted(seen)[len(seen) // 2] * 1000:.0f} ms)"
                  if seen and not missing else f"small owner: {missing} agents never saw g1's service", flush=True)
            done_at = [reached[i] for i in range(k) if reached[i] is not None]
            if done_at:
                print(f"  (registered {probe_at - t0:.1f} s after the first request; the burst was everywhere "
                      f"{max(done_at) - probe_at:.1f} s after it)", flush=True)
        print(f"replica RSS holding {n}: {', '.join(f'{x:.1f}' for x in r['rss'])} MiB; growth per entry "
              f"{', '.join(f'{g:.0f}' for g in growth)} B = {', '.join(f'{g / (enc / n):.1f}' for g in growth)}x "
              f"the encoded entry", flush=True)

        # 2. A fresh agent joins through g1.
        o0 = [c.metrics(i)["Gossip"] for i in range(k)]
        snmp0, fdrops0 = rcvbuf_errors(), socket_drops(ports)
        target = c.instances(1)
        la2 = loadavg()
        tf = c.spawn_extra(k, 1)
        t_up = time.time() - tf
        fperf = None
        if a.perf:
            fout = os.path.join(a.perf, f"g{k}-fresh-n{n}-r{rnd}.perf.data")
            fperf = subprocess.Popen(["perf", "record", "-F", "99", "-g", "-p", str(c.procs[k].pid), "-o", fout],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        fresh_progress = []
        got_all = None
        lastf = None
        until = time.time() + a.fresh_timeout
        while time.time() < until:
            tp = time.time()
            x = c.instances(k)
            if x != lastf:
                fresh_progress.append((time.time(), x))
                lastf = x
            if x >= target:
                got_all = time.time()
                break
            time.sleep(max(0.0, poll - (time.time() - tp)))
        la3 = loadavg()
        if fperf is not None:
            fperf.send_signal(signal.SIGINT)
            try:
                fperf.wait(timeout=60)
            except subprocess.TimeoutExpired:
                fperf.kill()
                fperf.wait()
            print(f"perf profile of the fresh agent until it had everything: {fout}")
        time.sleep(5)
        f1 = c.metrics(k)["Gossip"]
        o1 = [c.metrics(i)["Gossip"] for i in range(k)]
        snmp1, fdrops1 = rcvbuf_errors(), socket_drops(ports)
        rss_f = bp.rss_kib(c.procs[k].pid)
        marks = []
        for q in (0.25, 0.5, 0.75):
            hit = next((tt for tt, got in fresh_progress if got >= q * target), None)
            marks.append(f"{q:.0%} at {hit - tf:.1f} s" if hit else f"{q:.0%} never")
        served = ", ".join(f"g{i} {(o1[i]['BytesOut'] - o0[i]['BytesOut']) / 1e6:.2f}" for i in range(k))
        r["fresh"] = got_all - tf if got_all else None
        r["fresh_in"] = f1["BytesIn"]
        r["fresh_snmp"] = snmp1 - snmp0
        r["fresh_drops"] = fdrops1[ports[k]] - fdrops0[ports[k]]
        r["la_fresh"] = f"{la2} / {la3}"
        print(f"fresh agent g{k} (seed g1; up {t_up * 1000:.0f} ms after spawn): "
              + (f"had all {target} instances {r['fresh']:.1f} s after its spawn" if got_all else
                 f"had {lastf} of {target} after {a.fresh_timeout} s")
              + f" ({', '.join(marks)}); in {f1['BytesIn'] / 1e6:.2f} MB ({f1['BytesIn'] / enc:.2f}x the {n} entries' "
              f"encoded size, {f1['DatagramsIn']} datagrams), out {f1['BytesOut'] / 1e6:.2f} MB; its socket drops "
              f"{r['fresh_drops']}, RcvbufErrors (machine-wide) +{r['fresh_snmp']}; MB sent meanwhile: {served}; "
              f"RSS {rss_f / 1024:.1f} MiB; load average {la2} -> {la3}", flush=True)
        summary.append(r)
    finally:
        c.close()
        shutil.rmtree(root, ignore_errors=True)


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGHUP, lambda *_: sys.exit(129))
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="5000")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--agents", type=int, default=5)
    ap.add_argument("--poll-ms", type=int, default=150)
    ap.add_argument("--register-timeout", type=int, default=600, help="seconds for the whole burst")
    ap.add_argument("--converge-timeout", type=int, default=300,
                    help="seconds after the last acknowledgement to wait for every agent")
    ap.add_argument("--fresh-timeout", type=int, default=300)
    ap.add_argument("--max-entries", type=int, default=0,
                    help="the owner's certificate quota (gossipd ca sign --max-entries); 0: the largest size + 1000")
    ap.add_argument("--perf", metavar="DIR",
                    help="record `perf record -F 99 -g` of the owner g0 and of the replica g1 during the "
                         "burst (until every agent had it), and of the fresh agent until it had everything, into DIR")
    a = ap.parse_args()
    if not os.path.exists(bp.BIN):
        subprocess.check_call(["cargo", "build", "--release", "-p", "gossipd"], cwd=bp.ROOT)
    rev = subprocess.run(["git", "-C", bp.ROOT, "describe", "--always", "--dirty"], capture_output=True, text=True)
    ver = subprocess.run([bp.BIN, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    built = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(os.path.getmtime(bp.BIN)))
    print(f"# {ver} (binary built {built}; tree at {rev.stdout.strip()}); {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
          f"{os.cpu_count()} CPUs, load average {loadavg()}; {a.agents} agents + 1 fresh, CA mode, "
          f"{a.clients} clients, poll every {a.poll_ms} ms (Catalog.Instances of /v1/agent/metrics); "
          f"net.core.rmem_default {open('/proc/sys/net/core/rmem_default').read().strip()}")
    summary = []
    sizes = [int(x) for x in a.sizes.split(",")]
    try:
        sign_owner(a.max_entries or max(sizes) + 1000)
        for n in sizes:
            for rnd in range(1, a.rounds + 1):
                one_run(a, n, rnd, summary)
                time.sleep(2)
    finally:
        bp.close_authority()
    print("\n## summary")
    f = lambda x: "-" if x is None else f"{x:.1f}"
    for r in summary:
        print(f"N={r['n']} round {r['round']}: registered in {r['reg']:.1f} s; all others had it {f(r['all_first'])} s "
              f"after the first request ({f(r['all_ack'])} s after the last ack); each other received "
              f"{min(r['in']) / 1e6:.2f}-{max(r['in']) / 1e6:.2f} MB ({min(r['in']) / r['enc']:.2f}-{max(r['in']) / r['enc']:.2f}x "
              f"of {r['enc'] / 1e6:.2f} MB encoded); owner sent {r['owner_out'] / 1e6:.1f} MB; drops {r['drops']} "
              f"(RcvbufErrors +{r['snmp']}); fresh agent {f(r['fresh'])} s, {r['fresh_in'] / 1e6:.2f} MB "
              f"({r['fresh_in'] / r['enc']:.2f}x), drops {r['fresh_drops']} (RcvbufErrors +{r['fresh_snmp']}); "
              f"replica RSS {min(r['rss']):.1f}-{max(r['rss']):.1f} MiB, {min(r['growth']):.0f}-{max(r['growth']):.0f} B/entry "
              f"({min(r['growth']) / (r['enc'] / r['n']):.1f}-{max(r['growth']) / (r['enc'] / r['n']):.1f}x); "
              f"load {r['la']} (fresh {r['la_fresh']})")


if __name__ == "__main__":
    main()
