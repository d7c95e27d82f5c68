#!/usr/bin/env python3
"""Convergence and idle cost of real gossipd agents on loopback.

Starts N agents (release build) joined through one seed, registers a service on one of them,
and timestamps its arrival at every agent with Consul-style blocking queries (one thread per
agent, so arrival is seen the moment the catalog changes). Then measures idle bytes sent per
agent per second from /v1/agent/metrics. Prints figures; asserts nothing.

usage: scripts/bench-convergence.py [--n 30] [--trials 5] [--idle-seconds 30] [--interval-ms 1000]
"""
import argparse, json, os, shutil, signal, subprocess, sys, tempfile, threading, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("GOSSIPD_BIN", os.path.join(ROOT, "target", "release", "gossipd"))


def get(http, path, timeout=30):
    with urllib.request.urlopen(f"http://{http}{path}", timeout=timeout) as r:
        return json.load(r), r.headers.get("X-Consul-Index")


def put(http, path, body):
    req = urllib.request.Request(f"http://{http}{path}", data=body.encode(), method="PUT")
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status


def start(root, name, seed, interval_ms):
    d = os.path.join(root, name)
    os.makedirs(d, exist_ok=True)
    key = os.path.join(root, "cluster.key")
    if not os.path.exists(key):
        with open(key, "w") as f:
            f.write(subprocess.check_output([BIN, "keygen"], text=True))
    args = [BIN, "agent", "--node", name, "--bind", "127.0.0.1:0", "--dns", "127.0.0.1:0", "--http", "127.0.0.1:0",
            "--data-dir", d, "--cluster-key-file", key, "--gossip-interval-ms", str(interval_ms), "--log-level", "warn"]
    if seed:
        args += ["--seed", seed]
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=open(os.path.join(d, "log"), "w"))
    path = os.path.join(d, "addrs.json")
    for _ in range(200):
        if os.path.exists(path):
            try:
                return p, json.load(open(path))
            except ValueError:
                pass
        time.sleep(0.05)
    raise SystemExit(f"agent {name} did not start")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=30)
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--idle-seconds", type=int, default=30)
    ap.add_argument("--interval-ms", type=int, default=1000)
    a = ap.parse_args()
    if not os.path.exists(BIN):
        subprocess.check_call(["cargo", "build", "--release", "-p", "gossipd"], cwd=ROOT)
    root = tempfile.mkdtemp(prefix="gossipd-bench-")
    procs, agents = [], []
    try:
        p, first = start(root, "n0", None, a.interval_ms)
        procs.append(p); agents.append(first)
        for i in range(1, a.n):
            p, ad = start(root, f"n{i}", first["gossip"], a.interval_ms)
            procs.append(p); agents.append(ad)
        t0 = time.time()
        while True:
            counts = [sum(1 for m in get(ad["http"], "/v1/agent/members")[0] if m["Status"] == 1) for ad in agents]
            if min(counts) == a.n:
                break
            if time.time() - t0 > 120:
                raise SystemExit(f"membership did not converge: {counts}")
            time.sleep(0.2)
        print(f"# {a.n} agents, gossip interval {a.interval_ms} ms; membership converged {time.time() - t0:.1f} s after the last start")

        results = []
        for trial in range(a.trials):
            svc = f"bench{trial}"
            arrivals = [None] * a.n
            ready = threading.Barrier(a.n + 1)

            def watch(i):
                http = agents[i]["http"]
                _, index = get(http, f"/v1/catalog/service/{svc}")
                ready.wait()
                while arrivals[i] is None:
                    body, index = get(http, f"/v1/catalog/service/{svc}?index={index}&wait=20s")
                    if body:
                        arrivals[i] = time.time()

            threads = [threading.Thread(target=watch, args=(i,), daemon=True) for i in range(a.n)]
            for t in threads:
                t.start()
            ready.wait()
            time.sleep(0.2)
            origin = agents[trial % a.n]["http"]
            t_reg = time.time()
            put(origin, "/v1/agent/service/register", json.dumps({"Name": svc, "Port": 80}))
            for t in threads:
                t.join(timeout=30)
            if any(x is None for x in arrivals):
                raise SystemExit(f"trial {trial}: not every agent got the service")
            lat = sorted((x - t_reg) * 1000 for x in arrivals)
            results.append(lat)
            print(f"trial {trial}: all {a.n} agents in {lat[-1]:.1f} ms (median agent {lat[len(lat)//2]:.1f} ms)")
        worst = [r[-1] for r in results]
        print(f"convergence to all {a.n} agents: mean {sum(worst)/len(worst):.1f} ms, max {max(worst):.1f} ms over {a.trials} trials")

        def bytes_out():
            return sum(get(ad["http"], "/v1/agent/metrics")[0]["Gossip"]["BytesOut"] for ad in agents)
        time.sleep(2)
        b0, t0 = bytes_out(), time.time()
        time.sleep(a.idle_seconds)
        b1, t1 = bytes_out(), time.time()
        per = (b1 - b0) / a.n / (t1 - t0)
        print(f"idle: {per:.1f} bytes/s sent per agent (UDP payload, {a.idle_seconds} s window, N={a.n})")
        rss = []
        for p in procs:
            with open(f"/proc/{p.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss.append(int(line.split()[1]))
        print(f"RSS per agent: mean {sum(rss)/len(rss)/1024:.1f} MiB, max {max(rss)/1024:.1f} MiB")
    finally:
        for p in procs:
            p.send_signal(signal.SIGKILL)
        for p in procs:
            p.wait()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
