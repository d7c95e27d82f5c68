#!/usr/bin/env python3
"""Plots the simulator's scale figures as hand-written SVG (python3 standard library only).

Usage: sim-plot.py SCALE_CSV OUT_DIR

Reads the CSV written by `gossip-sim scale --csv` and writes
  OUT_DIR/convergence.svg  anti-entropy rounds to spread one change vs N (log x), with the
                           push-pull bound log3(N) + ln ln N and 1.2x that bound;
  OUT_DIR/bytes.svg        idle bytes sent per node per round vs N (log x), with Serf's
                           ~340 B/s budget (one round = 1 s).
"""

import csv
import math
import os
import sys

W, H = 640, 400
LEFT, RIGHT, TOP, BOTTOM = 70, 30, 40, 60


def bound(n):
    return math.log(n) / math.log(3) + math.log(math.log(n))


class Plot:
    """A log-x, linear-y plot area."""

    def __init__(self, title, xlabel, ylabel, xmin, xmax, ymax):
        self.xmin, self.xmax = math.log10(xmin), math.log10(xmax)
        self.ymax = ymax
        self.parts = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
            f'font-family="sans-serif" font-size="12">',
            f'<rect width="{W}" height="{H}" fill="white"/>',
            f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="15">{title}</text>',
            f'<text x="{W / 2}" y="{H - 15}" text-anchor="middle">{xlabel}</text>',
            f'<text x="18" y="{H / 2}" text-anchor="middle" '
            f'transform="rotate(-90 18 {H / 2})">{ylabel}</text>',
        ]
        self.axes()

    def x(self, n):
        frac = (math.log10(n) - self.xmin) / (self.xmax - self.xmin)
        return LEFT + frac * (W - LEFT - RIGHT)

    def y(self, v):
        return H - BOTTOM - v / self.ymax * (H - TOP - BOTTOM)

    def axes(self):
        p = self.parts
        x0, x1, y0, y1 = LEFT, W - RIGHT, H - BOTTOM, TOP
        p.append(f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="black"/>')
        p.append(f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" stroke="black"/>')
        for e in range(math.ceil(self.xmin), math.floor(self.xmax) + 1):
            xx = self.x(10 ** e)
            p.append(f'<line x1="{xx:.1f}" y1="{y0}" x2="{xx:.1f}" y2="{y1}" stroke="#ddd"/>')
            p.append(f'<text x="{xx:.1f}" y="{y0 + 18}" text-anchor="middle">{10 ** e:,}</text>')
        step = nice_step(self.ymax)
        v = 0.0
        while v <= self.ymax + 1e-9:
            yy = self.y(v)
            p.append(f'<line x1="{x0}" y1="{yy:.1f}" x2="{x1}" y2="{yy:.1f}" stroke="#eee"/>')
            p.append(f'<text x="{x0 - 6}" y="{yy + 4:.1f}" text-anchor="end">{v:g}</text>')
            v += step

    def curve(self, f, color, dash="", label="", label_at=None):
        pts = []
        steps = 200
        for i in range(steps + 1):
            n = 10 ** (self.xmin + (self.xmax - self.xmin) * i / steps)
            pts.append(f"{self.x(n):.1f},{self.y(f(n)):.1f}")
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        self.parts.append(
            f'<polyline points="{" ".join(pts)}" fill="none" stroke="{color}" stroke-width="1.5"{dash_attr}/>'
        )
        if label:
            n = label_at or 10 ** (self.xmin + 0.05 * (self.xmax - self.xmin))
            self.parts.append(
                f'<text x="{self.x(n):.1f}" y="{self.y(f(n)) - 6:.1f}" fill="{color}">{label}</text>'
            )

    def series(self, pts, color, label, hollow=False):
        if not pts:
            return
        if not hollow:
            line = " ".join(f"{self.x(n):.1f},{self.y(v):.1f}" for n, v in pts)
            self.parts.append(f'<polyline points="{line}" fill="none" stroke="{color}" stroke-width="2"/>')
        for n, v in pts:
            fill = "white" if hollow else color
            self.parts.append(
                f'<circle cx="{self.x(n):.1f}" cy="{self.y(v):.1f}" r="4" fill="{fill}" stroke="{color}" '
                f'stroke-width="1.5"><title>N={n}: {v:.2f}</title></circle>'
            )

    def legend(self, entries):
        x, y = LEFT + 12, TOP + 8
        for i, (color, text, dash) in enumerate(entries):
            yy = y + 16 * i
            d = f' stroke-dasharray="{dash}"' if dash else ""
            self.parts.append(
                f'<line x1="{x}" y1="{yy}" x2="{x + 22}" y2="{yy}" stroke="{color}" stroke-width="2"{d}/>'
            )
            self.parts.append(f'<text x="{x + 28}" y="{yy + 4}">{text}</text>')

    def save(self, path):
        self.parts.append("</svg>")
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(self.parts) + "\n")


def nice_step(vmax):
    raw = vmax / 6
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    src, out = sys.argv[1], sys.argv[2]
    with open(src, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f)]
    if not rows:
        sys.exit(f"{src}: no rows")
    ns = [int(r["n"]) for r in rows]
    xmin, xmax = 10 ** math.floor(math.log10(min(ns))), 10 ** math.ceil(math.log10(max(ns) * 1.01))
    xmax = max(xmax, xmin * 100)

    mean = [(int(r["n"]), float(r["ae_rounds_mean"])) for r in rows]
    worst = [(int(r["n"]), float(r["ae_rounds_max"])) for r in rows]
    ymax = math.ceil(max([1.2 * bound(xmax)] + [v for _, v in worst]) + 1)
    p = Plot("Anti-entropy only: rounds until every node holds a change", "nodes N (log scale)",
             "gossip rounds", xmin, xmax, ymax)
    p.curve(bound, "#555")
    p.curve(lambda n: 1.2 * bound(n), "#c33", dash="6,4")
    p.series(mean, "#1f6fb4", "mean")
    p.series(worst, "#1f6fb4", "max", hollow=True)
    p.legend([
        ("#555", "bound log3(N) + ln ln N", ""),
        ("#c33", "1.2 x bound (target)", "6,4"),
        ("#1f6fb4", "measured mean (filled), max (hollow)", ""),
    ])
    p.save(os.path.join(out, "convergence.svg"))

    idle = [(int(r["n"]), float(r["idle_bytes_node_round"])) for r in rows]
    serf = 340.0
    ymax = math.ceil(max([serf * 1.15] + [v * 1.2 for _, v in idle]) / 50) * 50
    p = Plot("Idle cost: bytes sent per node per round (1 round = 1 s)", "nodes N (log scale)",
             "bytes / node / round", xmin, xmax, ymax)
    p.curve(lambda n: serf, "#c33", dash="6,4")
    p.series(idle, "#2a8a3a", "idle")
    p.legend([
        ("#c33", "budget: Serf ~340 B/s at N = 100", "6,4"),
        ("#2a8a3a", "measured (summary-first reconciliation)", ""),
    ])
    p.save(os.path.join(out, "bytes.svg"))
    print(f"wrote {os.path.join(out, 'convergence.svg')} and {os.path.join(out, 'bytes.svg')}")


if __name__ == "__main__":
    main()
