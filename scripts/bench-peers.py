#!/usr/bin/env python3
"""gossipd against Serf on loopback: change propagation, steady-state bytes, idle CPU and RSS.

The engine behind scripts/bench-gossip.sh and scripts/bench-footprint.sh (run those: they
install Serf and clean up iptables); standard library only. Prints figures; asserts nothing.

  bench-peers.py gossip    [--sizes 30,100] [--trials 10] [--idle-seconds 60] [--poll-ms 10]
                           [--no-ca | --compare-no-ca] [--no-serf-encrypted]
  bench-peers.py footprint [--n 30] [--cpu-seconds 30] [--instances 10000] [--holders 10] [--no-ca]

gossipd runs as README.md's cluster does: one cluster CA made for the run (`gossipd ca create`),
a certificate per agent name (`gossipd ca sign --services '*' --roles operator`), every agent
started with --ca-file, --cert-file and --identity-file, so every handshake proves a
certificate and every replica checks owners' certificates. `--no-ca` runs it with the cluster
key only (the mode before issue #10); `--compare-no-ca` runs both, one after the other.
HTTP requests send `Host: 127.0.0.1` (the API's DNS-rebinding check takes an IP literal) and
use no operator endpoint.

Clusters are started one system at a time (gossipd alone, then Serf alone) so that the two
never share the 2 CPUs during a measurement. Every agent binds 127.0.0.1 on ports below the
ephemeral range, chosen up front so that iptables can count each agent's bytes.

Propagation: one agent changes (gossipd: a new service registered through the HTTP API; Serf:
a new tag set through its RPC `tags` command); a single-threaded poller then asks every agent
that has not yet seen the change, all at once over persistent loopback TCP connections, every
--poll-ms (gossipd: GET /v1/catalog/service/NAME; Serf: RPC `members-filtered` on the tag), and
stamps each agent with the time its first positive answer arrived. Same poller, same cadence
and same connection style for both systems: the poll interval bounds the resolution of both.

Bytes: iptables byte counters in a private chain jumped to from OUTPUT: one rule per agent for
UDP with the agent's port as source, and TCP both ways on the agent's port (memberlist's
push-pull runs over TCP; gossipd uses no TCP for gossip). Loopback packets cross OUTPUT once,
so every byte is counted once. Counters include IP and UDP/TCP headers; UDP payload is
bytes - 28 x packets. gossipd's own BytesOut counter (UDP payload) is printed as a cross-check.
"""
import argparse, json, math, os, re, select, shutil, signal, socket, struct, subprocess, sys, tempfile, time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("GOSSIPD_BIN", os.path.join(ROOT, "target", "release", "gossipd"))
SERF = shutil.which("serf") or "/usr/bin/serf"
CHAIN = os.environ.get("BENCH_IPT_CHAIN", f"GBENCH{os.getpid()}")
CLK_TCK = os.sysconf("SC_CLK_TCK")
# Data directories live on tmpfs when there is one: a registration is persisted (fsynced)
# before it is applied, and on this shared machine other jobs' disk writes would otherwise
# stretch that fsync into the propagation figures.
SHM = "/dev/shm" if os.path.isdir("/dev/shm") else None

# ---------------------------------------------------------------------------------------------
# msgpack, the subset Serf's RPC uses (old "raw" strings included)


class Incomplete(Exception):
    pass


def mp_pack(o):
    if o is None:
        return b"\xc0"
    if o is True:
        return b"\xc3"
    if o is False:
        return b"\xc2"
    if isinstance(o, int):
        if 0 <= o < 128:
            return bytes([o])
        if 0 <= o < 2**32:
            return b"\xce" + struct.pack(">I", o)
        return b"\xcf" + struct.pack(">Q", o)
    if isinstance(o, str):
        b = o.encode()
        if len(b) < 32:
            return bytes([0xA0 | len(b)]) + b
        return b"\xda" + struct.pack(">H", len(b)) + b
    if isinstance(o, (list, tuple)):
        return bytes([0x90 | len(o)]) + b"".join(mp_pack(x) for x in o)
    if isinstance(o, dict):
        return bytes([0x80 | len(o)]) + b"".join(mp_pack(k) + mp_pack(v) for k, v in o.items())
    raise TypeError(type(o))


def mp_unpack(b, i=0):
    """Decodes one object at b[i:]; returns (object, next index) or raises Incomplete."""

    def need(n):
        if i + n > len(b):
            raise Incomplete()

    need(1)
    t = b[i]
    i += 1
    if t < 0x80:
        return t, i
    if t >= 0xE0:
        return t - 256, i
    if 0x80 <= t <= 0x8F or t in (0xDE, 0xDF):
        if t <= 0x8F:
            n = t & 0x0F
        else:
            w = 2 if t == 0xDE else 4
            need(w)
            n = int.from_bytes(b[i:i + w], "big")
            i += w
        d = {}
        for _ in range(n):
            k, i = mp_unpack(b, i)
            v, i = mp_unpack(b, i)
            d[k] = v
        return d, i
    if 0x90 <= t <= 0x9F or t in (0xDC, 0xDD):
        if t <= 0x9F:
            n = t & 0x0F
        else:
            w = 2 if t == 0xDC else 4
            need(w)
            n = int.from_bytes(b[i:i + w], "big")
            i += w
        out = []
        for _ in range(n):
            v, i = mp_unpack(b, i)
            out.append(v)
        return out, i
    if 0xA0 <= t <= 0xBF or t in (0xD9, 0xDA, 0xDB, 0xC4, 0xC5, 0xC6):
        if t <= 0xBF:
            n = t & 0x1F
        else:
            w = {0xD9: 1, 0xDA: 2, 0xDB: 4, 0xC4: 1, 0xC5: 2, 0xC6: 4}[t]
            need(w)
            n = int.from_bytes(b[i:i + w], "big")
            i += w
        need(n)
        raw = bytes(b[i:i + n])
        i += n
        try:
            return raw.decode(), i
        except UnicodeDecodeError:
            return raw, i
    if t == 0xC0:
        return None, i
    if t in (0xC2, 0xC3):
        return t == 0xC3, i
    fixed = {0xCC: (1, False), 0xCD: (2, False), 0xCE: (4, False), 0xCF: (8, False),
             0xD0: (1, True), 0xD1: (2, True), 0xD2: (4, True), 0xD3: (8, True)}
    if t in fixed:
        w, signed = fixed[t]
        need(w)
        return int.from_bytes(b[i:i + w], "big", signed=signed), i + w
    if t in (0xCA, 0xCB):
        w = 4 if t == 0xCA else 8
        need(w)
        return struct.unpack(">f" if w == 4 else ">d", b[i:i + w])[0], i + w
    raise ValueError(f"msgpack type 0x{t:02x}")


# ---------------------------------------------------------------------------------------------
# Persistent connections: one request/response at a time, parsed incrementally so that a
# single-threaded poller can keep a request in flight on every agent at once.


class HttpConn:
    """HTTP/1.1 keep-alive to a gossipd agent. The agent closes a connection idle for longer
    than --http-header-timeout (10 s by default), so one idle for IDLE_REOPEN seconds is
    reopened before the next request (never during a propagation trial: the poller's
    connections are used every second between trials), and `call` retries once on a
    connection the agent closed."""

    IDLE_REOPEN = 5.0

    def __init__(self, addr):
        self.addr = addr
        self.connect()

    def connect(self):
        host, port = self.addr.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.used = time.time()

    def reopen(self):
        try:
            self.sock.close()
        except OSError:
            pass
        self.connect()

    def send(self, method, path, body=b""):
        if time.time() - self.used > self.IDLE_REOPEN:
            self.reopen()
        self.used = time.time()
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
        if body:
            head += "Content-Type: application/json\r\n"
        self.sock.sendall(head.encode() + b"\r\n" + body)

    def parse(self):
        """(status, body) when a whole response is buffered, else None."""
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = self.buf[:end].decode("latin-1")
        m = re.search(r"(?im)^content-length:\s*(\d+)", head)
        n = int(m.group(1)) if m else 0
        if len(self.buf) < end + 4 + n:
            return None
        status = int(head.split(" ", 2)[1])
        body = bytes(self.buf[end + 4:end + 4 + n])
        del self.buf[:end + 4 + n]
        return status, body

    def feed(self):
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed")
        self.buf += data
        self.used = time.time()
        return self.parse()

    def call(self, method, path, body=b""):
        for attempt in (0, 1):
            try:
                self.send(method, path, body)
                while True:
                    r = self.feed()
                    if r:
                        self.used = time.time()
                        return r
            except (ConnectionError, BrokenPipeError) as e:
                if attempt:
                    raise
                self.reopen()


class SerfConn:
    """Serf's msgpack RPC (handshake, then header [+ body] per request and response)."""

    def __init__(self, addr):
        host, port = addr.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.seq = 0
        self.want_body = False
        self.call("handshake", {"Version": 1}, body_expected=False)

    def send(self, command, body, body_expected=True):
        self.seq += 1
        self.want_body = body_expected
        # Commands without arguments (stats, members) take no body at all.
        tail = b"" if body is None else mp_pack(body)
        self.sock.sendall(mp_pack({"Command": command, "Seq": self.seq}) + tail)

    def parse(self):
        try:
            header, i = mp_unpack(self.buf)
            body = None
            if self.want_body and not header.get("Error"):
                body, i = mp_unpack(self.buf, i)
        except Incomplete:
            return None
        del self.buf[:i]
        if header.get("Error"):
            raise RuntimeError(f"serf rpc: {header['Error']}")
        return body

    def feed(self):
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed")
        self.buf += data
        return self.parse()

    def call(self, command, body, body_expected=True):
        self.send(command, body, body_expected)
        while True:
            if body_expected:
                r = self.feed()
                if r is not None:
                    return r
            else:
                self.buf += self.sock.recv(65536)
                try:
                    header, i = mp_unpack(self.buf)
                except Incomplete:
                    continue
                del self.buf[:i]
                if header.get("Error"):
                    raise RuntimeError(f"serf rpc: {header['Error']}")
                return None


# ---------------------------------------------------------------------------------------------
# Ports, processes, /proc


def port_free(port):
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        s = socket.socket(socket.AF_INET, kind)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        finally:
            s.close()
    return True


def port_block(n, start):
    """n consecutive free ports (UDP and TCP) at or above start, below the ephemeral range."""
    base = start
    while base + n < 32000:
        if all(port_free(p) for p in range(base, base + n)):
            return list(range(base, base + n))
        base += n
    raise SystemExit("no free port block")


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def thread_ns(pid):
    """On-CPU time of each live thread, in ns, by thread id (/proc/PID/task/*/schedstat)."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for t in tids:
        try:
            with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                out[t] = int(f.read().split()[0])
        except OSError:
            pass
    return out


class Cpu:
    """A process's on-CPU time from schedstat: precise where utime and stime are sampled at the
    scheduler tick (10 ms), which matters for idle processes. Read per thread, so that a thread
    that exits in the window (tokio retires idle blocking threads after 10 s) does not take its
    whole past with it and make the difference negative: `delta()` sums each thread's own
    difference (threads born in the window count from zero; what a thread that exited ran in
    the window is lost, so it is a lower bound)."""

    def __init__(self, pid):
        self.pid = pid
        self.start = thread_ns(pid)

    def delta(self):
        now = thread_ns(self.pid)
        return sum(v - self.start.get(t, 0) for t, v in now.items() if v >= self.start.get(t, 0))


def cpu_ns(pid):
    """Total on-CPU time of the live threads, in ns (see `Cpu` for a window's difference)."""
    return sum(thread_ns(pid).values())


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def stop_all(procs):
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
    for p in procs:
        p.wait()


def cluster_key(root):
    """One fresh cluster key per cluster (`gossipd keygen`: base64 of 32 bytes, which Serf's
    -encrypt also takes)."""
    path = os.path.join(root, "cluster.key")
    if not os.path.exists(path):
        key = subprocess.run([BIN, "keygen"], check=True, capture_output=True, text=True).stdout.strip()
        with open(path, "w") as f:
            f.write(key + "\n")
        os.chmod(path, 0o600)
    return open(path).read().strip()


def cluster_key_file(root):
    cluster_key(root)
    return os.path.join(root, "cluster.key")


class Authority:
    """The cluster CA of one run (`gossipd ca create`) and a certificate per agent name (`gossipd
    ca sign --services '*' --roles operator`, signed on first use), so that gossipd runs as
    README.md's cluster does: every handshake proves a certificate and every replica checks
    owners' certificates (docs/SECURITY.md, "Authority"). Removed at exit."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="gossipd-bench-ca-", dir=SHM)
        self.ca = os.path.join(self.dir, "ca")
        self.certs = os.path.join(self.dir, "certs")
        subprocess.run([BIN, "ca", "create", "--out", self.ca], check=True, capture_output=True)
        self.signed = set()

    def flags(self, name):
        """The agent flags for node `name`: --ca-file, --cert-file, --identity-file."""
        if name not in self.signed:
            subprocess.run([BIN, "ca", "sign", "--ca", self.ca, "--name", name, "--services", "*",
                            "--roles", "operator", "--out", self.certs], check=True, capture_output=True)
            self.signed.add(name)
        return ["--ca-file", os.path.join(self.ca, "ca.crt"),
                "--cert-file", os.path.join(self.certs, f"{name}.crt"),
                "--identity-file", os.path.join(self.certs, f"{name}.key")]

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)


_AUTHORITY = None


def authority():
    """The run's CA, created at first use."""
    global _AUTHORITY
    if _AUTHORITY is None:
        _AUTHORITY = Authority()
    return _AUTHORITY


def close_authority():
    global _AUTHORITY
    if _AUTHORITY is not None:
        _AUTHORITY.close()
        _AUTHORITY = None


def gossipd_flags(system, name):
    """Flags for a gossipd agent of `system`: "gossipd" runs with the run's CA (certificates
    required), "gossipd-no-ca" with the cluster key only."""
    if system == "gossipd":
        return authority().flags(name)
    if system == "gossipd-no-ca":
        return []
    raise ValueError(system)


def gossipd_systems(systems, ca):
    """`systems` with "gossipd" read as the cluster-key-only mode when `ca` is false."""
    out = []
    for s in systems:
        s = "gossipd-no-ca" if s == "gossipd" and not ca else s
        if s not in out:
            out.append(s)
    return out


def describe():
    """Versions of both systems and the commit measured."""
    rev = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"], capture_output=True, text=True)
    g = subprocess.run([BIN, "--version"], capture_output=True, text=True).stdout.strip()
    try:
        lines = subprocess.run([SERF, "version"], capture_output=True, text=True).stdout.splitlines()
        s = lines[0] if lines else "(no version printed)"
    except OSError:
        s = f"not installed ({SERF}; apt-get install serf), so only gossipd can run"
    built = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(os.path.getmtime(BIN)))
    return f"{g} (binary built {built}; tree now at {rev.stdout.strip() or '?'}); serf {s}"


class Cluster:
    """N agents of one system on loopback; subclasses know how to start and query them."""

    system = "?"

    def __init__(self, n, root, ports):
        self.n, self.root, self.ports = n, root, ports
        self.procs = []

    def close(self):
        stop_all(self.procs)


class GossipdCluster(Cluster):
    system = "gossipd"

    def __init__(self, n, root, ports, system="gossipd"):
        super().__init__(n, root, ports)
        self.system = system

    def start(self, interval_ms=1000):
        self.addrs = []
        for i in range(self.n):
            d = os.path.join(self.root, f"g{i}")
            os.makedirs(d, exist_ok=True)
            args = [BIN, "agent", "--node", f"g{i}", "--bind", f"127.0.0.1:{self.ports[i]}",
                    "--dns", "127.0.0.1:0", "--http", "127.0.0.1:0", "--data-dir", d,
                    "--cluster-key-file", cluster_key_file(self.root),
                    "--gossip-interval-ms", str(interval_ms), "--log-level", "warn",
                    *gossipd_flags(self.system, f"g{i}")]
            if i:
                args += ["--seed", f"127.0.0.1:{self.ports[0]}"]
            self.procs.append(subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                               stderr=open(os.path.join(d, "log"), "w")))
            path = os.path.join(d, "addrs.json")
            for _ in range(200):
                try:
                    self.addrs.append(json.load(open(path)))
                    break
                except (OSError, ValueError):
                    time.sleep(0.05)
            else:
                raise SystemExit(f"gossipd agent g{i} did not start")
        self.http = [HttpConn(a["http"]) for a in self.addrs]

    def metrics(self, i):
        return json.loads(self.http[i].call("GET", "/v1/agent/metrics")[1])

    def converged(self):
        return [self.metrics(i)["Catalog"]["AliveMembers"] for i in range(self.n)]

    def change_conn(self, i):
        """A connection of its own to agent i, for one change."""
        return HttpConn(self.addrs[i]["http"])

    def change(self, c, trial):
        """Sends the change without waiting for the answer; `finish_change` reads it."""
        body = json.dumps({"ID": f"bench{trial}", "Name": f"bench{trial}", "Port": 80}).encode()
        c.send("PUT", "/v1/agent/service/register", body)

    def finish_change(self, c):
        while True:
            r = c.feed()
            if r:
                c.sock.close()
                return (time.time(), r[0])

    def poll_send(self, i, trial):
        self.http[i].send("GET", f"/v1/catalog/service/bench{trial}")

    def poll_result(self, i):
        r = self.http[i].feed()
        if r is None:
            return None
        return r[1].strip() not in (b"[]", b"")

    def conn(self, i):
        return self.http[i]

    def bytes_out_counter(self):
        return sum(self.metrics(i)["Gossip"]["BytesOut"] for i in range(self.n))


class SerfCluster(Cluster):
    system = "serf"

    def __init__(self, n, root, ports, rpc_ports, encrypt=False):
        super().__init__(n, root, ports)
        self.rpc_ports = rpc_ports
        self.encrypt = encrypt
        if encrypt:
            self.system = "serf-encrypted"

    def start(self):
        for i in range(self.n):
            d = os.path.join(self.root, f"s{i}")
            os.makedirs(d, exist_ok=True)
            args = [SERF, "agent", f"-node=s{i}", f"-bind=127.0.0.1:{self.ports[i]}",
                    f"-rpc-addr=127.0.0.1:{self.rpc_ports[i]}", "-log-level=warn"]
            if self.encrypt:
                args.append(f"-encrypt={cluster_key(self.root)}")
            if i:
                args.append(f"-join=127.0.0.1:{self.ports[0]}")
            self.procs.append(subprocess.Popen(args, stdout=open(os.path.join(d, "log"), "w"),
                                               stderr=subprocess.STDOUT))
            for _ in range(200):
                try:
                    socket.create_connection(("127.0.0.1", self.rpc_ports[i]), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.05)
            else:
                raise SystemExit(f"serf agent s{i} did not start")
        self.rpc = [SerfConn(f"127.0.0.1:{p}") for p in self.rpc_ports]

    def converged(self):
        out = []
        for c in self.rpc:
            s = c.call("stats", None)
            serf = s["serf"]
            out.append(int(serf["members"]) - int(serf["failed"]) - int(serf["left"]))
        return out

    def change_conn(self, i):
        self.origin = f"s{i}"
        return SerfConn(f"127.0.0.1:{self.rpc_ports[i]}")

    def change(self, c, trial):
        """As GossipdCluster.change. Serf answers `tags` only once memberlist has finished
        retransmitting the update, so the answer must not be waited for before polling."""
        c.send("tags", {"Tags": {"bench": f"t{trial}"}, "DeleteTags": []}, body_expected=False)

    def finish_change(self, c):
        c.sock.settimeout(30)
        while True:
            c.buf += c.sock.recv(65536)
            try:
                header, _ = mp_unpack(c.buf)
            except Incomplete:
                continue
            c.sock.close()
            return (time.time(), header.get("Error") or "ok")

    def poll_send(self, i, trial):
        self.rpc[i].send("members-filtered", {"Tags": {"bench": f"t{trial}"}, "Status": "", "Name": self.origin})

    def poll_result(self, i):
        r = self.rpc[i].feed()
        if r is None:
            return None
        return len(r.get("Members") or []) > 0

    def conn(self, i):
        return self.rpc[i]


def wait_converged(c, timeout=180):
    t0 = time.time()
    while True:
        counts = c.converged()
        if min(counts) == c.n:
            return time.time() - t0
        if time.time() - t0 > timeout:
            raise SystemExit(f"{c.system}: membership did not converge: {counts}")
        time.sleep(1)


def propagate(c, trial, origin, poll_ms, timeout=30):
    """Makes a change on `origin`; returns each agent's delay (ms) until it answered with it."""
    seen = [None] * c.n
    pending = set(range(c.n))
    changer = c.change_conn(origin)
    t0 = time.time()
    c.change(changer, trial)
    polls = 0
    sweeps = []
    while pending and time.time() - t0 < timeout:
        sweep = time.time()
        by_sock = {}
        for i in pending:
            c.poll_send(i, trial)
            by_sock[c.conn(i).sock] = i
            polls += 1
        waiting = set(by_sock)
        while waiting:
            ready, _, _ = select.select(list(waiting), [], [], 5)
            if not ready:
                raise SystemExit(f"{c.system}: poll timed out")
            now = time.time()
            for s in ready:
                i = by_sock[s]
                r = c.poll_result(i)
                if r is None:
                    continue
                waiting.discard(s)
                if r:
                    seen[i] = (now - t0) * 1000
                    pending.discard(i)
        sweeps.append((time.time() - sweep) * 1000)
        rest = poll_ms / 1000 - (time.time() - sweep)
        if rest > 0:
            time.sleep(rest)
    t_ack, status = c.finish_change(changer)
    return seen, polls, sweeps, ((t_ack - t0) * 1000, status)


# ---------------------------------------------------------------------------------------------
# iptables byte counters


def ipt(*args, check=True):
    return subprocess.run(["iptables", "-w", *args], check=check, capture_output=True, text=True)


class Counters:
    def __init__(self):
        ipt("-N", CHAIN)
        ipt("-I", "OUTPUT", "1", "-j", CHAIN)

    def watch(self, ports):
        for p in ports:
            ipt("-A", CHAIN, "-o", "lo", "-p", "udp", "--sport", str(p), "-j", "RETURN")
            ipt("-A", CHAIN, "-o", "lo", "-p", "tcp", "--sport", str(p), "-j", "RETURN")
            ipt("-A", CHAIN, "-o", "lo", "-p", "tcp", "--dport", str(p), "-j", "RETURN")

    def read(self):
        """{(proto, 'spt'|'dpt', port): (packets, bytes)}"""
        out = {}
        for line in ipt("-L", CHAIN, "-v", "-x", "-n").stdout.splitlines():
            m = re.match(r"\s*(\d+)\s+(\d+)\s+RETURN\s+(\S+).*\b(spt|dpt):(\d+)", line)
            if m:
                proto = {"17": "udp", "6": "tcp"}.get(m.group(3), m.group(3))
                out[(proto, m.group(4), int(m.group(5)))] = (int(m.group(1)), int(m.group(2)))
        return out

    def reset(self):
        ipt("-F", CHAIN)

    def close(self):
        ipt("-D", "OUTPUT", "-j", CHAIN, check=False)
        ipt("-F", CHAIN, check=False)
        ipt("-X", CHAIN, check=False)


def traffic(before, after, ports, seconds):
    """Per-agent-per-second figures over a window: UDP out (IP bytes, payload, datagrams) and
    memberlist-style TCP (both directions of connections to the agents' ports)."""
    n = len(ports)
    d = {k: (after[k][0] - before.get(k, (0, 0))[0], after[k][1] - before.get(k, (0, 0))[1]) for k in after}
    udp = [d.get(("udp", "spt", p), (0, 0)) for p in ports]
    tcp_pk = sum(d.get(("tcp", s, p), (0, 0))[0] for p in ports for s in ("spt", "dpt"))
    tcp_b = sum(d.get(("tcp", s, p), (0, 0))[1] for p in ports for s in ("spt", "dpt"))
    udp_b = [b for _, b in udp]
    udp_payload = sum(b - 28 * pk for pk, b in udp)
    return {
        "udp_ip": sum(udp_b) / n / seconds,
        "udp_ip_max": max(udp_b) / seconds,
        "udp_payload": udp_payload / n / seconds,
        "udp_dgrams": sum(pk for pk, _ in udp) / n / seconds,
        "tcp_ip": tcp_b / n / seconds,
        "tcp_pkts": tcp_pk / n / seconds,
    }


# ---------------------------------------------------------------------------------------------


def serf_push_pull_seconds(n):
    """memberlist's push-pull period for a cluster of n: 30 s (Serf's LAN default) scaled by
    ceil(log2(n) - log2(32)) + 1 above 32 nodes (memberlist's pushPullScale): 90 s at n = 100."""
    if n <= 32:
        return 30
    return 30 * (math.ceil(math.log2(n) - math.log2(32)) + 1)


def run_gossip(a):
    sizes = [int(x) for x in a.sizes.split(",")]
    systems = gossipd_systems(["gossipd"] + (["gossipd-no-ca"] if a.compare_no_ca else []), a.ca)
    systems += ["serf"] + (["serf-encrypted"] if a.serf_encrypted else [])
    counters = Counters()
    summary = {}
    print(f"# {describe()}")
    print(f"# systems, each alone, in this order: {', '.join(systems)} (gossipd: with a cluster CA, "
          f"certificates required; gossipd-no-ca: the cluster key only)")
    print(f"# {os.cpu_count()} CPUs, load average {open('/proc/loadavg').read().split()[:3]}; "
          f"each system's cluster runs alone; poll every {a.poll_ms} ms; idle window "
          f"max({a.idle_seconds} s, 2 Serf push-pull periods)")
    try:
        for n in sizes:
            # Serf's TCP push-pull runs once per period per agent, from a random phase: a window
            # shorter than two periods samples it badly. Both systems get the same window.
            window = max(a.idle_seconds, 2 * serf_push_pull_seconds(n))
            for system in systems:
                root = tempfile.mkdtemp(prefix=f"gossipd-bench-{system}-", dir=SHM)
                ports = port_block(n, 20000)
                if system.startswith("gossipd"):
                    c = GossipdCluster(n, root, ports, system)
                else:
                    c = SerfCluster(n, root, ports, port_block(n, ports[-1] + 1), system == "serf-encrypted")
                try:
                    t0 = time.time()
                    c.start()
                    conv = wait_converged(c)
                    print(f"\n## {system}, N = {n}: started in {time.time() - t0 - conv:.1f} s, "
                          f"membership converged {conv:.1f} s later")
                    time.sleep(2)
                    worst, medians, at_origin, spread = [], [], [], []
                    for trial in range(a.trials):
                        origin = (trial * 7) % n
                        seen, polls, sweeps, (ack_ms, status) = propagate(c, trial, origin, a.poll_ms)
                        if any(x is None for x in seen):
                            print(f"trial {trial}: {sum(x is None for x in seen)} agents never saw the change")
                            continue
                        lat = sorted(seen)
                        worst.append(lat[-1])
                        medians.append(lat[len(lat) // 2])
                        at_origin.append(seen[origin])
                        spread.append(lat[-1] - seen[origin])
                        print(f"trial {trial}: change on agent {origin} seen by all {n} in {lat[-1]:.0f} ms "
                              f"(by the origin itself at {seen[origin]:.0f} ms, so {lat[-1] - seen[origin]:.0f} ms of spread) "
                              f"(median agent {lat[len(lat) // 2]:.0f} ms, 90th percentile {lat[(9 * n) // 10 - 1]:.0f} ms, "
                              f"{sum(x > 3 * max(lat[len(lat) // 2], 10) for x in lat)} agents later than 3 x median; "
                              f"{polls} polls in {len(sweeps)} sweeps of {sum(sweeps) / len(sweeps):.0f} ms mean, "
                              f"{max(sweeps):.0f} ms max; change request answered "
                              f"({status}) within {ack_ms:.0f} ms)")
                        time.sleep(1)
                    mean_worst = sum(worst) / len(worst) if worst else float("nan")
                    srt = sorted(worst)
                    print(f"propagation to all {n}: mean {mean_worst:.0f} ms, median {srt[len(srt) // 2] if srt else float('nan'):.0f} ms, "
                          f"max {max(worst, default=float('nan')):.0f} ms over {len(worst)} trials "
                          f"(median agent: mean {sum(medians) / max(1, len(medians)):.0f} ms; visible at the origin: mean "
                          f"{sum(at_origin) / max(1, len(at_origin)):.0f} ms; spread from the origin to all: mean "
                          f"{sum(spread) / max(1, len(spread)):.0f} ms)")
                    # Let the changes' rumors and retransmissions finish, then count an idle window.
                    time.sleep(a.settle_seconds)
                    counters.reset()
                    counters.watch(ports)
                    b0 = counters.read()
                    g0 = c.bytes_out_counter() if system.startswith("gossipd") else 0
                    cpu0 = [Cpu(p.pid) for p in c.procs]
                    w0 = time.time()
                    time.sleep(window)
                    w = time.time() - w0
                    b1 = counters.read()
                    t = traffic(b0, b1, ports, w)
                    cpu_pct = sum(x.delta() for x in cpu0) / 1e9 / n / w * 100
                    rss = [rss_kib(p.pid) for p in c.procs]
                    print(f"idle {w:.0f} s, per agent per second: UDP out {t['udp_ip']:.1f} B on the wire "
                          f"({t['udp_payload']:.1f} B payload, {t['udp_dgrams']:.2f} datagrams; busiest agent "
                          f"{t['udp_ip_max']:.1f} B); TCP {t['tcp_ip']:.1f} B ({t['tcp_pkts']:.2f} packets); "
                          f"total {t['udp_ip'] + t['tcp_ip']:.1f} B/s")
                    if system.startswith("gossipd"):
                        g1 = c.bytes_out_counter()
                        print(f"cross-check: gossipd's BytesOut counter {(g1 - g0) / n / w:.1f} B/s per agent "
                              f"(UDP payload; iptables says {t['udp_payload']:.1f})")
                    print(f"idle CPU {cpu_pct:.3f} % of a core per agent (schedstat, while counters were read); RSS mean {sum(rss) / n / 1024:.1f} MiB, "
                          f"max {max(rss) / 1024:.1f} MiB")
                    summary[(system, n)] = {"prop": mean_worst, "prop_med": srt[len(srt) // 2] if srt else float("nan"),
                                            "spread": sum(spread) / max(1, len(spread)),
                                            "bytes": t["udp_ip"] + t["tcp_ip"],
                                            "udp": t["udp_ip"], "tcp": t["tcp_ip"]}
                finally:
                    c.close()
                    shutil.rmtree(root, ignore_errors=True)
                time.sleep(2)
    finally:
        counters.close()
        close_authority()

    mine = [x for x in systems if x.startswith("gossipd")]
    pairs = [(g, p) for g in mine for p in systems if not p.startswith("gossipd")]
    if len(mine) == 2:
        pairs.append(("gossipd", "gossipd-no-ca"))
    for mine_, peer in pairs:
        print(f"\n## ratios {mine_} / {peer}")
        for n in sizes:
            g, s = summary.get((mine_, n)), summary.get((peer, n))
            if g and s:
                print(f"N = {n}: propagation (mean of trials) {g['prop']:.0f} / {s['prop']:.0f} ms = {g['prop'] / s['prop']:.2f}, "
                      f"(median trial) {g['prop_med']:.0f} / {s['prop_med']:.0f} ms = {g['prop_med'] / s['prop_med']:.2f}, "
                      f"(spread from the origin, mean) {g['spread']:.0f} / {s['spread']:.0f} ms = {g['spread'] / s['spread']:.2f}; "
                      f"idle bytes/agent/s (UDP+TCP, IP bytes) {g['bytes']:.0f} / {s['bytes']:.0f} = "
                      f"{g['bytes'] / s['bytes']:.2f} (UDP {g['udp']:.0f} / {s['udp']:.0f}, TCP {g['tcp']:.0f} / {s['tcp']:.0f})")


def run_footprint(a):
    print(f"# {describe()}")
    print(f"# {os.cpu_count()} CPUs, load average {open('/proc/loadavg').read().split()[:3]}; "
          f"each cluster runs alone; CPU window {a.cpu_seconds} s")
    res = {}
    systems = gossipd_systems(["gossipd"], a.ca) + ["serf"] + (["serf-encrypted"] if a.serf_encrypted else [])
    for system in systems:
        root = tempfile.mkdtemp(prefix=f"gossipd-bench-{system}-")
        ports = port_block(a.n, 20000)
        c = GossipdCluster(a.n, root, ports, system) if system.startswith("gossipd") else SerfCluster(
            a.n, root, ports, port_block(a.n, ports[-1] + 1), system == "serf-encrypted")
        try:
            c.start()
            wait_converged(c)
            time.sleep(a.settle_seconds)
            cpu0 = [cpu_ticks(p.pid) for p in c.procs]
            ns0 = [Cpu(p.pid) for p in c.procs]
            w0 = time.time()
            time.sleep(a.cpu_seconds)
            w = time.time() - w0
            cpu1 = [cpu_ticks(p.pid) for p in c.procs]
            per = sorted(x.delta() / 1e6 / w for x in ns0)  # ms CPU per s, schedstat
            ticks = sum(y - x for x, y in zip(cpu0, cpu1)) / CLK_TCK / w * 1000 / a.n  # ms CPU per s
            rss = sorted(rss_kib(p.pid) / 1024 for p in c.procs)
            res[system] = (sum(per) / a.n, sum(rss) / a.n, ticks)
            print(f"{system:14s} N = {a.n} idle: CPU per agent mean {sum(per) / a.n:.3f} ms/s = "
                  f"{sum(per) / a.n / 10:.4f} % of a core (schedstat; median {per[a.n // 2]:.3f}, max {per[-1]:.3f}; "
                  f"utime+stime says {ticks:.3f} ms/s); RSS mean {sum(rss) / a.n:.1f} MiB "
                  f"(min {rss[0]:.1f}, max {rss[-1]:.1f})")
        finally:
            c.close()
            shutil.rmtree(root, ignore_errors=True)
        time.sleep(2)
    g = res[systems[0]]
    for peer in systems[1:]:
        s = res[peer]
        print(f"ratio gossipd/{peer} at N = {a.n}: idle CPU {g[0] / s[0]:.3f} (utime+stime: "
              f"{g[2] / s[2] if s[2] else float('nan'):.3f}), RSS {g[1] / s[1]:.2f}")

    # gossipd with a large catalog: `holders` agents own instances/holders instances each.
    shm = SHM
    root = tempfile.mkdtemp(prefix="gossipd-bench-big-", dir=shm)
    k, per_agent = a.holders, a.instances // a.holders
    c = GossipdCluster(k, root, port_block(k, 20000), systems[0])
    try:
        c.start()
        wait_converged(c)
        base = [rss_kib(p.pid) / 1024 for p in c.procs]
        t0 = time.time()
        batch = []
        for i in range(k):
            tb = time.time()
            for j in range(per_agent):
                body = json.dumps({"ID": f"svc-{i}-{j}", "Name": f"svc{j % 100}",
                                   "Address": f"10.{i}.{j // 256}.{j % 256}", "Port": 8000 + j % 1000,
                                   "Tags": ["v1"]}).encode()
                status, text = c.http[i].call("PUT", "/v1/agent/service/register", body)
                if status != 200:
                    raise SystemExit(f"register failed on agent {i}: {status} {text[:200]!r}")
            batch.append(time.time() - tb)
        t_reg = time.time() - t0
        print(f"gossipd: registering {per_agent} instances on each of {k} agents in turn took "
              f"{', '.join(f'{b:.0f}' for b in batch)} s (one HTTP request at a time)")
        total = k * per_agent
        while True:
            counts = [c.metrics(i)["Catalog"]["Instances"] for i in range(k)]
            if min(counts) >= total or time.time() - t0 - t_reg > a.converge_timeout:
                break
            time.sleep(0.5)
        t_conv = time.time() - t0
        time.sleep(3)
        rss = [rss_kib(p.pid) / 1024 for p in c.procs]
        print(f"gossipd, {k} agents holding {total} instances ({per_agent} registered on each, data dirs on "
              f"{shm or 'disk'}): registered in {t_reg:.1f} s ({total / t_reg:.0f}/s); every agent held "
              f"{min(counts)} (fewest) to {max(counts)} {t_conv - t_reg:.1f} s after the last registration; "
              f"RSS per agent mean {sum(rss) / k:.1f} MiB, max {max(rss):.1f} MiB "
              f"(empty catalog: {sum(base) / k:.1f} MiB)")
    finally:
        c.close()
        shutil.rmtree(root, ignore_errors=True)
        close_authority()


def main():
    # SIGTERM unwinds like Ctrl-C, so that agents are killed and iptables rules removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gossip")
    g.add_argument("--sizes", default="30,100")
    g.add_argument("--trials", type=int, default=10)
    g.add_argument("--idle-seconds", type=int, default=60)
    g.add_argument("--settle-seconds", type=int, default=10)
    g.add_argument("--poll-ms", type=int, default=10)
    g.add_argument("--serf-encrypted", action=argparse.BooleanOptionalAction, default=True,
                   help="also run Serf with -encrypt (AES-GCM), as gossipd always encrypts")
    g.add_argument("--ca", action=argparse.BooleanOptionalAction, default=True,
                   help="gossipd with a cluster CA made for this run, certificates required "
                        "(the default); --no-ca: the cluster key only")
    g.add_argument("--compare-no-ca", action="store_true",
                   help="also run gossipd with the cluster key only (gossipd-no-ca), after the CA mode")
    f = sub.add_parser("footprint")
    f.add_argument("--n", type=int, default=30)
    f.add_argument("--cpu-seconds", type=int, default=30)
    f.add_argument("--settle-seconds", type=int, default=10)
    f.add_argument("--instances", type=int, default=10000)
    f.add_argument("--holders", type=int, default=10)
    f.add_argument("--serf-encrypted", action=argparse.BooleanOptionalAction, default=True)
    f.add_argument("--ca", action=argparse.BooleanOptionalAction, default=True,
                   help="gossipd with a cluster CA (the default); --no-ca: the cluster key only")
    f.add_argument("--converge-timeout", type=int, default=300,
                   help="seconds to wait, after the last registration, for every agent to hold them all")
    a = ap.parse_args()
    if not os.path.exists(BIN):
        subprocess.check_call(["cargo", "build", "--release", "-p", "gossipd"], cwd=ROOT)
    if a.cmd == "gossip":
        run_gossip(a)
    else:
        run_footprint(a)


if __name__ == "__main__":
    main()
