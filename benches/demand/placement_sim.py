#!/usr/bin/env python3
"""Placement from usage (iterative) vs from demand (one shot), simulated.

Hosts share their CPU among their VMs in proportion to demand (a VM gets
demand x min(1, capacity / total demand)). Every control interval a
manager looks at the hosts and moves VMs off the saturated ones:

  usage   sees only what each VM got (usage) and takes it for its need,
          moves VMs off a saturated host until the usage it sees is under
          the target, then waits an interval to see the rest grow (the
          paper's motivating example);
  demand  sees the demand estimate, as mote reports it (the true demand
          times the relative error of mote's own estimates, drawn from a
          recorded trace: benches/results/demand-raw.tsv), and packs every
          saturated host's VMs in one step (first-fit decreasing onto the
          hosts with the most room).

Counts moves, control steps until no host is over capacity, and the
aggregate degradation: the sum over time of (demand - usage) over all VMs,
in CPU-seconds. Scenarios: the paper's single host (8 VMs at 10 % rising
to 25 % on a 1-CPU host, 3 spare hosts) and 1,000 hosts.

usage: placement_sim.py [TRACE.tsv]  -> benches/results/placement.md, placement.svg"""
import os
import random
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RESULTS = os.path.join(ROOT, "benches", "results")
INTERVAL_S = 10      # control interval
TARGET = 0.9         # fraction of capacity a manager fills up to
MAX_STEPS = 30


def load_errors(path):
    """Relative errors of mote's windowed demand estimate: each VM's window
    demand in the consolidated run over the solo VM's (true) demand."""
    rows = [l.rstrip("\n").split("\t") for l in open(path)][1:]
    solo = [float(r[7]) for r in rows if r[0] == "solo" and float(r[1]) >= 5]
    cons = [float(r[7]) for r in rows if r[0] == "vm" and float(r[1]) >= 5]
    if not solo or not cons:
        return [1.0], "no trace: exact estimates"
    truth = sum(solo) / len(solo)
    errs = [c / truth for c in cons]
    return errs, (f"{len(errs)} windowed estimates from {os.path.relpath(path, ROOT)}, "
                  f"true duty {truth*100:.1f} %, error mean {100*(sum(errs)/len(errs)-1):+.1f} %, "
                  f"range {100*(min(errs)-1):+.1f} %..{100*(max(errs)-1):+.1f} %")


def usage_of(hosts, cap, demand):
    u = {}
    for h, vms in hosts.items():
        tot = sum(demand[v] for v in vms)
        f = min(1.0, cap / tot) if tot > 0 else 1.0
        for v in vms:
            u[v] = demand[v] * f
    return u


def simulate(policy, hosts, cap, demand, errs, rng):
    hosts = {h: list(v) for h, v in hosts.items()}
    moves = steps = 0
    degradation = 0.0
    series = []
    converged_at = None
    for step in range(MAX_STEPS):
        u = usage_of(hosts, cap, demand)
        deg = sum(demand[v] - u[v] for v in demand)
        degradation += deg * INTERVAL_S
        series.append(deg)
        over = [h for h, vms in hosts.items() if sum(demand[v] for v in vms) > cap + 1e-9]
        if not over:
            converged_at = step
            break
        steps += 1
        seen = u if policy == "usage" else {v: demand[v] * rng.choice(errs) for v in demand}
        load = {h: sum(seen[v] for v in vms) for h, vms in hosts.items()}
        # Hosts the manager thinks are saturated (usage-based: at capacity).
        hot = [h for h in hosts if load[h] >= TARGET * cap - 1e-9] if policy == "usage" else over
        for h in hot:
            vms = sorted(hosts[h], key=lambda v: seen[v])
            keep = []
            # Keep the smallest VMs up to the target, move the rest.
            for v in vms:
                if sum(seen[x] for x in keep) + seen[v] <= TARGET * cap + 1e-9:
                    keep.append(v)
            movers = [v for v in hosts[h] if v not in keep]
            hosts[h] = keep
            load[h] = sum(seen[v] for v in keep)
            for v in sorted(movers, key=lambda v: -seen[v]):
                dest = min((d for d in hosts if d != h and d not in hot), key=lambda d: load[d])
                hosts[dest].append(v)
                load[dest] += seen[v]
                moves += 1
    return moves, steps, converged_at, degradation, series


def scenario(n_hosts, n_hot, vms_hot, vms_cold, before, after, cap):
    hosts, demand, k = {}, {}, 0
    for h in range(n_hosts):
        hosts[h] = []
        for _ in range(vms_hot if h < n_hot else vms_cold):
            hosts[h].append(k)
            demand[k] = after if h < n_hot else before
            k += 1
    return hosts, demand


def svg(series, path, title):
    W, H, L, B = 760, 320, 70, 40
    tmax = max(len(s) for s in series.values()) - 1 or 1
    ymax = max(max(s) for s in series.values()) or 1
    x = lambda i: L + (W - L - 20) * i / tmax
    y = lambda v: H - B - (H - B - 30) * v / ymax
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W/2}" y="16" text-anchor="middle">{title}</text>']
    for i in range(5):
        v = ymax * i / 4
        out.append(f'<line x1="{L}" x2="{W-20}" y1="{y(v)}" y2="{y(v)}" stroke="#ddd"/>')
        out.append(f'<text x="{L-6}" y="{y(v)+4}" text-anchor="end">{v:.0f}</text>')
    for i in range(tmax + 1):
        out.append(f'<text x="{x(i)}" y="{H-B+16}" text-anchor="middle">{i*INTERVAL_S}</text>')
    out.append(f'<text x="{W/2}" y="{H-6}" text-anchor="middle">seconds after the demand rise '
               f'(control interval {INTERVAL_S} s); y: sum of (demand - usage), CPUs</text>')
    for (name, s), c in zip(series.items(), ("#d62728", "#1f77b4")):
        pts = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(s))
        out.append(f'<polyline points="{pts}" fill="none" stroke="{c}" stroke-width="2"/>')
        out.append(f'<text x="{x(len(s)-1)+4}" y="{y(s[-1])-4}" fill="{c}">{name}</text>')
    out.append("</svg>")
    open(path, "w").write("\n".join(out) + "\n")


def main():
    trace = sys.argv[1] if len(sys.argv) > 1 else os.path.join(RESULTS, "demand-raw.tsv")
    errs, errs_desc = load_errors(trace)
    rng = random.Random(1)
    cases = [
        ("paper's host: 8 VMs 10 % -> 25 % on a 1-CPU host, 3 spare hosts",
         scenario(4, 1, 8, 0, 0.10, 0.25, 1.0), 1.0),
        ("1,000 hosts of 1 CPU: 250 with 8 VMs rising 10 % -> 25 %, 750 with 2 VMs at 10 %",
         scenario(1000, 250, 8, 2, 0.10, 0.25, 1.0), 1.0),
    ]
    lines = ["# Placement from usage vs from demand (simulated)", "",
             "`benches/demand/placement_sim.py` (see its docstring for the model). Demand "
             "estimates: " + errs_desc + ".", "",
             f"Control interval {INTERVAL_S} s; managers fill hosts up to {TARGET*100:.0f} % of "
             "capacity; degradation = sum over time of (demand - usage), CPU-seconds.", ""]
    goals = []
    for title, (hosts, demand), cap in cases:
        r = {p: simulate(p, hosts, cap, demand, errs, rng) for p in ("usage", "demand")}
        lines += [f"## {title}", "",
                  "| policy | moves | control steps | converged after | degradation (CPU-s) |",
                  "|---|---|---|---|---|"]
        for p, (moves, steps, conv, deg, _) in r.items():
            lines.append(f"| {p} | {moves} | {steps} | "
                         f"{'%d s' % (conv * INTERVAL_S) if conv is not None else 'not in %d steps' % MAX_STEPS} | "
                         f"{deg:.1f} |")
        cu, cd = r["usage"][2], r["demand"][2]
        speed = cu / cd if cu and cd else float("inf")
        less = r["usage"][3] / r["demand"][3] if r["demand"][3] else float("inf")
        lines += ["", f"usage/demand: {speed:.1f}x the time to converge, {less:.1f}x the "
                  "degradation", ""]
        goals.append((title, speed, less))
        if title.startswith("1,000"):
            svg({p: r[p][4] for p in r}, os.path.join(RESULTS, "placement.svg"),
                "1,000 hosts: aggregate degradation, usage-based vs demand-based placement")
    lines += ["## Goals (>= 2x faster convergence, >= 2x less degradation)", ""]
    for title, speed, less in goals:
        ok = speed >= 2 and less >= 2
        lines.append(f"- {title}: {speed:.1f}x faster, {less:.1f}x less degradation — "
                     f"**{'PASS' if ok else 'MISS'}**")
    lines += ["", "Plot: `benches/results/placement.svg`. The moves here are simulated; "
              "`benches/results/placement-real.md` moves real mote VMs (pause, snapshot, "
              "restore, resume) between cgroup \"hosts\" of one machine."]
    open(os.path.join(RESULTS, "placement.md"), "w").write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
