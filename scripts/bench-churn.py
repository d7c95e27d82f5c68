#!/usr/bin/env python3
"""gossipd under churn and across restarts: agreement after churn stops, and what a peer
answers while an agent restarts (issue #13). Loopback only, no root; standard library only
(and `dig` for the restart scenario's DNS queries, when installed). Prints figures; asserts
nothing.

  bench-churn.py [churn] [restart] [--agents 20] [--replacements 60] [--seconds 300]
                 [--quiet-seconds 90] [--instances 2000] [--seed 13] [--keep] [--log-level warn]

Agents run as README.md's cluster does, with bench-peers.py's machinery (imported as
bench-liveness.py does): one cluster key and one cluster CA made for the run (`gossipd ca
create`), a certificate per agent name (`gossipd ca sign`), every agent started with
--ca-file, --cert-file and --identity-file, gossip at the default interval (1 s), data
directories on tmpfs. The binary is target/release/gossipd (GOSSIPD_BIN overrides it).

**churn.** `--agents` agents: c0 first, without a seed, the others seeded with it; each
registers one instance of `web` (ID web-NAME, a few dozen bytes of meta) through the HTTP API.
Once every agent agrees, `--replacements` replacements, one every --seconds / --replacements:
each removes a random live agent other than c0, cycling SIGKILL, SIGTERM (which stops an agent
without leaving) and `gossipd leave --http ADDR --data-dir DIR` (a graceful leave), phased so
that the last is a SIGKILL (its detection is part of the time to agreement), and starts
a fresh agent (new name, new data directory) seeded with a random live agent, which registers
its instance. Just before each replacement one sweep reads every agent (a sample of agreement
during the churn). After the last replacement, quiet: every 200 ms a sweep reads every agent's
GET /v1/agent/members and GET /v1/catalog/service/web, until every agent agrees with the truth
(its alive members, Status 1, are exactly the running agents, and the instances it answers
are exactly theirs) or --quiet-seconds pass; then 5 s more of sweeps check that the agreement
holds. Printed: time to agreement after the last replacement, per-agent counts at agreement
(or at the deadline), one DNS SRV query of `web` per agent (dig, over TCP), the agents'
liveness counters, RSS and CPU.

**restart.** 3 agents (alpha first, without a seed; bravo and charlie seeded with it) on fixed
ports. bravo registers --instances instances of `bulk-bravo` (a few dozen bytes of meta each)
and one `api-bravo`; alpha the same as `bulk-alpha` and `api-alpha`; every agent answers them
all. Then four pollers, each in its own thread with its own connection, ask a watcher agent
every 10 ms (or as fast as it answers): GET /v1/catalog/service/bulk-R (the instances counted;
at 2,000 instances the agent takes tens of ms to build this answer), the size of its whole
catalog (`Catalog.Instances` of GET /v1/agent/metrics, cheap), `api-R.service.gossip SRV` over
UDP (sent by this script) and the same with `dig` (tens of ms per query on a busy machine),
while agent R is restarted on the same data directory and ports:
  (i)   R = bravo, watched from alpha: SIGTERM, wait for the exit, start again with --seed;
  (ii)  R = alpha, watched from bravo: the same, alpha being the seedless first node;
  (iii) R = bravo, watched from alpha: SIGKILL, start again with --seed.
Printed: the fewest instances seen, the time below the full count, the DNS misses (answers
other than NOERROR with one SRV record, and their codes), how long the restart took (signal to
exit, to the HTTP API answering again) and when the watcher first saw R's new generation alive.
The poll runs from 1 s before the signal until the watcher has answered the full count for 3 s
after it saw the new generation (60 s at most).

Every wait has a timeout; every process started is killed by pid on exit (Ctrl-C included).
"""
import argparse, importlib.util, json, os, random, re, shutil, signal, socket, struct, subprocess, sys, tempfile, threading, time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ left in scripts/ by the import below
_spec = importlib.util.spec_from_file_location("bench_peers", os.path.join(HERE, "bench-peers.py"))
bp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bp)

DIG = shutil.which("dig")
PROCS = []  # every Popen this script started, killed by pid on exit


def loadavg():
    return " ".join(open("/proc/loadavg").read().split()[:3])


def describe():
    rev = subprocess.run(["git", "-C", bp.ROOT, "describe", "--always", "--dirty"], capture_output=True, text=True)
    g = subprocess.run([bp.BIN, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    built = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(os.path.getmtime(bp.BIN)))
    return f"{g} (binary {bp.BIN}, built {built}; tree at {rev.stdout.strip() or '?'})"


KEEP = False
LOG_LEVEL = "warn"


def cleanup(root):
    if KEEP:
        print(f"(data directories and logs kept in {root})")
    else:
        shutil.rmtree(root, ignore_errors=True)


def kill_all():
    for p in PROCS:
        if p.poll() is None:
            try:
                os.kill(p.pid, signal.SIGKILL)
            except OSError:
                pass
    for p in PROCS:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


class Agent:
    """One gossipd agent: its own data directory under `root`, addresses from addrs.json."""

    def __init__(self, root, name, seeds, ports=None):
        self.name, self.seeds = name, list(seeds)
        self.dir = os.path.join(root, name)
        os.makedirs(self.dir, exist_ok=True)
        g, d, h = (f"127.0.0.1:{p}" for p in ports) if ports else ("127.0.0.1:0",) * 3
        self.args = [bp.BIN, "agent", "--node", name, "--bind", g, "--dns", d, "--http", h,
                     "--data-dir", self.dir, "--cluster-key-file", bp.cluster_key_file(root),
                     "--log-level", LOG_LEVEL, *bp.gossipd_flags("gossipd", name)]
        for s in self.seeds:
            self.args += ["--seed", s]
        self.proc = None
        self.started = None
        self.spawn()

    def spawn(self, seeded=True):
        path = os.path.join(self.dir, "addrs.json")
        if os.path.exists(path):
            os.remove(path)
        args = self.args if seeded else [a for i, a in enumerate(self.args)
                                         if a != "--seed" and (i == 0 or self.args[i - 1] != "--seed")]
        self.started = time.time()
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(self.dir, "log"), "a"))
        PROCS.append(self.proc)
        deadline = time.time() + 20
        while True:
            try:
                self.addrs = json.load(open(path))
                break
            except (OSError, ValueError):
                if self.proc.poll() is not None or time.time() > deadline:
                    raise SystemExit(f"agent {self.name} did not start (exit {self.proc.poll()}); "
                                     f"log: {open(os.path.join(self.dir, 'log')).read()[-2000:]}")
                time.sleep(0.02)
        self.gossip, self.dns, self.http_addr = self.addrs["gossip"], self.addrs["dns"], self.addrs["http"]
        while True:
            try:
                self.http = bp.HttpConn(self.http_addr)
                self.get("/v1/agent/members")
                break
            except (OSError, ConnectionError):
                if time.time() > deadline:
                    raise SystemExit(f"agent {self.name}: HTTP API not answering")
                time.sleep(0.02)
        self.up = time.time()

    def get(self, path):
        status, body = self.http.call("GET", path)
        if status != 200:
            raise RuntimeError(f"{self.name}: GET {path}: {status} {body[:200]!r}")
        return body

    def put(self, path, obj):
        status, body = self.http.call("PUT", path, json.dumps(obj).encode())
        if status != 200:
            raise SystemExit(f"{self.name}: PUT {path}: {status} {body[:200]!r}")

    def view(self, service):
        """(alive, suspect, failed, left) member names, and the (node, id) instances of `service`."""
        ms = json.loads(self.get("/v1/agent/members"))
        alive = {m["Name"] for m in ms if m["Status"] == 1}
        suspect = {m["Name"] for m in ms if m["Status"] == 1 and m["Tags"].get("suspect") == "true"}
        failed = {m["Name"] for m in ms if m["Status"] == 4}
        left = {m["Name"] for m in ms if m["Status"] == 3}
        inst = {(i["Node"], i["ServiceID"]) for i in json.loads(self.get(f"/v1/catalog/service/{service}"))}
        return alive, suspect, failed, left, inst

    def metrics(self):
        return json.loads(self.get("/v1/agent/metrics"))

    def generation_seen(self, name):
        for m in json.loads(self.get("/v1/agent/members")):
            if m["Name"] == name:
                return int(m["Tags"].get("generation", 0)), m["Status"]
        return None, None

    def wait_exit(self, timeout=15):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            return "killed after timeout"

    def signal(self, sig):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def leave(self):
        """`gossipd leave --http ADDR --data-dir DIR`, then the agent's exit."""
        r = subprocess.run([bp.BIN, "leave", "--http", self.http_addr, "--data-dir", self.dir],
                           capture_output=True, text=True, timeout=15)
        if r.returncode != 0:
            print(f"  gossipd leave {self.name}: exit {r.returncode}: {r.stderr.strip()[:200]}")
        return self.wait_exit()


def dig_srv(dns, name, tcp=False, timeout=2):
    """(rcode, number of SRV records) of one `dig` query; ("timeout", 0) when dig got none."""
    host, port = dns.rsplit(":", 1)
    args = [DIG, f"@{host}", "-p", port, name, "SRV", "+noall", "+comments", "+answer", "+tries=1", "+time=1"]
    if tcp:
        args.append("+tcp")
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=timeout).stdout
    except subprocess.TimeoutExpired:
        return "timeout", 0
    m = re.search(r"status: (\w+)", out)
    if not m:
        return "timeout", 0
    return m.group(1), len(re.findall(r"\sIN\s+SRV\s", out))


# ---------------------------------------------------------------------------------------------
# churn


def web(agent):
    agent.put("/v1/agent/service/register", {
        "ID": f"web-{agent.name}", "Name": "web", "Port": 8080, "Address": "127.0.0.1",
        "Meta": {"owner": agent.name, "pad": "churn-benchmark-instance-metadata"}})


def sweep(agents, truth_names, truth_inst):
    """Every agent's view; returns ({name: view or error}, number of agents that agree)."""
    views, agree = {}, 0
    for a in agents:
        try:
            alive, suspect, failed, left, inst = a.view("web")
        except (OSError, ConnectionError, RuntimeError, ValueError) as e:
            views[a.name] = e
            continue
        ok = alive == truth_names and inst == truth_inst
        views[a.name] = (alive, suspect, failed, left, inst, ok)
        agree += ok
    return views, agree


def disagreement(views, truth_names, truth_inst, events, now):
    """What the agents that disagree get wrong: each wrong name, on how many agents, and how
    long ago that node was removed or started (`events`: name -> (time, what))."""
    wrong = {}
    bad = 0
    for v in views.values():
        if not isinstance(v, tuple):
            bad += 1
            wrong.setdefault(("no answer", "-"), 0)
            wrong[("no answer", "-")] += 1
            continue
        alive, _, _, _, inst, ok = v
        bad += not ok
        for kind, names in (("alive but gone", alive - truth_names), ("missing from alive", truth_names - alive),
                            ("instance served but gone", {n for n, _ in inst - truth_inst}),
                            ("instance missing", {n for n, _ in truth_inst - inst})):
            for n in names:
                wrong[(kind, n)] = wrong.get((kind, n), 0) + 1
    parts = []
    for (kind, n), c in sorted(wrong.items()):
        t, what = events.get(n, (None, "?"))
        parts.append(f"{n} {kind} on {c}" + (f" ({what} {now - t:.1f} s before)" if t else ""))
    return f"{bad} agents disagree: " + "; ".join(parts)


def run_churn(a, rng):
    root = tempfile.mkdtemp(prefix="gossipd-churn-", dir=bp.SHM)
    print(f"\n## churn: {a.agents} agents, {a.replacements} replacements over {a.seconds} s "
          f"(SIGKILL, SIGTERM, gossipd leave in turn), then up to {a.quiet_seconds} s quiet; "
          f"load average {loadavg()}", flush=True)
    try:
        t0 = time.time()
        seed = Agent(root, "c0", [])
        live = [seed]
        for i in range(1, a.agents):
            live.append(Agent(root, f"c{i}", [seed.gossip]))
        for x in live:
            web(x)
        started = time.time() - t0
        truth = lambda: ({x.name for x in live}, {(x.name, f"web-{x.name}") for x in live})
        t1 = time.time()
        while True:
            _, agree = sweep(live, *truth())
            if agree == len(live):
                break
            if time.time() - t1 > 120:
                raise SystemExit(f"the initial cluster did not agree within 120 s ({agree} of {len(live)})")
            time.sleep(0.2)
        print(f"started and registered in {started:.1f} s; every agent agreed {time.time() - t1:.1f} s later",
              flush=True)
        time.sleep(3)

        kinds = ["SIGKILL", "SIGTERM", "leave"]
        gone = {}  # name -> how it left
        removal = {k: [] for k in kinds}
        starts, samples, notes = [], [], []
        events = {}  # name -> (time, what happened to it)
        interval = a.seconds / a.replacements
        next_id = a.agents
        c0 = time.time()
        last_removed = None
        for k in range(a.replacements):
            wait = c0 + k * interval - time.time()
            if wait > 0:
                time.sleep(wait)
            views, agree = sweep(live, *truth())
            samples.append(agree)
            if agree != len(live):
                notes.append(f"    before replacement {k + 1} ({time.time() - c0:.1f} s): "
                              + disagreement(views, *truth(), events, time.time()))
            how = kinds[(k - (a.replacements - 1)) % 3]  # the last one a SIGKILL
            victim = rng.choice(live[1:])
            live.remove(victim)
            tr = time.time()
            last_removed = tr
            if how == "SIGKILL":
                victim.signal(signal.SIGKILL)
                victim.wait_exit()
            elif how == "SIGTERM":
                victim.signal(signal.SIGTERM)
                st = victim.wait_exit()
                if st != 0:
                    print(f"  {victim.name}: SIGTERM exit {st}")
            else:
                st = victim.leave()
                if st != 0:
                    print(f"  {victim.name}: exit after leave {st}")
            removal[how].append(time.time() - tr)
            gone[victim.name] = how
            events[victim.name] = (tr, {"SIGKILL": "killed", "SIGTERM": "stopped", "leave": "left"}[how])
            via = rng.choice(live)
            ts = time.time()
            new = Agent(root, f"c{next_id}", [via.gossip])
            next_id += 1
            web(new)
            starts.append(time.time() - ts)
            live.append(new)
            events[new.name] = (ts, "started")
            if (k + 1) % 10 == 0:
                print(f"  {k + 1} replacements at {time.time() - c0:.0f} s; agents agreeing in the sweep before "
                      f"this one: {agree} of {len(live)}; load average {loadavg()}", flush=True)
        t_last = time.time()
        churn_s = t_last - c0

        truth_names, truth_inst = truth()
        deadline = t_last + a.quiet_seconds
        agreed_at, views, sweeps, sweep_ms = None, {}, 0, []
        while time.time() < deadline:
            s0 = time.time()
            views, agree = sweep(live, truth_names, truth_inst)
            sweeps += 1
            sweep_ms.append((time.time() - s0) * 1000)
            if agree == len(live):
                agreed_at = time.time()
                break
            rest = 0.2 - (time.time() - s0)
            if rest > 0:
                time.sleep(rest)
        at_views = views
        lost = 0
        if agreed_at:
            hold = time.time() + 5
            while time.time() < hold:
                s0 = time.time()
                _, agree = sweep(live, truth_names, truth_inst)
                lost += agree != len(live)
                time.sleep(max(0.0, 0.2 - (time.time() - s0)))

        print(f"churn: {a.replacements} replacements in {churn_s:.1f} s ({len(removal['SIGKILL'])} SIGKILL, "
              f"{len(removal['SIGTERM'])} SIGTERM, {len(removal['leave'])} gossipd leave); load average {loadavg()}")
        for how, ds in removal.items():
            if ds:
                print(f"  {how}: signal or command to exit: median {sorted(ds)[len(ds) // 2]:.2f} s, max {max(ds):.2f} s")
        print(f"  a fresh agent started and registered: median {sorted(starts)[len(starts) // 2]:.2f} s, "
              f"max {max(starts):.2f} s")
        print(f"  sweeps just before each replacement (during churn): every agent agreed in "
              f"{sum(s == a.agents for s in samples)} of {len(samples)}; agents agreeing: mean "
              f"{sum(samples) / len(samples):.1f}, fewest {min(samples)} of {a.agents}")
        for line in notes:
            print(line)
        if agreed_at:
            print(f"quiet: every agent agreed {agreed_at - t_last:.2f} s after the last replacement finished "
                  f"({agreed_at - last_removed:.2f} s after the last removal; {sweeps} sweeps of "
                  f"{sum(sweep_ms) / len(sweep_ms):.0f} ms mean); in the next 5 s, {lost} sweeps disagreed")
        else:
            print(f"quiet: agents did NOT all agree within {a.quiet_seconds} s of the last replacement; "
                  + disagreement(views, truth_names, truth_inst, events, time.time()))
        print(f"per agent at {'agreement' if agreed_at else 'the deadline'} (truth: {len(truth_names)} alive, "
              f"{len(truth_inst)} instances; {len(gone)} departed: {sum(v != 'leave' for v in gone.values())} crashed "
              f"or stopped, {sum(v == 'leave' for v in gone.values())} left):")
        print("| agent | alive | suspect | failed | left | departed unknown | instances | wrong alive | missing alive | "
              "wrong instances | missing instances | web SRV (dig, TCP) |")
        dig_bad = 0
        for x in live:
            v = at_views.get(x.name)
            srv = dig_srv(x.dns, "web.service.gossip", tcp=True) if DIG else ("-", "-")
            dig_bad += srv != ("NOERROR", len(truth_inst))
            if not isinstance(v, tuple):
                print(f"| {x.name} | error: {v} |")
                continue
            alive, suspect, failed, left, inst, _ = v
            unknown = set(gone) - failed - left - alive
            wa, ma = sorted(alive - truth_names), sorted(truth_names - alive)
            wi, mi = sorted(inst - truth_inst), sorted(truth_inst - inst)
            print(f"| {x.name} | {len(alive)} | {len(suspect)} | {len(failed)} | {len(left)} | {len(unknown)} | "
                  f"{len(inst)} | {' '.join(wa) or '-'} | {' '.join(ma) or '-'} | {' '.join(n for n, _ in wi) or '-'} | "
                  f"{' '.join(n for n, _ in mi) or '-'} | {srv[0]} {srv[1]} |")
        if DIG:
            print(f"dig SRV web.service.gossip over TCP, once per agent after the table: {dig_bad} answers other "
                  f"than NOERROR with {len(truth_inst)} records")
        # How each agent saw the departed: a left node should be left, a crashed or stopped one failed.
        mis = {"left as failed": 0, "crashed as left": 0}
        for x in live:
            v = at_views.get(x.name)
            if isinstance(v, tuple):
                _, _, failed, left, _, _ = v
                mis["left as failed"] += sum(1 for n, h in gone.items() if h == "leave" and n in failed)
                mis["crashed as left"] += sum(1 for n, h in gone.items() if h != "leave" and n in left)
        print(f"departed nodes shown with the other status, summed over agents: {mis}")
        keys = ("SuspicionsRaised", "Suspicions", "Deaths", "Refutations")
        tot = dict.fromkeys(keys, 0)
        sp = 0
        for x in live:
            m = x.metrics()
            sp += bool(m["Catalog"]["SelfPreservation"])
            for key in keys:
                tot[key] += m["Gossip"][key]
        logs = [open(os.path.join(x.dir, "log")).read().lower() for x in live]
        engaged = sum(t.count("self-preservation engaged") for t in logs)
        released = sum(t.count("self-preservation released") for t in logs)
        print(f"liveness counters summed over the {len(live)} live agents (each counts since its own start): "
              + ", ".join(f"{k} {v}" for k, v in tot.items())
              + f"; agents in self-preservation now: {sp}; log lines 'self-preservation engaged' {engaged}, "
              f"'released' {released}")
        rss = sorted(bp.rss_kib(x.proc.pid) / 1024 for x in live)
        cpu = sorted(bp.cpu_ns(x.proc.pid) / 1e9 / (time.time() - x.started) * 100 for x in live)
        print(f"RSS of the live agents: median {rss[len(rss) // 2]:.1f} MiB, max {rss[-1]:.1f} MiB; CPU since each "
              f"agent's start (schedstat): median {cpu[len(cpu) // 2]:.2f} %, max {cpu[-1]:.2f} % of a core "
              f"(c0 ran through the whole churn: {bp.cpu_ns(seed.proc.pid) / 1e9 / (time.time() - seed.started) * 100:.2f} %)",
              flush=True)
    finally:
        kill_all()
        PROCS.clear()
        cleanup(root)


# ---------------------------------------------------------------------------------------------
# restart


class Poller(threading.Thread):
    """Calls `probe()` every `period` s (or as fast as it answers) until stopped; records
    (time sent, result)."""

    def __init__(self, probe, period=0.01):
        super().__init__(daemon=True)
        self.probe, self.period = probe, period
        self.stop = threading.Event()
        self.results = []
        self.error = None

    def run(self):
        try:
            while not self.stop.is_set():
                s = time.time()
                self.results.append((s, self.probe()))
                self.stop.wait(max(0.0, self.period - (time.time() - s)))
        except Exception as e:  # reported with the figures
            self.error = e


def udp_srv(dns, name, qid):
    """(rcode, answer count) of one SRV query over UDP, sent and read here (1 s timeout):
    finer-grained than spawning dig, which takes tens of ms on a loaded machine."""
    host, port = dns.rsplit(":", 1)
    q = struct.pack(">HHHHHH", qid & 0xFFFF, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack(">HH", 33, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1)
    try:
        s.sendto(q, (host, int(port)))
        while True:
            r = s.recv(4096)
            if len(r) >= 12 and r[:2] == q[:2]:
                break
    except OSError:
        return "timeout", 0
    finally:
        s.close()
    flags, an = struct.unpack(">H", r[2:4])[0], struct.unpack(">H", r[6:8])[0]
    return RCODES.get(flags & 0xF, str(flags & 0xF)), an


RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


def count_instances(agent, service):
    status, body = agent.http.call("GET", f"/v1/catalog/service/{service}")
    return body.count(b'"ServiceID"') if status == 200 else -1


def misses_of(results, t0):
    """(count, {code: count}, first, last) of DNS answers other than NOERROR with one record."""
    bad = [(t, rc, n) for t, (rc, n) in results if not (rc == "NOERROR" and n == 1)]
    codes = {}
    for _, rc, n in bad:
        key = rc if rc != "NOERROR" else f"NOERROR with {n} records"
        codes[key] = codes.get(key, 0) + 1
    if not bad:
        return 0, {}, None, None
    return len(bad), codes, bad[0][0] - t0, bad[-1][0] - t0


def shortfall(results, full, t0):
    """(fewest, most, seconds below `full`, first and last time below it after t0) of (t, count)."""
    below = sum(t2 - t1 for (t1, c1), (t2, _) in zip(results, results[1:]) if c1 != full)
    low = [t for t, c in results if c != full]
    counts = [c for _, c in results]
    return (min(counts), max(counts), below, (low[0] - t0) if low else None, (low[-1] - t0) if low else None)


def restart_trial(label, r, watcher, k, total, how, seeded):
    """Restarts `r` while four pollers watch `watcher`, each in its own thread with its own
    connection: its catalog answer for bulk-R (counted), its catalog size (`Catalog.Instances`
    of /v1/agent/metrics, cheap, so polled every 10 ms even when the catalog answer takes longer),
    and api-R SRV over UDP (sent by this script) and with dig."""
    service, api = f"bulk-{r.name}", f"api-{r.name}.service.gossip"
    gen0, _ = watcher.generation_seen(r.name)
    conns = [bp.HttpConn(watcher.http_addr) for _ in range(2)]

    def catalog():
        status, body = conns[0].call("GET", f"/v1/catalog/service/{service}")
        return body.count(b'"ServiceID"') if status == 200 else -1

    def size():
        status, body = conns[1].call("GET", "/v1/agent/metrics")
        return json.loads(body)["Catalog"]["Instances"] if status == 200 else -1

    qid = iter(range(1 << 30))
    pollers = {"catalog": Poller(catalog), "size": Poller(size),
               "udp": Poller(lambda: udp_srv(watcher.dns, api, next(qid)))}
    if DIG:
        pollers["dig"] = Poller(lambda: dig_srv(watcher.dns, api))
    for p in pollers.values():
        p.start()
    t_end = time.time() + 60
    try:
        time.sleep(1)  # a second of polls before the signal
        t_sig = time.time()
        r.signal(signal.SIGTERM if how == "SIGTERM" else signal.SIGKILL)
        code = r.wait_exit()
        t_exit = time.time()
        r.spawn(seeded=seeded)
        t_up = r.up
        t_gen = None
        while time.time() < t_end:
            if t_gen is None:
                g, st = watcher.generation_seen(r.name)
                if g is not None and gen0 is not None and g > gen0 and st == 1:
                    t_gen = time.time()
            cat = pollers["catalog"].results
            last_bad = max((t for t, c in cat if c != k), default=t_sig)
            if t_gen and cat and cat[-1][1] == k and time.time() - max(t_gen, last_bad) > 3:
                break
            time.sleep(0.1)
    finally:
        for p in pollers.values():
            p.stop.set()
        for p in pollers.values():
            p.join(timeout=5)
    res = {key: p.results for key, p in pollers.items()}
    span = res["size"][-1][0] - res["size"][0][0]
    rate = lambda key: f"{len(res[key])} ({span / max(1, len(res[key])) * 1000:.0f} ms apart)"
    print(f"{label}: {r.name} restarted ({how}, {'with' if seeded else 'without'} --seed), watched from "
          f"{watcher.name} for {span:.1f} s: catalog answers {rate('catalog')}, catalog sizes {rate('size')}, "
          f"UDP SRV queries {rate('udp')}" + (f", dig queries {rate('dig')}" if DIG else "")
          + f"; load average {loadavg()}")
    for key, p in pollers.items():
        if p.error:
            print(f"  poller {key} stopped: {p.error!r}")
    print(f"  restart: signal to exit {t_exit - t_sig:.2f} s (exit {code}), signal to HTTP API answering "
          f"{t_up - t_sig:.2f} s; {watcher.name} saw the new generation alive "
          + (f"{t_gen - t_sig:.2f} s after the signal" if t_gen else "NOT within the window (60 s)"))
    out = {"restart": t_up - t_sig, "gen": (t_gen - t_sig) if t_gen else None}
    for key, full, what in (("catalog", k, f"instances of {service} in its catalog answer"),
                            ("size", total, "instances in its whole catalog (Catalog.Instances)")):
        fewest, most, below, first, last = shortfall(res[key], full, t_sig)
        out[key] = (fewest, below)
        print(f"  {what}: fewest {fewest} of {full} (most {most}); below {full} for {below:.2f} s in all"
              + (f", from {first:+.2f} s to {last:+.2f} s after the signal" if first is not None else "")
              + ("" if res[key][-1][1] == full else f"; NOT full at the end: {res[key][-1][1]}"))
    for key in ("udp", "dig"):
        if key not in res:
            continue
        n, codes, first, last = misses_of(res[key], t_sig)
        out[key] = (n, len(res[key]), first, last)
        print(f"  DNS ({'UDP query' if key == 'udp' else 'dig'}, {api} SRV on {watcher.name}): {n} misses of "
              f"{len(res[key])}" + (f" {codes}, from {first:+.2f} s to {last:+.2f} s after the signal" if n else ""),
              flush=True)
    for c in conns:
        c.sock.close()
    return out


def run_restart(a):
    root = tempfile.mkdtemp(prefix="gossipd-restart-", dir=bp.SHM)
    k = a.instances
    print(f"\n## restart: 3 agents, {k} instances on each of alpha and bravo; load average {loadavg()}", flush=True)
    try:
        ports = bp.port_block(9, 21000)
        alpha = Agent(root, "alpha", [], ports[0:3])
        bravo = Agent(root, "bravo", [alpha.gossip], ports[3:6])
        charlie = Agent(root, "charlie", [alpha.gossip], ports[6:9])
        t0 = time.time()
        for x in (alpha, bravo):
            for j in range(k):
                x.put("/v1/agent/service/register", {
                    "ID": f"bulk-{j}", "Name": f"bulk-{x.name}", "Port": 10000 + j,
                    "Meta": {"n": str(j), "pad": "restart-benchmark-meta-0123456789"}})
            x.put("/v1/agent/service/register", {"ID": "api", "Name": f"api-{x.name}", "Port": 9000})
        reg = time.time() - t0

        def settled():
            ok = True
            for w in (alpha, bravo, charlie):
                ok &= all(count_instances(w, f"bulk-{n}") == k for n in ("alpha", "bravo"))
                ok &= len(w.view("web")[0]) == 3
            return ok

        def wait_settled(what):
            t = time.time()
            while not settled():
                if time.time() - t > 120:
                    raise SystemExit(f"restart: the cluster did not settle within 120 s {what}")
                time.sleep(0.2)
            return time.time() - t

        w = wait_settled("after the registrations")
        size = len(alpha.get("/v1/catalog/service/bulk-bravo"))
        print(f"registered {2 * k + 2} instances in {reg:.1f} s; every agent answered all {w:.1f} s later "
              f"(one catalog answer of bulk-bravo: {size / 1024:.0f} KiB)", flush=True)
        time.sleep(3)
        total = 2 * k + 2
        res = {}
        res["i"] = restart_trial("(i)", bravo, alpha, k, total, "SIGTERM", True)
        print(f"  settled again {wait_settled('after (i)'):.1f} s after the window", flush=True)
        time.sleep(3)
        res["ii"] = restart_trial("(ii)", alpha, bravo, k, total, "SIGTERM", False)
        print(f"  settled again {wait_settled('after (ii)'):.1f} s after the window", flush=True)
        time.sleep(3)
        res["iii"] = restart_trial("(iii)", bravo, alpha, k, total, "SIGKILL", True)
        print(f"  settled again {wait_settled('after (iii)'):.1f} s after the window", flush=True)
        print(f"\n| restart | fewest instances answered (of {k}) | time below | catalog size: fewest (of {total}), "
              f"time below | DNS misses (UDP queries) | DNS misses (dig) | signal to HTTP up | new generation seen |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        names = {"i": "(i) bravo, SIGTERM, --seed", "ii": "(ii) alpha, SIGTERM, no seed", "iii": "(iii) bravo, SIGKILL, --seed"}
        dns = lambda m: (f"{m[0]} of {m[1]}" + (f" ({m[2]:+.2f} to {m[3]:+.2f} s)" if m[0] else "")) if m else "-"
        for key, r in res.items():
            gen = f"{r['gen']:.2f} s" if r["gen"] is not None else "not in 60 s"
            print(f"| {names[key]} | {r['catalog'][0]} | {r['catalog'][1]:.2f} s | {r['size'][0]}, {r['size'][1]:.2f} s | "
                  f"{dns(r.get('udp'))} | {dns(r.get('dig'))} | {r['restart']:.2f} s | {gen} |")
    finally:
        kill_all()
        PROCS.clear()
        cleanup(root)


def main():
    # SIGTERM and SIGHUP unwind like Ctrl-C, so that every agent is killed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGHUP, lambda *_: sys.exit(129))
    ap = argparse.ArgumentParser(description="gossipd under churn and across restarts (issue #13)")
    ap.add_argument("scenarios", nargs="*", help="churn, restart (default: both, in this order)")
    ap.add_argument("--agents", type=int, default=20)
    ap.add_argument("--replacements", type=int, default=60)
    ap.add_argument("--seconds", type=float, default=300)
    ap.add_argument("--quiet-seconds", type=float, default=90)
    ap.add_argument("--instances", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=13, help="of the choice of victims and seeds")
    ap.add_argument("--keep", action="store_true", help="keep the data directories and agents' logs (printed)")
    ap.add_argument("--log-level", default="warn", help="the agents' --log-level")
    a = ap.parse_args()
    global KEEP, LOG_LEVEL
    KEEP, LOG_LEVEL = a.keep, a.log_level
    scenarios = a.scenarios or ["churn", "restart"]
    for s in scenarios:
        if s not in ("churn", "restart"):
            ap.error(f"unknown scenario {s!r} (churn, restart)")
    if not os.path.exists(bp.BIN):
        subprocess.check_call(["cargo", "build", "--release", "-p", "gossipd"], cwd=bp.ROOT)
    print(f"# {describe()}")
    print(f"# {os.cpu_count()} CPUs, load average {loadavg()}; {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}; "
          f"dig: {DIG or 'not installed (no dig queries; DNS is still asked over UDP by this script)'}; random seed {a.seed}")
    rng = random.Random(a.seed)
    try:
        if "churn" in scenarios:
            run_churn(a, rng)
        if "restart" in scenarios:
            run_restart(a)
    finally:
        kill_all()
        bp.close_authority()


if __name__ == "__main__":
    main()
