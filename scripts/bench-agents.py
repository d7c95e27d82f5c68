#!/usr/bin/env python3
"""N real agents on one machine (issue #16, item 5), gossipd beside Serf: each agent on its own
loopback address with the default ports, all spawned within a few seconds; time until every agent
holds every member and service, idle CPU, RSS and gossip bytes per agent, and a change's
propagation to all. Standard library only (reuses scripts/bench-peers.py); prints figures,
asserts nothing. Run through scripts/bench-agents.sh (builds the release binary, bounds the
run with `timeout`), or directly:

  bench-agents.py [--sizes 100,200,300] [--systems gossipd,serf] [--trials 3] [--idle-seconds 30]
                  [--settle-seconds 15] [--converge-timeout 300] [--seeds 3] [--spawn-over 0] [--poll-ms 500]
                  [--change-poll-ms 50] [--deadline 1500] [--no-ca] [--no-serf-encrypt]

Per N and system, alone on the machine (gossipd first, then Serf, never both at once):

- **Addresses.** Agent i listens on 127.0.(1 + i // 250).(1 + i % 250) with the default ports:
  gossipd `--bind ADDR:7946 --dns ADDR:8600 --http ADDR:8500` (the defaults of --bind, --dns
  and --http, on the agent's own address), Serf `-bind=ADDR:7946 -rpc-addr=ADDR:7373`. Every
  port is checked free on every address first. Data directories on tmpfs (/dev/shm).
- **Start.** Everything an agent needs is prepared first (gossipd: a cluster CA made for the
  run and a certificate per agent, as README.md's cluster; the cluster key; one service file
  in the agent's --config-dir). Then N children are forked, each held at a barrier (reading
  a pipe), and released at once to exec the agent: the spread printed is release to the
  last exec (/proc/PID/exe). --spawn-over S releases them evenly over S seconds instead. (Popen in a loop spread 100 gossipd agents over 9.5 s here: the
  first agents' start-up competed with the loop for the 2 CPUs.) Seeds: the first --seeds agents' gossip addresses (a seed does
  not list itself). gossipd retries seeds on its own; Serf gets `-retry-join` for each seed
  with `-retry-interval=1s` (plain `-join` exits when the seed is not up yet, which in a
  tight spawn loop it often is not).
- **Services.** gossipd: each agent registers one service, `web-I` (name `webI%10`, port
  8000+I%1000), through a file in its --config-dir, loaded at start: the cheapest way (no
  HTTP request per agent, no extra process, nothing to wait for before the clock runs). Serf
  has no services; its analogue is a tag, `svc=web-I`, given with `-tag` at start, which
  travels with the member's join message, so for Serf "every service" is "every member".
- **Convergence.** From the first spawn, every --poll-ms the poller asks every agent not yet
  complete, all at once over persistent loopback connections: gossipd `GET /v1/agent/metrics`
  (`Catalog.AliveMembers` == N and `Catalog.Instances` == N), Serf RPC `stats`
  (members - failed - left == N). An agent is complete at its first such answer; when all are,
  one full sweep of all N checks that none has regressed (a false suspicion would show here);
  if one has, polling goes on until a full sweep finds all N complete. Figure: first spawn to
  the last agent's completion (and to the confirming sweep). Printed with it: the agents' CPU
  (utime+stime) over that time against the whole machine's (/proc/stat), to tell a cluster
  that starves itself from one that other jobs starve. The poller is one Python process
  on the same 2 CPUs: its sweeps cost both systems the same.
- **Propagation.** --trials times: gossipd registers a new service `benchK` on agent (7K mod N)
  through its HTTP API; Serf sets a tag `bench=tK` on it through RPC `tags`. The poller then
  asks every agent that has not yet seen it, all at once, every --change-poll-ms
  (gossipd `GET /v1/catalog/service/benchK`, Serf RPC `members-filtered` on the tag: the code
  of scripts/bench-peers.py, same poller for both), and stamps each agent's first positive
  answer. After each gossipd trial, a sample of 10 agents is also asked over DNS (`dig
  benchK.service.gossip A` against ADDR:8600).
- **Idle.** --settle-seconds after the last trial, an --idle-seconds window with nothing
  polled: CPU per agent from /proc/PID/stat utime+stime (10 ms ticks) and from
  /proc/PID/task/*/schedstat (ns), as % of one core; VmRSS at the end of the window; gossip
  bytes counted by iptables (a private chain jumped to from OUTPUT, matching only the
  agents' /24s and port 7946: UDP from ADDR:7946, TCP from ADDR:7946 and to ADDR:7946, so
  Serf's TCP push-pull is counted both ways and the HTTP/RPC poller not at all; IP bytes);
  gossipd's own `Gossip.BytesOut` (UDP payload) as a cross-check. False suspicions: gossipd's
  `Gossip.SuspicionsRaised` and `Gossip.Deaths` summed over agents (whole run and idle
  window), Serf's memberlist log lines "Suspect ..." and "Marking ... as failed" (agents log at
  info for this) and the failed count of `stats`.
- **Load.** /proc/loadavg before each phase: the machine is shared and the load of other
  jobs changes what these figures mean.

Every agent is a child in this process's group, killed by SIGKILL when this script exits
(atexit, SIGTERM, SIGINT) and, through PR_SET_PDEATHSIG, if this script dies without
unwinding; `timeout` in the wrapper kills the group as a last resort. RLIMIT_NOFILE is raised to
its hard limit (the poller keeps one connection per agent).
"""
import argparse, atexit, ctypes, importlib.util, json, os, select, shutil, signal, socket, subprocess, sys, tempfile, time
import resource

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ left in scripts/ by the import below
_spec = importlib.util.spec_from_file_location("bench_peers", os.path.join(HERE, "bench-peers.py"))
bp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bp)

GOSSIP_PORT, DNS_PORT, HTTP_PORT, SERF_RPC_PORT = 7946, 8600, 8500, 7373
CHAIN = f"GAGENTS{os.getpid()}"
LIVE = []  # every agent process started, for the exit handler
T_START = time.time()
DEADLINE = [None]


def loadavg():
    return " ".join(open("/proc/loadavg").read().split()[:3])


def addr(i):
    return f"127.0.{1 + i // 250}.{1 + i % 250}"


def blocks(n):
    return sorted({f"127.0.{1 + i // 250}.0/24" for i in range(n)})


def stamp():
    return time.strftime("%H:%M:%S", time.gmtime())


def check_deadline(what):
    if DEADLINE[0] and time.time() > DEADLINE[0]:
        raise SystemExit(f"deadline reached before {what}")


_libc = ctypes.CDLL(None, use_errno=True)


def die_with_parent():
    _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def kill_all():
    for p in LIVE:
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGKILL)
            except OSError:
                pass
    for p in LIVE:
        try:
            p.wait(timeout=10)
        except Exception:
            pass
    LIVE.clear()


def ports_free(n, ports):
    """The first address whose port is taken (UDP or TCP), or None."""
    for i in range(n):
        for port, kinds in ports:
            for kind in kinds:
                s = socket.socket(socket.AF_INET, kind)
                try:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    s.bind((addr(i), port))
                except OSError as e:
                    return f"{addr(i)}:{port} ({e})"
                finally:
                    s.close()
    return None


class Proc:
    """A child forked by spawn_all (the subset of subprocess.Popen used here)."""

    def __init__(self, pid):
        self.pid, self.returncode = pid, None

    def poll(self):
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.returncode = -1
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout=None):
        end = None if timeout is None else time.time() + timeout
        while self.poll() is None:
            if end and time.time() > end:
                raise TimeoutError(self.pid)
            time.sleep(0.01)
        return self.returncode

    def send_signal(self, sig):
        if self.poll() is None:
            os.kill(self.pid, sig)


def spawn_all(cmds, over=0.0):
    """Forks one child per (argv, log path, stdout too), each held at a barrier (its own pipe's
    read end), then releases them: all at once (`over` = 0), or evenly over `over` seconds;
    each released child execs its argv. Forking from this small process costs ~1-10 ms a
    child on this machine; forking and exec'ing in turn (subprocess.Popen in a loop) spread
    100 gossipd agents over 9.5 s here, as the early agents' start-up competed with the loop
    for the 2 CPUs. Returns (procs, seconds forking, release time of the first, exec times
    after that: when /proc/PID/exe became the binary)."""
    procs, pipes = [], []
    tf = time.time()
    for argv, log, both in cmds:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                die_with_parent()
                for _, w2 in pipes:
                    os.close(w2)
                os.close(w)
                fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                null = os.open(os.devnull, os.O_RDWR)
                os.dup2(null, 0)
                os.dup2(fd if both else null, 1)
                os.dup2(fd, 2)
                os.read(r, 1)  # the barrier: returns at EOF, when the parent closes w
                os.closerange(3, 65536)
                os.execv(argv[0], argv)
            except BaseException:
                pass
            os._exit(127)
        os.close(r)
        pipes.append((pid, w))
        procs.append(Proc(pid))
        LIVE.append(procs[-1])
    fork_s = time.time() - tf
    release = time.time()
    for k, (_, w) in enumerate(pipes):
        if over:
            wait = release + over * k / max(1, len(pipes) - 1) - time.time()
            if wait > 0:
                time.sleep(wait)
        os.close(w)
    target = os.path.realpath(cmds[0][0][0])
    execd = {}
    pending = {p.pid for p in procs}
    while pending and time.time() - release < 30 + over:
        for pid in list(pending):
            try:
                if os.readlink(f"/proc/{pid}/exe") == target:
                    execd[pid] = time.time() - release
                    pending.discard(pid)
            except OSError:
                pending.discard(pid)
        time.sleep(0.002)
    return procs, fork_s, release, [execd.get(p.pid) for p in procs]


# ---------------------------------------------------------------------------------------------
# The poller: one request in flight on every agent at once, answers parsed as they come.


def sweep(conns, idxs, send, result, timeout=15):
    """Sends one request to each agent in idxs (conns[i], made by the caller's connect when
    None), waits for every answer; returns {i: result or None (no answer, connection lost)}."""
    out = {}
    by_sock = {}
    for i in idxs:
        c = conns.get(i)
        try:
            if c is None:
                c = conns[i] = CONNECT[0](i)
            send(c)
            by_sock[c.sock] = i
        except (OSError, ConnectionError, RuntimeError):
            conns[i] = None
            out[i] = None
    t0 = time.time()
    while by_sock and time.time() - t0 < timeout:
        ready, _, _ = select.select(list(by_sock), [], [], max(0.01, timeout - (time.time() - t0)))
        for s in ready:
            i = by_sock[s]
            try:
                r = conns[i].feed()
            except (OSError, ConnectionError, RuntimeError):
                conns[i] = None
                out[i] = None
                del by_sock[s]
                continue
            if r is not None:
                out[i] = result(r)
                del by_sock[s]
    for s, i in by_sock.items():  # no answer in time: drop the connection
        try:
            s.close()
        except OSError:
            pass
        conns[i] = None
        out[i] = None
    return out


CONNECT = [None]


# ---------------------------------------------------------------------------------------------
# Systems


class Gossipd:
    name = "gossipd"

    def __init__(self, n, root, a):
        self.n, self.root, self.a = n, root, a
        self.procs = []
        self.conns = {}

    def prepare(self):
        key = bp.cluster_key_file(self.root)
        self.argv = []
        for i in range(self.n):
            d = os.path.join(self.root, f"g{i}")
            cd = os.path.join(d, "services.d")
            os.makedirs(cd, exist_ok=True)
            with open(os.path.join(cd, "web.json"), "w") as f:
                json.dump({"service": {"ID": f"web-{i}", "Name": f"web{i % 10}", "Port": 8000 + i % 1000,
                                       "Tags": ["v1"]}}, f)
            ip = addr(i)
            args = [bp.BIN, "agent", "--node", f"g{i}", "--bind", f"{ip}:{GOSSIP_PORT}",
                    "--dns", f"{ip}:{DNS_PORT}", "--http", f"{ip}:{HTTP_PORT}", "--data-dir", os.path.join(d, "data"),
                    "--config-dir", cd, "--cluster-key-file", key, "--log-level", "warn"]
            if self.a.ca:
                args += bp.authority().flags(f"g{i}")
            seeds = [f"{addr(j)}:{GOSSIP_PORT}" for j in range(min(self.a.seeds, self.n)) if j != i]
            for s in seeds:
                args += ["--seed", s]
            self.argv.append((args, os.path.join(d, "log"), False))

    def connect(self, i):
        c = object.__new__(bp.HttpConn)
        c.addr = f"{addr(i)}:{HTTP_PORT}"
        c.sock = socket.create_connection((addr(i), HTTP_PORT), timeout=2)
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c.sock.settimeout(10)
        c.buf, c.used = bytearray(), time.time()
        return c

    def metrics_sweep(self, idxs):
        CONNECT[0] = self.connect
        return sweep(self.conns, idxs, lambda c: c.send("GET", "/v1/agent/metrics"),
                     lambda r: json.loads(r[1]) if r[0] == 200 else None)

    def complete(self, m):
        return m is not None and m["Catalog"]["AliveMembers"] == self.n and m["Catalog"]["Instances"] == self.n

    def describe_state(self, m):
        if m is None:
            return "no answer"
        c = m["Catalog"]
        return f"{c['AliveMembers']} alive, {c['SuspectMembers']} suspect, {c['FailedMembers']} failed, {c['Instances']} instances"

    def suspicion_counters(self):
        ms = self.metrics_sweep(range(self.n))
        got = [m for m in ms.values() if m]
        return {"suspicions": sum(m["Gossip"]["SuspicionsRaised"] for m in got),
                "deaths": sum(m["Gossip"]["Deaths"] for m in got),
                "bytes_out": sum(m["Gossip"]["BytesOut"] for m in got),
                # Agents not run for over 100 ms past a deadline (0 on builds before the counter).
                "pauses": sum(m["Gossip"].get("Pauses", 0) for m in got),
                "pause_max_ms": max((m["Gossip"].get("PauseMaxMs", 0) for m in got), default=0),
                "answered": len(got)}

    # The propagation interface of bench-peers.py's propagate().
    def change_conn(self, i):
        return bp.HttpConn(f"{addr(i)}:{HTTP_PORT}")

    def change(self, c, trial):
        body = json.dumps({"ID": f"bench{trial}", "Name": f"bench{trial}", "Port": 80}).encode()
        c.send("PUT", "/v1/agent/service/register", body)

    def finish_change(self, c):
        while True:
            r = c.feed()
            if r:
                c.sock.close()
                return (time.time(), r[0])

    def conn(self, i):
        if self.conns.get(i) is None:
            self.conns[i] = self.connect(i)
        return self.conns[i]

    def poll_send(self, i, trial):
        self.conn(i).send("GET", f"/v1/catalog/service/bench{trial}")

    def poll_result(self, i):
        r = self.conns[i].feed()
        if r is None:
            return None
        return r[1].strip() not in (b"[]", b"")

    def dns_sample(self, trial, k=10):
        """Agents (of a sample of k) whose DNS answers benchK.service.gossip with an address."""
        ok = 0
        idxs = sorted({(j * self.n) // k for j in range(k)})
        for i in idxs:
            r = subprocess.run(["dig", "+short", "+time=2", "+tries=1", "-p", str(DNS_PORT), f"@{addr(i)}",
                                f"bench{trial}.service.gossip", "A"], capture_output=True, text=True)
            ok += bool(r.stdout.strip()) and r.returncode == 0
        return ok, len(idxs)

    def close(self):
        for c in self.conns.values():
            if c is not None:
                try:
                    c.sock.close()
                except OSError:
                    pass
        self.conns.clear()


class Serf:
    name = "serf"

    def __init__(self, n, root, a):
        self.n, self.root, self.a = n, root, a
        self.procs = []
        self.conns = {}

    def prepare(self):
        self.argv = []
        key = bp.cluster_key(self.root) if self.a.serf_encrypt else None
        for i in range(self.n):
            d = os.path.join(self.root, f"s{i}")
            os.makedirs(d, exist_ok=True)
            ip = addr(i)
            args = [bp.SERF, "agent", f"-node=s{i}", f"-bind={ip}:{GOSSIP_PORT}",
                    f"-rpc-addr={ip}:{SERF_RPC_PORT}", "-log-level=info", f"-tag=svc=web-{i}",
                    "-retry-interval=1s"]
            if key:
                args.append(f"-encrypt={key}")
            for j in range(min(self.a.seeds, self.n)):
                if j != i:
                    args.append(f"-retry-join={addr(j)}:{GOSSIP_PORT}")
            self.argv.append((args, os.path.join(d, "log"), True))

    def connect(self, i):
        # bench-peers' SerfConn waits up to 10 s for the RPC handshake's answer; the poller
        # connects to agents one after the other, so an overloaded cluster would stall it for
        # 10 s per agent. 2 s here; a connection that fails is retried at the next sweep.
        old = socket.getdefaulttimeout()
        try:
            c = object.__new__(bp.SerfConn)
            c.sock = socket.create_connection((addr(i), SERF_RPC_PORT), timeout=2)
            c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            c.buf, c.seq, c.want_body = bytearray(), 0, False
            c.call("handshake", {"Version": 1}, body_expected=False)
            c.sock.settimeout(10)
            return c
        finally:
            socket.setdefaulttimeout(old)

    def metrics_sweep(self, idxs):
        CONNECT[0] = self.connect
        return sweep(self.conns, idxs, lambda c: c.send("stats", None), lambda r: r)

    def alive(self, m):
        s = m["serf"]
        return int(s["members"]) - int(s["failed"]) - int(s["left"])

    def complete(self, m):
        return m is not None and self.alive(m) == self.n

    def describe_state(self, m):
        if m is None:
            return "no answer"
        s = m["serf"]
        return f"{s['members']} members, {s['failed']} failed, {s['left']} left, health score {s.get('health_score', '?')}"

    def suspicion_counters(self):
        sus = fail = 0
        for i in range(self.n):
            try:
                with open(self.argv[i][1], errors="replace") as f:
                    for line in f:
                        if "memberlist: Suspect" in line:
                            sus += 1
                        elif "as failed" in line and "Marking" in line:
                            fail += 1
            except OSError:
                pass
        ms = self.metrics_sweep(range(self.n))
        got = [m for m in ms.values() if m]
        return {"suspicions": sus, "deaths": fail, "answered": len(got),
                "failed_now": sum(int(m["serf"]["failed"]) for m in got)}

    def change_conn(self, i):
        self.origin = f"s{i}"
        return bp.SerfConn(f"{addr(i)}:{SERF_RPC_PORT}")

    def change(self, c, trial):
        c.send("tags", {"Tags": {"bench": f"t{trial}"}, "DeleteTags": []}, body_expected=False)

    def finish_change(self, c):
        c.sock.settimeout(30)
        while True:
            c.buf += c.sock.recv(65536)
            try:
                header, _ = bp.mp_unpack(c.buf)
            except bp.Incomplete:
                continue
            c.sock.close()
            return (time.time(), header.get("Error") or "ok")

    def conn(self, i):
        if self.conns.get(i) is None:
            self.conns[i] = self.connect(i)
        return self.conns[i]

    def poll_send(self, i, trial):
        self.conn(i).send("members-filtered", {"Tags": {"bench": f"t{trial}"}, "Status": "", "Name": self.origin})

    def poll_result(self, i):
        r = self.conns[i].feed()
        if r is None:
            return None
        return len(r.get("Members") or []) > 0

    def close(self):
        for c in self.conns.values():
            if c is not None:
                try:
                    c.sock.close()
                except OSError:
                    pass
        self.conns.clear()


# ---------------------------------------------------------------------------------------------
# iptables: aggregate gossip bytes of the agents' /24s on port 7946


class Bytes:
    def __init__(self, n):
        self.ok = shutil.which("iptables") is not None or os.path.exists("/usr/sbin/iptables")
        self.rules = []
        if not self.ok:
            return
        try:
            bp.ipt("-N", CHAIN)
            bp.ipt("-I", "OUTPUT", "1", "-j", CHAIN)
        except (subprocess.CalledProcessError, FileNotFoundError):
            self.ok = False
            return
        for b in blocks(n):
            bp.ipt("-A", CHAIN, "-o", "lo", "-s", b, "-p", "udp", "--sport", str(GOSSIP_PORT), "-j", "RETURN")
            bp.ipt("-A", CHAIN, "-o", "lo", "-s", b, "-p", "tcp", "--sport", str(GOSSIP_PORT), "-j", "RETURN")
            bp.ipt("-A", CHAIN, "-o", "lo", "-d", b, "-p", "tcp", "--dport", str(GOSSIP_PORT), "-j", "RETURN")

    def read(self):
        """(udp packets, udp bytes, tcp packets, tcp bytes), summed."""
        up = ub = tp = tb = 0
        for line in bp.ipt("-L", CHAIN, "-v", "-x", "-n").stdout.splitlines():
            f = line.split()
            if len(f) >= 4 and f[2] == "RETURN":
                if f[3] in ("udp", "17"):
                    up += int(f[0]); ub += int(f[1])
                elif f[3] in ("tcp", "6"):
                    tp += int(f[0]); tb += int(f[1])
        return up, ub, tp, tb

    def close(self):
        if self.ok:
            bp.ipt("-D", "OUTPUT", "-j", CHAIN, check=False)
            bp.ipt("-F", CHAIN, check=False)
            bp.ipt("-X", CHAIN, check=False)
            self.ok = False


# ---------------------------------------------------------------------------------------------


def machine_ticks():
    """(busy, total) jiffies of all CPUs from /proc/stat."""
    with open("/proc/stat") as f:
        x = [int(v) for v in f.readline().split()[1:]]
    return sum(x) - x[3] - x[4], sum(x)


def agents_ticks(procs):
    t = 0
    for p in procs:
        try:
            t += bp.cpu_ticks(p.pid)
        except (OSError, IndexError):
            pass
    return t


def cpu_share(c, since):
    """What the agents used since `since` (agents' ticks, machine (busy, total) ticks, time):
    a string with the agents' CPU in % of one core and the machine's busy share."""
    ag0, (b0, t0), w0 = since
    ag1, (b1, t1), w1 = agents_ticks(c.procs), machine_ticks(), time.time()
    w = max(1e-6, w1 - w0)
    ncpu = os.cpu_count()
    return (f"the {c.n} agents used {(ag1 - ag0) / bp.CLK_TCK / w * 100:.0f} % of a core on average over those "
            f"{w:.0f} s (utime+stime), the whole machine was busy {(b1 - b0) / max(1, t1 - t0) * ncpu * 100:.0f} % "
            f"of {ncpu * 100} %")


def converge(c, a, t0):
    """Polls until every agent is complete; returns (seconds to the last completion, seconds to
    the confirming full sweep, sweeps, regressions) from t0, or raises on timeout."""
    n = c.n
    since = (0, machine_ticks(), t0)  # the agents were exec'd at t0: their ticks start at 0
    pending = set(range(n))
    done_at = {}
    sweeps = 0
    regressions = 0
    last_report = time.time()
    while True:
        s0 = time.time()
        if s0 - t0 > a.converge_timeout:
            ms = c.metrics_sweep(range(n))
            states = {}
            for i, m in ms.items():
                k = c.describe_state(m) if not c.complete(m) else "complete"
                states[k] = states.get(k, 0) + 1
            raise TimeoutError(f"{c.name}: not converged after {a.converge_timeout} s: "
                               f"{len(pending)} agents incomplete; states now: "
                               + "; ".join(f"{v} x {k}" for k, v in sorted(states.items(), key=lambda x: -x[1])[:8])
                               + f". Meanwhile {cpu_share(c, since)}")
        if pending:
            ms = c.metrics_sweep(sorted(pending))
            sweeps += 1
            now = time.time()
            for i, m in ms.items():
                if c.complete(m):
                    done_at[i] = now - t0
                    pending.discard(i)
            if time.time() - last_report > 15:
                last_report = time.time()
                sample = [c.describe_state(ms[i]) for i in sorted(pending)[:3] if i in ms]
                print(f"  [{stamp()}] {c.name}: {n - len(pending)}/{n} complete after {now - t0:.0f} s "
                      f"(e.g. {'; '.join(sample)}); load average {loadavg()}", flush=True)
        if not pending:
            ms = c.metrics_sweep(range(n))
            sweeps += 1
            bad = [i for i, m in ms.items() if not c.complete(m)]
            if not bad:
                print(f"  until convergence {cpu_share(c, since)}", flush=True)
                return max(done_at.values()), time.time() - t0, sweeps, regressions
            regressions += len(bad)
            print(f"  [{stamp()}] {c.name}: confirming sweep found {len(bad)} agents incomplete again "
                  f"(e.g. {c.describe_state(ms[bad[0]])}); polling on", flush=True)
            pending.update(bad)
        rest = a.poll_ms / 1000 - (time.time() - s0)
        if rest > 0:
            time.sleep(rest)


def run_one(system, n, a, counters):
    res = {"system": system, "n": n}
    root = tempfile.mkdtemp(prefix=f"gossipd-agents-{system}-", dir=bp.SHM)
    c = (Gossipd if system == "gossipd" else Serf)(n, root, a)
    try:
        taken = ports_free(n, [(GOSSIP_PORT, (socket.SOCK_DGRAM, socket.SOCK_STREAM)),
                               *([(DNS_PORT, (socket.SOCK_DGRAM, socket.SOCK_STREAM)), (HTTP_PORT, (socket.SOCK_STREAM,))]
                                 if system == "gossipd" else [(SERF_RPC_PORT, (socket.SOCK_STREAM,))])])
        if taken:
            raise SystemExit(f"{system}: port in use: {taken}")
        tp = time.time()
        c.prepare()
        res["load_start"] = loadavg()
        print(f"\n## {system}, N = {n} ({stamp()} UTC; prepared in {time.time() - tp:.1f} s; "
              f"load average {res['load_start']})", flush=True)
        check_deadline(f"{system} N = {n}")
        c.procs, fork_s, t0, execd = spawn_all(c.argv, a.spawn_over)
        ok = [x for x in execd if x is not None]
        res["spread"] = max(ok) if ok else None
        how = f"over {a.spawn_over:g} s" if a.spawn_over else "at once"
        print(f"forked {n} children (held at a barrier) in {fork_s:.2f} s, released them {how}: "
              f"{len(ok)} exec'd the agent within {res['spread']:.2f} s of the release "
              f"(median {sorted(ok)[len(ok) // 2]:.2f} s); the clock starts at the release", flush=True)
        try:
            last, confirmed, sweeps, regress = converge(c, a, t0)
        except TimeoutError as e:
            print(str(e), flush=True)
            dead = [i for i, p in enumerate(c.procs) if p.poll() is not None]
            if dead:
                print(f"{len(dead)} agents exited (e.g. {c.argv[dead[0]][1]})")
            res["converge"] = None
            res["failure"] = str(e)
            return res
        res["converge"], res["confirmed"] = last, confirmed
        res["load_conv"] = loadavg()
        dead = [i for i, p in enumerate(c.procs) if p.poll() is not None]
        print(f"every agent held all {n} members{' and services' if system == 'gossipd' else ' (with their tags)'} "
              f"{last:.1f} s after the first spawn (confirmed by a full sweep at {confirmed:.1f} s; {sweeps} sweeps, "
              f"{regress} regressions; load average {res['load_conv']}; {len(dead)} agents exited)", flush=True)
        sc0 = c.suspicion_counters()
        print(f"false suspicions until now: {sc0['suspicions']} suspicions, {sc0['deaths']} deaths "
              f"({'SuspicionsRaised, Deaths summed' if system == 'gossipd' else 'memberlist log lines Suspect / Marking failed'})"
              + (f"; pauses (an agent not run for over 100 ms past a deadline) {sc0['pauses']}, longest {sc0['pause_max_ms']} ms"
                 if 'pauses' in sc0 else ""),
              flush=True)
        time.sleep(3)

        # Propagation
        check_deadline(f"{system} N = {n} propagation")
        worst = []
        for trial in range(a.trials):
            origin = (trial * 7) % n
            try:
                seen, polls, sweeps_ms, (ack_ms, status) = bp.propagate(c, trial, origin, a.change_poll_ms)
            except (SystemExit, OSError, ConnectionError, RuntimeError) as e:
                # bench-peers' poller gives up when an agent leaves a poll unanswered for 5 s.
                print(f"trial {trial}: poller failed ({e}); connections reopened", flush=True)
                c.close()
                continue
            miss = sum(x is None for x in seen)
            lat = sorted(x for x in seen if x is not None)
            extra = ""
            if system == "gossipd":
                ok, k = c.dns_sample(trial)
                extra = f"; DNS answered it on {ok}/{k} sampled agents afterwards"
            if miss:
                print(f"trial {trial}: {miss} agents never saw the change within 30 s{extra}", flush=True)
                continue
            worst.append(lat[-1])
            print(f"trial {trial}: change on agent {origin} seen by all {n} in {lat[-1]:.0f} ms (origin "
                  f"{seen[origin]:.0f} ms, median agent {lat[n // 2]:.0f} ms, 90th percentile {lat[(9 * n) // 10 - 1]:.0f} ms; "
                  f"{polls} polls in {len(sweeps_ms)} sweeps, mean sweep {sum(sweeps_ms) / len(sweeps_ms):.0f} ms; "
                  f"answered {status} in {ack_ms:.0f} ms{extra})", flush=True)
            time.sleep(1)
        res["prop"] = sorted(worst)
        res["load_prop"] = loadavg()

        # Idle window: nothing polled.
        c.close()
        time.sleep(a.settle_seconds)
        sc1 = c.suspicion_counters()
        c.close()
        time.sleep(1)
        check_deadline(f"{system} N = {n} idle window")
        alive = [p for p in c.procs if p.poll() is None]
        b0 = counters.read() if counters.ok else None
        tk0 = {p.pid: bp.cpu_ticks(p.pid) for p in alive}
        ns0 = {p.pid: bp.Cpu(p.pid) for p in alive}
        la0 = loadavg()
        w0 = time.time()
        time.sleep(a.idle_seconds)
        w = time.time() - w0
        b1 = counters.read() if counters.ok else None
        alive = [p for p in alive if p.poll() is None]
        tk = sorted((bp.cpu_ticks(p.pid) - tk0[p.pid]) / bp.CLK_TCK / w * 100 for p in alive)
        ns = sorted(ns0[p.pid].delta() / 1e9 / w * 100 for p in alive)
        rss = sorted(bp.rss_kib(p.pid) / 1024 for p in alive)
        la1 = loadavg()
        sc2 = c.suspicion_counters()
        c.close()
        m = len(alive)
        res.update(cpu_ticks=sum(tk) / m, cpu_ns=sum(ns) / m, cpu_ns_max=ns[-1], cpu_ns_med=ns[m // 2],
                   rss=sum(rss) / m, rss_max=rss[-1], idle_load=f"{la0} -> {la1}", window=w,
                   sus_run=sc2["suspicions"], deaths_run=sc2["deaths"],
                   sus_idle=sc2["suspicions"] - sc1["suspicions"], deaths_idle=sc2["deaths"] - sc1["deaths"])
        print(f"idle {w:.0f} s (load average {la0} -> {la1}): CPU per agent mean {res['cpu_ticks']:.3f} % of a core "
              f"(utime+stime), {res['cpu_ns']:.3f} % (schedstat; median {res['cpu_ns_med']:.3f}, max {res['cpu_ns_max']:.3f}); "
              f"all {m} agents together {res['cpu_ns'] * m:.1f} % of a core; RSS mean {res['rss']:.1f} MiB (max {res['rss_max']:.1f})",
              flush=True)
        if b0 and b1:
            up, ub, tp_, tb = (y - x for x, y in zip(b0, b1))
            res["bytes"] = (ub + tb) / m / w
            res["udp"], res["tcp"] = ub / m / w, tb / m / w
            print(f"idle gossip bytes per agent per second (iptables, IP bytes, port 7946): UDP {ub / m / w:.1f} B "
                  f"({up / m / w:.2f} datagrams), TCP {tb / m / w:.1f} B ({tp_ / m / w:.2f} packets); total "
                  f"{res['bytes']:.1f} B/s", flush=True)
        if system == "gossipd":
            res["bytes_out"] = (sc2["bytes_out"] - sc1["bytes_out"]) / m / w
            print(f"cross-check: gossipd's BytesOut {res['bytes_out']:.1f} B/s per agent (UDP payload; the "
                  f"window plus the two metrics sweeps around it)", flush=True)
            print(f"suspicions raised (summed over agents): {sc2['suspicions']} over the whole run, "
                  f"{res['sus_idle']} in the idle window; deaths {sc2['deaths']} / {res['deaths_idle']}", flush=True)
        else:
            print(f"memberlist log lines over the whole run: {sc2['suspicions']} 'Suspect', {sc2['deaths']} "
                  f"'Marking as failed' ({res['sus_idle']} / {res['deaths_idle']} in the idle window and settle before "
                  f"it); failed members now, summed over agents: {sc2.get('failed_now')}", flush=True)
        dead = [i for i, p in enumerate(c.procs) if p.poll() is not None]
        if dead:
            print(f"{len(dead)} agents exited during the run (e.g. log {c.argv[dead[0]][1]})")
        return res
    finally:
        c.close()
        for p in c.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
        for p in c.procs:
            p.wait()
            if p in LIVE:
                LIVE.remove(p)
        if a.keep_logs:
            print(f"logs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
        if system == "gossipd":
            bp.close_authority()


def fmt(x, f="{:.1f}"):
    return "-" if x is None else f.format(x)


def table(results, sizes):
    print("\n## summary (gossipd / Serf, each alone on the machine)")
    print("| N | figure | gossipd | Serf | ratio gossipd/Serf |")
    print("|---|---|---|---|---|")
    for n in sizes:
        g, s = results.get(("gossipd", n), {}), results.get(("serf", n), {})

        def row(label, key, f="{:.1f}", pick=None):
            gv = pick(g) if pick else g.get(key)
            sv = pick(s) if pick else s.get(key)
            ratio = f"{gv / sv:.2f}" if gv is not None and sv else "-"
            print(f"| {n} | {label} | {fmt(gv, f)} | {fmt(sv, f)} | {ratio} |")

        def med(r):
            p = r.get("prop")
            return p[len(p) // 2] if p else None

        row("spawn spread (s)", "spread", "{:.2f}")
        row("every agent holds every member (+service) (s from first spawn)", "converge")
        row("propagation of a change to all, median trial (ms)", None, "{:.0f}", med)
        row("propagation, worst trial (ms)", None, "{:.0f}", lambda r: max(r["prop"]) if r.get("prop") else None)
        row("idle CPU per agent, % of a core (utime+stime)", "cpu_ticks", "{:.3f}")
        row("idle CPU per agent, % of a core (schedstat)", "cpu_ns", "{:.3f}")
        row("RSS per agent, mean (MiB)", "rss")
        row("idle gossip bytes per agent per s (IP, UDP+TCP)", "bytes", "{:.0f}")
        row("suspicions over the run (sum over agents)", "sus_run", "{:.0f}")
        for name, r in (("gossipd", g), ("Serf", s)):
            if r.get("failure"):
                print(f"| {n} | {name} did not converge | {r['failure'][:400]} | | |")
        print(f"| {n} | load average at start / after convergence | {g.get('load_start', '-')} / {g.get('load_conv', '-')} | "
              f"{s.get('load_start', '-')} / {s.get('load_conv', '-')} | |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100,200,300")
    ap.add_argument("--systems", default="gossipd,serf")
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--idle-seconds", type=int, default=30)
    ap.add_argument("--settle-seconds", type=int, default=15)
    ap.add_argument("--converge-timeout", type=int, default=300)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--spawn-over", type=float, default=0.0,
                    help="release the agents evenly over this many seconds (0: all at once)")
    ap.add_argument("--poll-ms", type=int, default=500, help="convergence poll interval")
    ap.add_argument("--change-poll-ms", type=int, default=50, help="propagation poll interval")
    ap.add_argument("--deadline", type=int, default=1500, help="seconds; no new phase starts after it")
    ap.add_argument("--ca", action=argparse.BooleanOptionalAction, default=True,
                    help="gossipd with a cluster CA and a certificate per agent (the default)")
    ap.add_argument("--serf-encrypt", action=argparse.BooleanOptionalAction, default=True,
                    help="Serf with -encrypt (gossipd always encrypts)")
    ap.add_argument("--keep-logs", action="store_true")
    a = ap.parse_args()
    sizes = [int(x) for x in a.sizes.split(",")]
    systems = a.systems.split(",")
    DEADLINE[0] = T_START + a.deadline

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    atexit.register(kill_all)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    need = 4 * max(sizes) + 100
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    print(f"# {bp.describe()}")
    print(f"# {os.cpu_count()} CPUs, {os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 2**30:.0f} GiB; "
          f"load average {loadavg()}; RLIMIT_NOFILE {soft} (need about {need}); {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"# gossipd {'with a cluster CA, a certificate per agent' if a.ca else 'with the cluster key only'}; "
          f"Serf {'with -encrypt' if a.serf_encrypt else 'unencrypted'}; seeds: the first {a.seeds} agents; "
          f"convergence poll every {a.poll_ms} ms, change poll every {a.change_poll_ms} ms; idle window "
          f"{a.idle_seconds} s after {a.settle_seconds} s of settling")
    if soft < need:
        print(f"# warning: RLIMIT_NOFILE {soft} is below {need}")
    counters = Bytes(max(sizes))
    results = {}
    try:
        for n in sizes:
            for system in systems:
                try:
                    check_deadline(f"{system} N = {n}")
                except SystemExit as e:
                    print(f"\n## {system}, N = {n}: skipped ({e})")
                    continue
                results[(system, n)] = run_one(system, n, a, counters)
                time.sleep(3)
    finally:
        counters.close()
        kill_all()
        table(results, sizes)


if __name__ == "__main__":
    main()
