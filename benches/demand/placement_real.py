#!/usr/bin/env python3
"""Dynamic placement on real mote VMs: "hosts" are cgroup v1 cpu groups of
this machine, each capped at CAP CPUs (cpu.cfs_quota_us). N VMs start on
host 0 at a low duty cycle and all raise it at once (the guest's duty
scenario with switch_s). A manager then runs every STEP_S seconds:

  usage   takes each VM's measured usage for its need and moves VMs off a
          host whose usage is at its cap until what it sees fits (the
          paper's motivating example: it must wait to see usage grow);
  demand  uses mote's demand estimate (GET /demand) and packs the VMs of
          an over-committed host onto the others in one step.

A move is PATCH /vm Paused -> PUT /snapshot/create -> stop the old mote ->
`mote --restore --resume` in the destination host's cgroup. Records moves,
control steps, time to converge (first step with no move), and the
aggregate degradation: the sum over steps of (demand - usage) over all
VMs, as measured, in CPU-seconds.

usage: placement_real.py BUILD  (root; cgroup v1 cpu controller at
/sys/fs/cgroup/cpu) -> benches/results/placement-real.md, placement-real.svg"""
import json
import os
import signal
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RESULTS = os.path.join(ROOT, "benches", "results")
CG = "/sys/fs/cgroup/cpu"
N_VMS, N_HOSTS, CAP = 8, 4, 0.5
CYCLE_US = 50000
LOW, HIGH = 0.05, 0.125          # nominal duty cycles before and after the rise
SWITCH_S = 5                     # guest seconds until the rise
STEP_S, HORIZON = 3.0, 6         # control steps measured, moves or not
TARGET = 0.9
DEMAND_ARG = "period-ms=500,window=4,wss=off"


def http(sock, method, path, body=None):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(sock)
    b = (body or "").encode()
    s.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
              f"Content-Type: application/json\r\nContent-Length: {len(b)}\r\n\r\n".encode() + b)
    data = b""
    while True:
        x = s.recv(65536)
        if not x:
            break
        data += x
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    if status >= 300:
        raise RuntimeError(f"{method} {path}: {status} {body[:200]!r}")
    return json.loads(body) if body.strip() else None


def wait_sock(sock, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        try:
            return http(sock, "GET", "/")
        except (OSError, RuntimeError, ValueError, IndexError):
            time.sleep(0.01)
    raise RuntimeError(f"{sock} never answered")


class Exp:
    def __init__(self, build, tag):
        self.build, self.tag = build, tag
        self.tmp = f"/tmp/mote-place-{os.getpid()}-{tag}"
        os.makedirs(self.tmp, exist_ok=True)
        self.cg = f"{CG}/mote-place-{os.getpid()}-{tag}"
        os.makedirs(self.cg, exist_ok=True)
        for h in range(N_HOSTS):
            d = f"{self.cg}/h{h}"
            os.makedirs(d, exist_ok=True)
            open(f"{d}/cpu.cfs_period_us", "w").write("100000")
            open(f"{d}/cpu.cfs_quota_us", "w").write(str(int(CAP * 100000)))
        self.vms = {}   # name -> dict(host, sock, proc, gen)

    def spawn(self, host, args):
        cmd = ["sh", "-c", f'echo $$ > {self.cg}/h{host}/cgroup.procs && exec "$@"', "sh",
               os.path.join(self.build, "mote")] + args
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start(self):
        w1, w2 = int(CYCLE_US * LOW), int(CYCLE_US * HIGH)
        for i in range(N_VMS):
            name = f"vm{i}"
            sock = f"{self.tmp}/{name}.0.sock"
            p = self.spawn(0, ["--api-sock", sock, "--kernel",
                               os.path.join(self.build, "guest", "test-guest.elf"), "--cmdline",
                               f"test=duty work_us={w1} sleep_us={CYCLE_US - w1} switch_s={SWITCH_S} "
                               f"work2_us={w2} sleep2_us={CYCLE_US - w2} secs=0",
                               "--demand", DEMAND_ARG])
            wait_sock(sock)
            self.vms[name] = {"host": 0, "sock": sock, "proc": p, "gen": 0}

    def move(self, name, dest):
        vm = self.vms[name]
        t0 = time.time()
        http(vm["sock"], "PATCH", "/vm", '{"state": "Paused"}')
        state, mem = f"{self.tmp}/{name}.state", f"{self.tmp}/{name}.mem"
        http(vm["sock"], "PUT", "/snapshot/create",
             json.dumps({"snapshot_path": state, "mem_file_path": mem}))
        vm["proc"].send_signal(signal.SIGTERM)
        vm["proc"].wait(timeout=10)
        vm["gen"] += 1
        sock = f"{self.tmp}/{name}.{vm['gen']}.sock"
        p = self.spawn(dest, ["--restore", state, "--mem", mem, "--resume", "--api-sock", sock,
                              "--demand", DEMAND_ARG])
        wait_sock(sock)
        vm.update(host=dest, sock=sock, proc=p)
        return time.time() - t0

    def measure(self):
        m = {}
        for name, vm in self.vms.items():
            d = http(vm["sock"], "GET", "/demand")["vm"]["window"]
            m[name] = (d["usage"], d["demand"])
        return m

    def stop(self):
        for vm in self.vms.values():
            vm["proc"].send_signal(signal.SIGTERM)
        for vm in self.vms.values():
            try:
                vm["proc"].wait(timeout=10)
            except subprocess.TimeoutExpired:
                vm["proc"].kill()
        time.sleep(0.2)
        for h in range(N_HOSTS):
            os.rmdir(f"{self.cg}/h{h}")
        os.rmdir(self.cg)
        subprocess.run(["rm", "-rf", self.tmp])


def plan(policy, exp, m):
    """Moves (vm, dest) for one control step."""
    idx = 0 if policy == "usage" else 1
    seen = {n: m[n][idx] for n in m}
    hosts = {h: [n for n, vm in exp.vms.items() if vm["host"] == h] for h in range(N_HOSTS)}
    load = {h: sum(seen[n] for n in hosts[h]) for h in hosts}
    if policy == "usage":
        # Saturated: what it got reaches the cap (it cannot see more).
        hot = [h for h in hosts if load[h] >= TARGET * CAP]
    else:
        hot = [h for h in hosts if load[h] > CAP]
    moves = []
    for h in hot:
        keep, movers = [], []
        for n in sorted(hosts[h], key=lambda n: seen[n]):
            if sum(seen[x] for x in keep) + seen[n] <= TARGET * CAP:
                keep.append(n)
            else:
                movers.append(n)
        load[h] = sum(seen[x] for x in keep)
        for n in sorted(movers, key=lambda n: -seen[n]):
            dest = min((d for d in hosts if d not in hot), key=lambda d: load[d])
            load[dest] += seen[n]
            moves.append((n, dest))
    return moves


def run(build, policy):
    exp = Exp(build, policy)
    rows = []
    try:
        exp.start()
        time.sleep(SWITCH_S + STEP_S)  # the rise, then one window of it
        t0 = time.time()
        moves = 0
        move_times = []
        converged = None
        degradation = 0.0
        steps = 0
        for step in range(HORIZON):
            m = exp.measure()
            deg = sum(max(0.0, d - u) for u, d in m.values())
            t = time.time() - t0
            hostsum = [sum(m[n][0] for n, vm in exp.vms.items() if vm["host"] == h)
                       for h in range(N_HOSTS)]
            hostdem = [sum(m[n][1] for n, vm in exp.vms.items() if vm["host"] == h)
                       for h in range(N_HOSTS)]
            rows.append((round(t, 1), deg, sum(u for u, _ in m.values()),
                         sum(d for _, d in m.values()), hostsum, hostdem))
            degradation += deg * STEP_S
            # Once converged the manager only watches (one decision per run).
            todo = plan(policy, exp, m) if converged is None else []
            if not todo and converged is None:
                converged = t
            if todo:
                steps += 1
            for n, dest in todo:
                move_times.append(exp.move(n, dest))
                moves += 1
            time.sleep(STEP_S)
        return dict(moves=moves, steps=steps, converged=converged, degradation=degradation,
                    rows=rows, over=sum(1 for d in rows[-1][5] if d > CAP),
                    move_ms=1000 * sum(move_times) / len(move_times) if move_times else 0)
    finally:
        exp.stop()


def svg(res, path):
    W, H, L, B = 760, 320, 70, 40
    tmax = max(r["rows"][-1][0] for r in res.values()) or 1
    ymax = max(max(x[1] for x in r["rows"]) for r in res.values()) or 1
    x = lambda t: L + (W - L - 20) * t / tmax
    y = lambda v: H - B - (H - B - 30) * v / ymax
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W/2}" y="16" text-anchor="middle">{N_VMS} mote VMs, {N_HOSTS} cgroup hosts of '
           f'{CAP} CPU: sum of (demand - usage) after the rise</text>',
           f'<text x="{W/2}" y="{H-6}" text-anchor="middle">seconds after the first control step</text>']
    for i in range(5):
        v = ymax * i / 4
        out.append(f'<line x1="{L}" x2="{W-20}" y1="{y(v)}" y2="{y(v)}" stroke="#ddd"/>')
        out.append(f'<text x="{L-6}" y="{y(v)+4}" text-anchor="end">{v:.2f}</text>')
    for (name, r), c in zip(res.items(), ("#d62728", "#1f77b4")):
        pts = " ".join(f"{x(t):.1f},{y(d):.1f}" for t, d, *_ in r["rows"])
        out.append(f'<polyline points="{pts}" fill="none" stroke="{c}" stroke-width="2"/>')
        t, d = r["rows"][-1][0], r["rows"][-1][1]
        out.append(f'<text x="{x(t)-4}" y="{y(d)-6}" text-anchor="end" fill="{c}">{name}</text>')
    out.append("</svg>")
    open(path, "w").write("\n".join(out) + "\n")


def main():
    build = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build")
    load0 = open("/proc/loadavg").read().strip()
    res = {p: run(build, p) for p in ("usage", "demand")}
    load1 = open("/proc/loadavg").read().strip()
    git = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"],
                         capture_output=True, text=True).stdout.strip()
    lines = ["# Dynamic placement on mote VMs: from usage vs from demand", "",
             "> Hosts are cgroup v1 cpu groups of one 2-CPU machine shared with other work (load "
             "below); guest CPL0 code is emulated (nested software virtualization).", "",
             f"- date: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}; mote git {git}",
             f"- load average at start: `{load0}`; at end: `{load1}`",
             f"- command: `benches/demand/placement_real.py BUILD`: {N_VMS} VMs (`test=duty`, "
             f"{CYCLE_US/1000:g} ms cycle, {LOW*100:g} % -> {HIGH*100:g} % nominal at "
             f"{SWITCH_S} s) on host 0 of {N_HOSTS} hosts capped at {CAP} CPU; control step "
             f"{STEP_S:g} s; demand window 2 s (`--demand {DEMAND_ARG}`); managers fill hosts "
             f"to {TARGET*100:.0f} %",
             "- a move: pause, full snapshot, stop, restore in the destination cgroup, resume",
             "",
             "| policy | moves | control steps with moves | converged after | degradation over "
             f"{HORIZON * STEP_S:g} s (CPU-s) | hosts over capacity by demand at the end | mean move (ms) |",
             "|---|---|---|---|---|---|---|"]
    for p, r in res.items():
        conv = f"{r['converged']:.1f} s" if r["converged"] is not None else f"not in {HORIZON} steps"
        lines.append(f"| {p} | {r['moves']} | {r['steps']} | {conv} | {r['degradation']:.2f} | "
                     f"{r['over']} | {r['move_ms']:.0f} |")
    lines += ["", "Per control step (t: sum of demand - usage; total usage / total demand; "
              "per host usage/demand), CPUs:", ""]
    for p, r in res.items():
        lines.append(f"- {p}: " + "; ".join(
            f"{t:.0f} s: {d:.2f}; {u:.2f}/{dm:.2f}; ["
            + ", ".join(f"{a:.2f}/{b:.2f}" for a, b in zip(hs, hd)) + "]"
            for t, d, u, dm, hs, hd in r["rows"]))
    lines += ["", "Demand above usage that remains once every host fits is the rest of the "
              "machine's load (other processes share the 2 CPUs), not placement."]
    cu, cd = res["usage"]["converged"], res["demand"]["converged"]
    du, dd = res["usage"]["degradation"], res["demand"]["degradation"]
    if cu is not None and cd is not None:
        lines += ["", f"usage/demand: {cu / cd if cd else float('inf'):.1f}x the time to converge, "
                  f"{du / dd if dd else float('inf'):.1f}x the degradation"]
    lines += ["", "Plot: `benches/results/placement-real.svg`."]
    os.makedirs(RESULTS, exist_ok=True)
    open(os.path.join(RESULTS, "placement-real.md"), "w").write("\n".join(lines) + "\n")
    svg(res, os.path.join(RESULTS, "placement-real.svg"))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
