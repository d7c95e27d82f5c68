#!/usr/bin/env python3
"""gossipd against Serf: failure detection, side by side. Run through scripts/bench-liveness.sh,
which creates the network namespace this runs in and removes it afterwards.

  bench-liveness.py [--sizes 30,100] [--kills 3] [--soak-seconds 300,180] [--loss 0.1]
                    [--loss-proto udp|all] [--systems gossipd,gossipd-no-ca,serf] [--no-ca]

gossipd runs as README.md's cluster does: one cluster CA made for the run (`gossipd ca
create`), a certificate per agent name (`gossipd ca sign`), agents started with --ca-file,
--cert-file and --identity-file, so every handshake proves a certificate and every replica
checks owners' certificates. `gossipd-no-ca` (or `--no-ca`) is the cluster-key-only mode.

For each N, each system's cluster runs alone (gossipd, then Serf), in this process's network
namespace, on its loopback:

1. **Kill to removal.** `--kills` times: SIGKILL one agent (never the seed), then stamp, for
   every other agent, the moment it declared the victim failed; the victim is restarted (same
   data directory, same name) and the cluster is let converge before the next kill. Nothing
   polls the agents meanwhile:
   - gossipd: its own log line `member failed` (written at warn level, timestamped by the agent
     to the microsecond on the same realtime clock as this script); the log files are read
     every 200 ms, which only decides when the script stops waiting.
   - Serf: Serf's RPC `monitor` stream (one idle TCP connection per agent, log level INFO),
     stamped on arrival of the line `serf: EventMemberFailed: NAME`; Serf's own log lines
     carry whole seconds only. Resolution: the select loop's wake-up (well under 1 ms idle).
   Both stamps include the agent's own scheduling delay, as a real user would see it.
2. **Soak at packet loss.** The cluster converged, every agent alive, an iptables rule
   `-A INPUT -i lo -p udp -m statistic --mode random --probability LOSS -j DROP` in the
   namespace drops LOSS of the UDP datagrams (`--loss-proto all`: of every packet, TCP
   included). On loopback a datagram crosses OUTPUT and INPUT once each, so the rule drops LOSS
   of the datagrams (a ping and its ack both arrive with probability (1 - LOSS)^2 = 0.81 at
   10%). With the default, TCP is not dropped: Serf's push-pull and memberlist's TCP fallback
   ping run over TCP (gossipd uses no TCP). For `--soak-seconds` nothing is killed, so every
   suspicion and every death is false. Counted:
   - gossipd: its counters in `/v1/agent/metrics` before and after (`SuspicionsRaised`: an
     agent's partner missed its direct and indirect probes; `Suspicions`: an agent marked a
     node suspect, own probes or rumor; `Deaths`; `Refutations`).
   - Serf (memberlist's INFO/WARN log lines through `monitor`): `Suspect X has failed, no acks
     received` (an accusation: the prober's direct, indirect and TCP probes all failed),
     `Marking X as failed` and `EventMemberFailed` (a death, per agent that declares it),
     `Refuting a suspect message`, and `Was able to connect to X but other probes failed` (a
     probe saved by memberlist's TCP fallback, which this loss does not touch).
   After the soak, the rule is removed and every agent's membership is checked once.
Prints figures and ratios; asserts nothing.
"""
import argparse, importlib.util, json, os, re, select, shutil, signal, socket, subprocess, sys, tempfile, time
from datetime import datetime

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ left in scripts/ by the import below
_spec = importlib.util.spec_from_file_location("bench_peers", os.path.join(HERE, "bench-peers.py"))
bp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bp)


def ipt(*args, check=True):
    return subprocess.run(["iptables", "-w", *args], check=check, capture_output=True, text=True)


class LossRule:
    """The drop rule on this namespace's loopback, removed on exit whatever happens."""

    def __init__(self, p, proto):
        self.spec = ["INPUT", "-i", "lo", "-p", proto, "-m", "statistic", "--mode", "random",
                     "--probability", str(p), "-j", "DROP"]
        self.on = False

    def add(self):
        ipt("-A", *self.spec)
        self.on = True

    def remove(self):
        if self.on:
            ipt("-D", *self.spec, check=False)
            self.on = False

    def dropped(self):
        out = ipt("-L", "INPUT", "-v", "-x", "-n").stdout
        m = re.search(r"^\s*(\d+)\s+\d+\s+DROP\b.*statistic", out, re.M)
        return int(m.group(1)) if m else 0


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGKILL)
    p.wait()


# ---------------------------------------------------------------------------------------------
# gossipd


class Gossipd(bp.GossipdCluster):
    """The benchmark's gossipd cluster, with restartable agents and log-stamped failures."""

    def start(self, interval_ms=1000):
        self.args = []
        self.addrs = []
        for i in range(self.n):
            d = os.path.join(self.root, f"g{i}")
            os.makedirs(d, exist_ok=True)
            args = [bp.BIN, "agent", "--node", f"g{i}", "--bind", f"127.0.0.1:{self.ports[i]}",
                    "--dns", "127.0.0.1:0", "--http", "127.0.0.1:0", "--data-dir", d,
                    "--cluster-key-file", bp.cluster_key_file(self.root),
                    "--gossip-interval-ms", str(interval_ms), "--log-level", "warn",
                    *bp.gossipd_flags(self.system, f"g{i}")]
            if i:
                args += ["--seed", f"127.0.0.1:{self.ports[0]}"]
            self.args.append(args)
            self.procs.append(None)
            self.addrs.append(None)
            self.spawn(i)
        self.http = [bp.HttpConn(a["http"]) for a in self.addrs]

    def log(self, i):
        return os.path.join(self.root, f"g{i}", "log")

    def spawn(self, i):
        path = os.path.join(self.root, f"g{i}", "addrs.json")
        if os.path.exists(path):
            os.remove(path)
        self.procs[i] = subprocess.Popen(self.args[i], stdout=subprocess.DEVNULL, stderr=open(self.log(i), "a"))
        for _ in range(400):
            try:
                self.addrs[i] = json.load(open(path))
                return
            except (OSError, ValueError):
                time.sleep(0.05)
        raise SystemExit(f"gossipd agent g{i} did not start")

    def restart(self, i):
        self.spawn(i)
        self.http[i] = bp.HttpConn(self.addrs[i]["http"])

    def node_id(self, i):
        """Agent i's node id as its log lines print it (hex, no dashes)."""
        for m in json.loads(self.http[0].call("GET", "/v1/agent/members")[1]):
            if m["Name"] == f"g{i}":
                return m["Tags"]["id"].replace("-", "")
        raise SystemExit(f"g{i} unknown to g0")

    def counters(self):
        keys = ("SuspicionsRaised", "Suspicions", "Deaths", "Refutations")
        tot = dict.fromkeys(keys, 0)
        for i in range(self.n):
            g = self.metrics(i)["Gossip"]
            for k in keys:
                tot[k] += g[k]
        return tot

    def kill_trial(self, victim, timeout=90):
        """SIGKILL `victim`; returns each other agent's delay (s) until it logged the victim
        failed, None for an agent that had not within `timeout`."""
        vid = self.node_id(victim)
        others = [i for i in range(self.n) if i != victim]
        offsets = {i: os.path.getsize(self.log(i)) for i in others}
        t_kill = time.time()
        stop(self.procs[victim])
        seen = {}
        pat = re.compile(r"^(\S+)\s+WARN\b.*member failed.*node=([0-9a-f]+)")
        while len(seen) < len(others) and time.time() - t_kill < timeout:
            time.sleep(0.2)
            for i in others:
                if i in seen:
                    continue
                with open(self.log(i)) as f:
                    f.seek(offsets[i])
                    for line in f:
                        m = pat.match(bp_strip(line))
                        if m and m.group(2) == vid:
                            ts = datetime.fromisoformat(m.group(1).replace("Z", "+00:00")).timestamp()
                            seen[i] = ts - t_kill
                            break
        return [seen.get(i) for i in others]

    def members_ok(self):
        """Agents whose view is not 'every agent alive'."""
        return [i for i, a in enumerate(self.converged()) if a != self.n]


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def bp_strip(line):
    return ANSI.sub("", line)


# ---------------------------------------------------------------------------------------------
# Serf


class Monitor:
    """Serf RPC `monitor` streams on many agents at once: every log line stamped on arrival."""

    def __init__(self, addrs):
        self.conns = {}
        for i, a in addrs.items():
            self.attach(i, a)

    def attach(self, i, addr):
        c = bp.SerfConn(addr)
        c.send("monitor", {"LogLevel": "INFO"}, body_expected=False)
        c.acked = False
        self.conns[i] = c

    def detach(self, i):
        c = self.conns.pop(i, None)
        if c:
            c.sock.close()

    def pump(self, seconds):
        """Reads for `seconds`; returns [(arrival, agent, line)]."""
        out = []
        end = time.time() + seconds
        while True:
            left = end - time.time()
            if left <= 0:
                return out
            socks = {c.sock: i for i, c in self.conns.items()}
            ready, _, _ = select.select(list(socks), [], [], left)
            now = time.time()
            for s in ready:
                i = socks[s]
                c = self.conns[i]
                data = s.recv(65536)
                if not data:
                    self.conns.pop(i)
                    continue
                c.buf += data
                # The first message after the request is its bodyless acknowledgement; every
                # later one is a header followed by {"Log": line}.
                while True:
                    try:
                        header, j = bp.mp_unpack(c.buf)
                        body = None
                        if c.acked:
                            body, j = bp.mp_unpack(c.buf, j)
                    except bp.Incomplete:
                        break
                    del c.buf[:j]
                    if header.get("Error"):
                        raise RuntimeError(f"serf monitor on agent {i}: {header['Error']}")
                    c.acked = True
                    if isinstance(body, dict) and "Log" in body:
                        line = body["Log"]
                        out.append((now, i, line.decode(errors="replace") if isinstance(line, bytes) else line))


class Serf(bp.SerfCluster):
    def start(self):
        self.args = []
        for i in range(self.n):
            d = os.path.join(self.root, f"s{i}")
            os.makedirs(d, exist_ok=True)
            args = [bp.SERF, "agent", f"-node=s{i}", f"-bind=127.0.0.1:{self.ports[i]}",
                    f"-rpc-addr=127.0.0.1:{self.rpc_ports[i]}", "-log-level=info"]
            if i:
                args.append(f"-join=127.0.0.1:{self.ports[0]}")
            self.args.append(args)
            self.procs.append(None)
            self.spawn(i)
        self.rpc = [bp.SerfConn(f"127.0.0.1:{p}") for p in self.rpc_ports]

    def spawn(self, i):
        d = os.path.join(self.root, f"s{i}")
        self.procs[i] = subprocess.Popen(self.args[i], stdout=open(os.path.join(d, "log"), "a"),
                                         stderr=subprocess.STDOUT)
        for _ in range(400):
            try:
                socket.create_connection(("127.0.0.1", self.rpc_ports[i]), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit(f"serf agent s{i} did not start")

    def restart(self, i):
        self.spawn(i)
        self.rpc[i] = bp.SerfConn(f"127.0.0.1:{self.rpc_ports[i]}")

    def addr(self, i):
        return f"127.0.0.1:{self.rpc_ports[i]}"

    def monitor(self, agents):
        m = Monitor({i: self.addr(i) for i in agents})
        # Serf replays its recent log lines to a new monitor: let them pass.
        m.pump(1.5)
        return m

    def kill_trial(self, victim, timeout=90):
        others = [i for i in range(self.n) if i != victim]
        mon = self.monitor(others)
        try:
            t_kill = time.time()
            stop(self.procs[victim])
            seen = {}
            needle = f"EventMemberFailed: s{victim} "
            while len(seen) < len(others) and time.time() - t_kill < timeout:
                for t, i, line in mon.pump(0.5):
                    if needle in line and i not in seen:
                        seen[i] = t - t_kill
            return [seen.get(i) for i in others]
        finally:
            for i in list(mon.conns):
                mon.detach(i)

    def members_ok(self):
        return [i for i, a in enumerate(self.converged()) if a != self.n]


SERF_PATTERNS = {
    "accusations": re.compile(r"memberlist: Suspect \S+ has failed, no acks received"),
    "marked_failed": re.compile(r"memberlist: Marking \S+ as failed"),
    "deaths": re.compile(r"serf: EventMemberFailed: "),
    "refutations": re.compile(r"memberlist: Refuting a suspect message"),
    "tcp_saves": re.compile(r"Was able to connect to \S+ but other probes failed"),
}


# ---------------------------------------------------------------------------------------------


def stats(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2], xs[-1]


def run_system(system, n, a, soak, loss, results):
    root = tempfile.mkdtemp(prefix=f"gossipd-live-{system}-", dir=bp.SHM)
    ports = bp.port_block(n, 20000)
    c = Gossipd(n, root, ports, system) if system.startswith("gossipd") else Serf(n, root, ports, bp.port_block(n, ports[-1] + 1))
    try:
        t0 = time.time()
        c.start()
        conv = bp.wait_converged(c)
        print(f"\n## {system}, N = {n}: started in {time.time() - t0 - conv:.1f} s, converged {conv:.1f} s later; "
              f"load average {' '.join(open('/proc/loadavg').read().split()[:3])}", flush=True)
        time.sleep(5)
        worst, medians = [], []
        for k in range(a.kills):
            victim = 1 + (k * 7 + 3) % (n - 1)
            delays = c.kill_trial(victim)
            missing = sum(d is None for d in delays)
            got = sorted(d for d in delays if d is not None)
            if missing:
                print(f"kill {k}: victim {victim}: {missing} agents had not declared it failed after 90 s")
            if got:
                worst.append(got[-1] if not missing else float("inf"))
                medians.append(got[len(got) // 2])
                print(f"kill {k}: victim {victim}: failed on the first agent at {got[0]:.2f} s, median agent "
                      f"{got[len(got) // 2]:.2f} s, on {n - 1 - missing} of {n - 1} at {got[-1]:.2f} s", flush=True)
            c.restart(victim)
            conv = bp.wait_converged(c, timeout=240)
            print(f"  victim restarted; all {n} alive everywhere {conv:.1f} s later", flush=True)
            time.sleep(3)
        r = results.setdefault((system, n), {})
        if worst:
            r["all_median"], r["all_max"] = stats(worst)
            r["agent_median"] = stats(medians)[0]
        # Soak at loss.
        mon = c.monitor(range(n)) if system == "serf" else None
        before = c.counters() if system.startswith("gossipd") else None
        rule = LossRule(loss, a.loss_proto)
        counts = dict.fromkeys(SERF_PATTERNS, 0)
        victims = set()
        try:
            rule.add()
            w0 = time.time()
            if mon:
                while time.time() - w0 < soak:
                    for _, i, line in mon.pump(min(5.0, soak - (time.time() - w0))):
                        for key, pat in SERF_PATTERNS.items():
                            if pat.search(line):
                                counts[key] += 1
                                if key == "deaths":
                                    victims.add(line.split("EventMemberFailed: ")[1].split()[0])
            else:
                time.sleep(soak)
            w = time.time() - w0
            dropped = rule.dropped()
        finally:
            rule.remove()
        if system.startswith("gossipd"):
            after = c.counters()
            d = {k: after[k] - before[k] for k in after}
            counts = {"accusations": d["SuspicionsRaised"], "suspicions": d["Suspicions"],
                      "deaths": d["Deaths"], "refutations": d["Refutations"]}
        else:
            for i in list(mon.conns):
                mon.detach(i)
        time.sleep(2)
        bad = c.members_ok()
        print(f"soak {w:.0f} s at {loss:.0%} loss ({a.loss_proto}) ({dropped} datagrams dropped): "
              + ", ".join(f"{k} {v}" for k, v in counts.items())
              + (f"; nodes declared failed: {sorted(victims)}" if victims else "")
              + f"; 2 s after the loss stopped, {len(bad)} agents did not see all {n} alive"
              + f"; load average {' '.join(open('/proc/loadavg').read().split()[:3])}", flush=True)
        r.update({f"soak_{k}": v for k, v in counts.items()})
        r["soak_seconds"] = w
    finally:
        for p in c.procs:
            if p:
                stop(p)
        shutil.rmtree(root, ignore_errors=True)


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="30,100")
    ap.add_argument("--kills", type=int, default=3)
    ap.add_argument("--soak-seconds", default="300,180", help="one per size")
    ap.add_argument("--loss", type=float, default=0.1)
    ap.add_argument("--systems", default="gossipd,serf",
                    help="in order, each alone: gossipd (with a cluster CA made for this run, "
                         "certificates required), gossipd-no-ca (the cluster key only), serf")
    ap.add_argument("--ca", action=argparse.BooleanOptionalAction, default=True,
                    help="--no-ca: run `gossipd` with the cluster key only (as gossipd-no-ca)")
    ap.add_argument("--loss-proto", default="udp", choices=["udp", "all"],
                    help="what the loss rule drops: UDP only (the default), or every packet, "
                         "TCP included (memberlist's TCP fallback ping and push-pull then see it too)")
    a = ap.parse_args()
    sizes = [int(x) for x in a.sizes.split(",")]
    soaks = [int(x) for x in a.soak_seconds.split(",")]
    soaks += [soaks[-1]] * (len(sizes) - len(soaks))
    systems = bp.gossipd_systems(a.systems.split(","), a.ca)
    print(f"# {bp.describe()}")
    print(f"# {os.cpu_count()} CPUs, load average {' '.join(open('/proc/loadavg').read().split()[:3])}; "
          f"each system's cluster runs alone, in one network namespace; {a.kills} kills per cluster; "
          f"soak at {a.loss:.0%} loss per packet ({a.loss_proto}); systems in order: {', '.join(systems)}")
    results = {}
    try:
        for n, soak in zip(sizes, soaks):
            for system in systems:
                run_system(system, n, a, soak, a.loss, results)
                time.sleep(2)
    finally:
        bp.close_authority()

    print("\n## summary (kill: seconds from SIGKILL to 'failed' on every other agent, median and max over "
          "kills, inf when some agent had not declared the victim failed within 90 s; soak: counts summed over "
          "all agents)")
    cols = ["all_median", "all_max", "agent_median", "soak_seconds", "soak_accusations", "soak_suspicions",
            "soak_deaths", "soak_refutations", "soak_tcp_saves"]
    print("| system | N | " + " | ".join(cols) + " |")
    for (system, n), r in results.items():
        print(f"| {system} | {n} | " + " | ".join(
            (f"{r[k]:.2f}" if isinstance(r.get(k), float) else str(r.get(k, "-"))) for k in cols) + " |")
    mine = [x for x in systems if x.startswith("gossipd")]
    pairs = [(x, "serf") for x in mine] + ([("gossipd", "gossipd-no-ca")] if len(mine) == 2 else [])
    for n in sizes:
        for x, y in pairs:
            g, s = results.get((x, n)), results.get((y, n))
            if g and s and "all_median" in g and "all_median" in s:
                print(f"N = {n}: {x} / {y}, kill to removal on all: median {g['all_median']:.2f} / "
                      f"{s['all_median']:.2f} s = {g['all_median'] / s['all_median']:.2f}, max {g['all_max']:.2f} / "
                      f"{s['all_max']:.2f} s = {g['all_max'] / s['all_max']:.2f}; false deaths at loss "
                      f"{g.get('soak_deaths')} / {s.get('soak_deaths')}; accusations {g.get('soak_accusations')} / "
                      f"{s.get('soak_accusations')}")


if __name__ == "__main__":
    main()
