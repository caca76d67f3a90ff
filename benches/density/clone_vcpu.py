#!/usr/bin/env python3
"""Guest vCPU time of a function clone, phase by phase.

Boots a function image (default: the echo example) under mote with a vsock
device, takes its ready line, snapshots it, then restores N clones one at a
time and reads each clone's vCPU thread CPU time (/proc/PID/task/TID/
schedstat, run time) after each phase:

  restore    exec -> idle again after the restore (the transport reset, the
             runtime noticing it)
  request    CONNECT 5000, one request with a 5-byte body, the response
  close      the host closing the stream

Under nested software virtualization (these machines) guest CPL0 code is
emulated, so this is where a clone start's CPU goes beyond the monitor's
own (see benches/results/density.md, "CPU time per snapshot clone").

usage: benches/density/clone_vcpu.py [BUILD] [N]   (default build, 8)
writes benches/results/clone-vcpu.md and prints it.
"""
import glob, json, os, shutil, socket, statistics, struct, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build"))
N = int(sys.argv[2]) if len(sys.argv) > 2 else 8
MOTE = os.path.join(BUILD, "mote")
IMAGE = os.path.join(BUILD, "fn", "echo.elf")
REQ_MAGIC = 0x51464D4D   # guest/fn/protocol.h FN_REQ_MAGIC
RESP_MAGIC = 0x52464D4D  # FN_RESP_MAGIC
SETTLE_S = 0.3           # time for the guest to go idle after a phase


def api(sock, method, path, body):
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock)
    b = json.dumps(body).encode()
    s.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              f"Content-Length: {len(b)}\r\n\r\n".encode() + b)
    status = s.recv(4096).split(b"\r\n")[0].decode()
    s.close()
    if " 204 " not in status + " ":
        sys.exit(f"clone_vcpu: {method} {path}: {status}")


def vcpu_ns(pid):
    for t in glob.glob(f"/proc/{pid}/task/*"):
        try:
            if open(t + "/comm").read().strip() == "mote-vcpu0":
                return int(open(t + "/schedstat").read().split()[0])
        except OSError:
            pass
    sys.exit(f"clone_vcpu: no vCPU thread in pid {pid}")


def recv_exact(s, n):
    d = b""
    while len(d) < n:
        x = s.recv(n - len(d))
        if not x:
            sys.exit("clone_vcpu: the clone closed the stream")
        d += x
    return d


def main():
    for f in (MOTE, IMAGE):
        if not os.path.exists(f):
            sys.exit(f"clone_vcpu: {f} missing: run `make BUILD={BUILD}` first")
    work = tempfile.mkdtemp(prefix="mote-clonevcpu-")
    try:
        ready = socket.socket(socket.AF_UNIX)
        ready.bind(os.path.join(work, "v.sock_53"))
        ready.listen(1)
        ready.settimeout(120)
        tmpl = subprocess.Popen([MOTE, "--api-sock", "api.sock", "--kernel", IMAGE, "--mem-mib",
                                 "16", "--vsock", "cid=3,uds=v.sock"], cwd=work,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        c, _ = ready.accept()
        c.close()
        time.sleep(SETTLE_S)  # the guest idle, as the launcher does it
        api(os.path.join(work, "api.sock"), "PATCH", "/vm", {"state": "Paused"})
        api(os.path.join(work, "api.sock"), "PUT", "/snapshot/create",
            {"snapshot_path": os.path.join(work, "s.state"),
             "mem_file_path": os.path.join(work, "s.mem")})
        tmpl.kill()
        tmpl.wait()
        rows = []
        for i in range(N):
            cd = os.path.join(work, f"c{i}")
            os.mkdir(cd)
            q = subprocess.Popen([MOTE, "--restore", "../s.state", "--mem", "../s.mem", "--resume",
                                  "--no-api"], cwd=cd, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
            deadline = time.time() + 30
            while not os.path.exists(os.path.join(cd, "v.sock")):
                if time.time() > deadline:
                    sys.exit("clone_vcpu: the clone never made its vsock socket")
                time.sleep(0.001)
            time.sleep(SETTLE_S)
            t0 = vcpu_ns(q.pid)
            s = socket.socket(socket.AF_UNIX)
            s.connect(os.path.join(cd, "v.sock"))
            s.sendall(b"CONNECT 5000\n")
            line = b""
            while not line.endswith(b"\n"):
                line += recv_exact(s, 1)
            body = b"hello"
            s.sendall(struct.pack("<IIII16s", REQ_MAGIC, len(body), 0, 0, os.urandom(16)) + body)
            magic, status, blen, _ = struct.unpack("<IIII", recv_exact(s, 16))
            if magic != RESP_MAGIC or status != 0 or recv_exact(s, blen) != body:
                sys.exit(f"clone_vcpu: bad answer (magic {magic:#x}, status {status})")
            time.sleep(SETTLE_S)
            t1 = vcpu_ns(q.pid)
            s.close()
            time.sleep(SETTLE_S)
            t2 = vcpu_ns(q.pid)
            q.kill()
            q.wait()
            rows.append((t0 / 1e6, (t1 - t0) / 1e6, (t2 - t1) / 1e6))
        med = [statistics.median(r[k] for r in rows) for k in range(3)]
        load = open("/proc/loadavg").read().split()[:3]
        out = ["# Guest vCPU time of a function clone, by phase", "",
               f"- {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average {' '.join(load)}; "
               f"`benches/density/clone_vcpu.py {os.path.relpath(BUILD, ROOT)} {N}`",
               "- image: the echo function, 16 MiB, 1 vCPU; clones restored one at a time from a "
               "snapshot taken once the template was idle",
               "- vCPU thread run time from schedstat; guest CPL0 code is emulated on this host "
               "(~260 ns an instruction), CPL3 (the handler) runs natively", "",
               "| phase | median (ms) | each clone (ms) |", "|---|---|---|"]
        names = ["exec → idle after the restore", "CONNECT + one 5-byte request + response",
                 "stream closed by the host"]
        for k in range(3):
            out.append(f"| {names[k]} | {med[k]:.2f} | {', '.join(f'{r[k]:.2f}' for r in rows)} |")
        out.append("")
        text = "\n".join(out)
        os.makedirs(os.path.join(ROOT, "benches", "results"), exist_ok=True)
        with open(os.path.join(ROOT, "benches", "results", "clone-vcpu.md"), "w") as f:
            f.write(text)
        print(text)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
