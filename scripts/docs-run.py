#!/usr/bin/env python3
"""Runs every shell block of the docs, so that they cannot drift from the binary.

    scripts/docs-run.py [--bin PATH] [--keep] FILE.md...

Every fenced block tagged `sh` or `bash` in each FILE is run, in order, in one bash per file
(variables and background agents carry from block to block, as in a terminal), with
`set -eo pipefail`: a command that fails fails the run, which prints the file, the block's
line and its output. Blocks with another tag (config files, output, TOML) are not run.

A block is preceded (within the three lines above its fence) by at most one directive:

    <!-- docs-run: skip REASON -->      not run; the reason is printed (every skip must say why)
    <!-- docs-run: background -->       run in the background (an agent in the foreground), then
                                        wait until its DNS port answers (127.0.0.1:8600)
    <!-- docs-run: stop -->             first stop what earlier blocks left running (a reader
                                        would press Ctrl-C), then run the block
    <!-- docs-run: expect TEXT -->      run; its output must contain TEXT
    <!-- docs-run: file NAME -->        (before a block of any other tag) write the block to NAME
                                        in the working directory, for the blocks after it

Isolation: each file runs in a network namespace of its own with only a loopback interface
(`unshare --net`; nothing a block sends can leave the machine) and a private /tmp
(`unshare --mount`, a tmpfs), from a scratch working directory. So it needs root (CI runs as
root); it exits 77 without. `gossipd` on PATH, and `target/release/gossipd` in the working
directory, are the binary under test (--bin, default target/debug/gossipd); `cargo build
--release -p gossipd` is then a no-op and `cargo run --release -p gossipd -- ARGS` runs it:
the docs' build steps are what `scripts/test` already did. Everything is killed at the end.
Bounded: 180 s per file.
"""

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

DIRECTIVE = re.compile(r"<!--\s*docs-run:\s*(skip|background|stop|expect|file)\b\s*(.*?)\s*-->")
FENCE = re.compile(r"^```(\S*)\s*$")


def blocks(path):
    """(line, lang, text, directive, argument) of each fenced block."""
    lines = open(path, encoding="utf-8").read().splitlines()
    out, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        lang, start = m.group(1), i
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        directive, arg = None, ""
        for k in range(max(0, start - 3), start):
            d = DIRECTIVE.search(lines[k])
            if d:
                directive, arg = d.group(1), d.group(2)
        out.append((start + 1, lang, "\n".join(lines[start + 1 : j]), directive, arg))
        i = j + 1
    return out


PRELUDE = r"""
set -eo pipefail
set -m  # each background job its own process group, so that stopping it stops its agents
mount -t tmpfs tmpfs /tmp
ip link set lo up
cd "$DOCS_WORK"
export PATH="$DOCS_WORK/bin:$PATH"
cargo() {
    case "$*" in
        "build --release -p gossipd") return 0 ;;
        "run --release -p gossipd -- "*) shift 5; gossipd "$@" ;;
        *) echo "docs-run: cargo $* is not run here" >&2; return 1 ;;
    esac
}
wait_dns() {
    for _ in $(seq 100); do
        dig @127.0.0.1 -p 8600 +time=1 +tries=1 gossipd.service.gossip >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "docs-run: nothing answers DNS on 127.0.0.1:8600" >&2
    return 1
}
stop_all() {
    local p
    for p in $(jobs -p); do kill -INT -- "-$p" 2>/dev/null || true; done
    sleep 1
    for p in $(jobs -p); do kill -9 -- "-$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap stop_all EXIT
"""


def script_for(path):
    """The bash script that runs `path`'s blocks, and what was skipped."""
    parts, skipped, expects = [PRELUDE], [], []
    for n, (line, lang, text, directive, arg) in enumerate(blocks(path)):
        where = f"{path}:{line}"
        if directive == "file":
            if not re.fullmatch(r"[A-Za-z0-9._-]+", arg):
                raise SystemExit(f"{where}: docs-run: file takes a plain file name, not {arg!r}")
            parts.append(f"cat > {arg} <<'DOCS_RUN_EOF_{n}'\n{text}\nDOCS_RUN_EOF_{n}")
            continue
        if lang not in ("sh", "bash"):
            continue
        if directive == "skip":
            if not arg:
                raise SystemExit(f"{where}: a skip must say why: <!-- docs-run: skip REASON -->")
            skipped.append((where, arg))
            continue
        out = f"$DOCS_WORK/out/{n}"
        parts.append(f"echo '::block {where}' >&2")
        if directive == "stop":
            parts.append("stop_all")
        if directive == "background":
            parts.append(f"{{\n{text}\n}} >{out} 2>&1 &\nwait_dns")
        else:
            parts.append(f"{{\n{text}\n}} >{out} 2>&1 </dev/null || {{ cat {out} >&2; exit 1; }}")
        if directive == "expect":
            expects.append(where)
            parts.append(
                f"grep -qF -- {shlex.quote(arg)} {out} || "
                f"{{ echo 'docs-run: {where}: output lacks '{shlex.quote(repr(arg))} >&2; cat {out} >&2; exit 1; }}"
            )
        parts.append(f"echo '::ok {where}' >&2")
    return "\n".join(parts) + "\n", skipped, expects


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="target/debug/gossipd")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    ap.add_argument("files", nargs="+")
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("docs-run: needs root (network and mount namespaces); skipped", file=sys.stderr)
        return 77
    binary = os.path.abspath(a.bin)
    if not os.access(binary, os.X_OK):
        raise SystemExit(f"docs-run: no binary at {binary} (build it first: scripts/test does)")
    failed = 0
    for path in a.files:
        script, skipped, expects = script_for(path)
        work = tempfile.mkdtemp(prefix="gossipd-docs-", dir="/var/tmp")  # not /tmp: a tmpfs covers it
        try:
            os.makedirs(os.path.join(work, "bin"))
            os.makedirs(os.path.join(work, "out"))
            os.makedirs(os.path.join(work, "target", "release"))
            # A copy (a hard link where it can), not a symlink: the binary may live under /tmp,
            # which the namespace covers with its own tmpfs.
            local = os.path.join(work, "bin", "gossipd")
            try:
                os.link(binary, local)
            except OSError:
                shutil.copy2(binary, local)
            os.symlink(local, os.path.join(work, "target", "release", "gossipd"))
            env = dict(os.environ, DOCS_WORK=work)
            env.pop("GOSSIPD_DATA_DIR", None)
            p = subprocess.Popen(
                ["unshare", "--net", "--mount", "--fork", "bash", "-c", script],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
            )
            try:
                _, err = p.communicate(timeout=180)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, 9)
                _, err = p.communicate()
                err += "\ndocs-run: timed out after 180 s\n"
            ran = [l.split(" ", 1)[1] for l in err.splitlines() if l.startswith("::ok ")]
            print(f"{path}: {len(ran)} blocks ran ({len(expects)} with an expected output), {len(skipped)} skipped")
            for where, why in skipped:
                print(f"  skipped {where}: {why}")
            if p.returncode != 0:
                failed += 1
                last = [l for l in err.splitlines() if l.startswith("::block ")]
                print(f"FAILED {path} (exit {p.returncode}) at {last[-1][8:] if last else '?'}:")
                print("\n".join(l for l in err.splitlines() if not l.startswith("::")))
        finally:
            if a.keep:
                print(f"  scratch directory kept: {work}")
            else:
                shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
