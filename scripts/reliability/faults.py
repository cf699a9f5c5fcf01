#!/usr/bin/env python3
"""Faults: a full disk, a corrupted database file, a read-only filesystem.
Each runs the release `ironclad serve` on a temporary data directory and
reports what happens and whether every acknowledged append survives.

Usage: sudo scripts/reliability/faults.py [--only disk|corrupt|readonly]
The full-disk and read-only cases mount a small tmpfs, so they need root
(`id -u` = 0); without it they are skipped and say so. Exits 1 when an
acknowledged event is lost or a damaged file is served.
"""

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

FAILED = []


def report(case, key, value):
    print(f"{case} | {key} | {value}", flush=True)


def append(server, stream, n, pad, token=None):
    events = [{"id": common.new_id(), "type": "fault.test", "payload": {"pad": "x" * pad}} for _ in range(n)]
    try:
        status, body = common.request(server, "POST", f"/v1/streams/{stream}/events",
                                      {"events": events}, token=token, timeout=15)
    except OSError as e:
        return None, str(e), []
    return status, body, [e["id"] for e in events] if status == 201 else []


def error_line(log_path):
    """The first `error:` line of a log (an error may span several lines)."""
    lines = open(log_path, errors="replace").read().strip().splitlines()
    first = next((l for l in lines if l.startswith("error")), lines[-1] if lines else "")
    return first[:400]


def check_survivors(case, data, acked):
    present = set(common.read_stream_ids(data, "faults"))
    lost = [i for i in acked if i not in present]
    code, out = common.ledger_verify(data)
    report(case, "acknowledged events", len(acked))
    report(case, "acknowledged events missing after restart", len(lost))
    report(case, "ledger verify exit", code)
    if lost or code != 0:
        FAILED.append(case)


def mount_tmpfs(path, size):
    os.makedirs(path, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path], check=True)


def full_disk(scratch):
    case = "full disk"
    mnt = os.path.join(scratch, "small")
    mount_tmpfs(mnt, "16m")
    data = os.path.join(mnt, "data")
    try:
        server = common.Server(data, log_path=os.path.join(scratch, "disk.log"))
        acked, statuses, first_fail = [], {}, None
        t_end = time.time() + 120
        while time.time() < t_end:
            status, body, ids = append(server, "faults", 8, 16 * 1024)
            acked += ids
            statuses[status] = statuses.get(status, 0) + 1
            if status != 201:
                first_fail = first_fail or (status, body)
                if statuses[status] >= 20:
                    break
        report(case, "appends answered while filling", dict(statuses))
        report(case, "first failure", str(first_fail)[:300])
        report(case, "/readyz while full", common.request(server, "GET", "/readyz")[0])
        report(case, "/healthz while full", common.request(server, "GET", "/healthz")[0])
        subprocess.run(["mount", "-o", "remount,size=256m", mnt], check=True)
        recovered = None
        t0 = time.time()
        while time.time() - t0 < 30:
            status, _, ids = append(server, "faults", 1, 10)
            acked += ids
            if status == 201:
                recovered = time.time() - t0
                break
            time.sleep(0.5)
        report(case, "first 201 after space was freed, s", "never (30 s)" if recovered is None else f"{recovered:.1f}")
        report(case, "/readyz after space was freed", common.request(server, "GET", "/readyz")[0])
        code = server.term()
        report(case, "SIGTERM exit", code)
        report(case, "SIGTERM's message", error_line(server.log_path))
        server = common.Server(data, log_path=server.log_path)
        report(case, "restart exit after SIGTERM", server.term())
        check_survivors(case, data, acked)
    finally:
        subprocess.run(["umount", "-l", mnt])


def corrupt(scratch):
    case = "corruption"
    data = os.path.join(scratch, "corrupt-data")
    server = common.Server(data, log_path=os.path.join(scratch, "corrupt.log"))
    acked = []
    for _ in range(200):
        acked += append(server, "faults", 10, 500)[2]
    report(case, "acknowledged before the damage", len(acked))
    report(case, "SIGTERM exit", server.term())
    db = os.path.join(data, "ironclad.db")
    size = os.path.getsize(db)
    rnd = random.Random(1)
    with open(db, "r+b") as f:
        f.seek(size // 2)
        f.write(bytes(rnd.randrange(256) for _ in range(4096)))
    report(case, "damage", f"4096 random bytes at offset {size // 2} of a {size}-byte ironclad.db")
    try:
        server = common.Server(data, log_path=os.path.join(scratch, "corrupt2.log"))
        report(case, "serve on the damaged file", "STARTED (damaged file served)")
        FAILED.append(case)
        server.term()
    except RuntimeError as e:
        msg = error_line(os.path.join(scratch, "corrupt2.log"))
        report(case, "serve on the damaged file", str(e).split(":")[0])
        report(case, "serve's message", msg)
        if "ironclad.db" not in msg:
            FAILED.append(case + " (message does not name the file)")
    code, out = common.ledger_verify(data)
    report(case, "ledger verify exit on the damaged file", code)
    report(case, "ledger verify says", out.splitlines()[-1][:300] if out else "")


def readonly(scratch):
    case = "read-only filesystem"
    mnt = os.path.join(scratch, "ro")
    mount_tmpfs(mnt, "64m")
    data = os.path.join(mnt, "data")
    try:
        server = common.Server(data, log_path=os.path.join(scratch, "ro.log"))
        acked = []
        for _ in range(50):
            acked += append(server, "faults", 10, 200)[2]
        # A running server: remounting read-only under it.
        r = subprocess.run(["mount", "-o", "remount,ro", mnt], capture_output=True, text=True)
        report(case, "remount read-only under a running server",
               "ok" if r.returncode == 0 else f"refused by the kernel: {r.stderr.strip().splitlines()[0]}")
        if r.returncode == 0:
            status, body, _ = append(server, "faults", 1, 10)
            report(case, "append on the read-only filesystem", f"{status} {str(body)[:200]}")
            subprocess.run(["mount", "-o", "remount,rw", mnt], check=True)
        report(case, "SIGTERM exit", server.term())
        subprocess.run(["mount", "-o", "remount,ro", mnt], check=True)
        try:
            server = common.Server(data, log_path=os.path.join(scratch, "ro2.log"))
            status, body, _ = append(server, "faults", 1, 10)
            report(case, "serve on a read-only data dir", f"started; append answered {status} {str(body)[:200]}")
            report(case, "/readyz", common.request(server, "GET", "/readyz")[0])
            report(case, "SIGTERM exit", server.term())
        except RuntimeError as e:
            report(case, "serve on a read-only data dir", str(e).split(":")[0])
            report(case, "serve's message", error_line(os.path.join(scratch, "ro2.log")))
        p = subprocess.run([common.BIN, "--data-dir", data, "read", "faults", "--limit", "1"],
                           capture_output=True, text=True)
        report(case, "`ironclad read` on the read-only data dir", f"exit {p.returncode} {(p.stderr.strip() or 'ok')[:200]}")
        code, out = common.ledger_verify(data)
        report(case, "`ledger verify` on the read-only data dir", f"exit {code}")
        subprocess.run(["mount", "-o", "remount,rw", mnt], check=True)
        check_survivors(case, data, acked)
    finally:
        subprocess.run(["umount", "-l", mnt])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["disk", "corrupt", "readonly"])
    args = ap.parse_args()
    common.build()
    scratch = tempfile.mkdtemp(prefix="ironclad-faults-")
    root = os.getuid() == 0
    print("case | what | result")
    print("---|---|---")
    if args.only in (None, "disk"):
        full_disk(scratch) if root else report("full disk", "skipped", "needs root for a tmpfs")
    if args.only in (None, "corrupt"):
        corrupt(scratch)
    if args.only in (None, "readonly"):
        readonly(scratch) if root else report("read-only filesystem", "skipped", "needs root for a tmpfs")
    print("FAILED: " + ", ".join(FAILED) if FAILED else "OK")
    import shutil
    shutil.rmtree(scratch, ignore_errors=True)
    sys.exit(1 if FAILED else 0)


if __name__ == "__main__":
    main()
