#!/usr/bin/env python3
"""Memory of a real `ironclad serve` under concurrent large appends.

Starts the release binary on an ephemeral loopback port (a fresh data
directory, durability `os`, no tokens), then sends ROUNDS rounds of CLIENTS
concurrent appends of BYTES bytes each (events of 1 MB; one connection per
client, all released together). A client answered 503 `server_busy` or
429 `queue_full` waits its `Retry-After` and sends again (as does one whose
connection failed, on a new one), so every append is written in the end.
Prints one JSON line, in MiB from /proc/PID/status: VmRSS idle before the
load, the peak (VmHWM), and VmRSS 1 s, 5 s and 15 s after the last answer;
with the answers counted by status and the load's duration.

    scripts/mem-large-appends.py [--budget-bytes N] [--env K=V ...]
        [--clients 64] [--bytes 8000000] [--rounds 3] [--bin PATH]

--budget-bytes sets IRONCLAD_INFLIGHT_BODY_BYTES_MAX (1 TiB = no budget);
--env passes allocator settings such as MALLOC_ARENA_MAX=2 to the server.
"""

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid

MIB = 1024 * 1024


def rss_kib(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def start(binary, data_dir, env):
    config = os.path.join(data_dir, "ironclad.toml")
    with open(config, "w") as f:
        f.write('[server.journal]\ndurability = "os"\n')
    proc = subprocess.Popen(
        [binary, "serve", "--config", config, "--data-dir",
         os.path.join(data_dir, "data"), "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    for line in proc.stdout:
        if line.startswith("listening on http://"):
            host, port = line.strip().rsplit("/", 1)[1].rsplit(":", 1)
            return proc, host, int(port)
    raise SystemExit("the server exited before listening")


def client(host, port, bodies, barrier, counts, lock):
    def count(key):
        with lock:
            counts[key] = counts.get(key, 0) + 1
    conn = http.client.HTTPConnection(host, port, timeout=300)
    barrier.wait()
    for body in bodies:
        while True:
            try:
                conn.request("POST", "/v1/streams/big/events", body=body,
                             headers={"content-type": "application/json"})
                resp = conn.getresponse()
                resp.read()
            except (ConnectionError, http.client.HTTPException):
                # Counted, then sent again on a new connection.
                count("connection_error")
                conn.close()
                time.sleep(1)
                continue
            count(str(resp.status))
            if resp.status not in (429, 503):
                break
            time.sleep(float(resp.getheader("retry-after", "1")))


def body(size):
    """An append of about `size` bytes: events with string payloads under
    the default payload_bytes_max (1 MiB)."""
    events, left = [], size - 16
    while left > 0:
        pad = max(1, min(1_000_000, left - 80))
        events.append(b'{"id":"%s","type":"t","payload":"%s"}' % (str(uuid.uuid4()).encode(), b"x" * pad))
        left -= pad + 80
    return b'{"events":[' + b",".join(events) + b"]}"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", default="target/release/ironclad")
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--bytes", type=int, default=8_000_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--budget-bytes", type=int)
    p.add_argument("--env", action="append", default=[])
    a = p.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("IRONCLAD_")}
    if a.budget_bytes is not None:
        env["IRONCLAD_INFLIGHT_BODY_BYTES_MAX"] = str(a.budget_bytes)
    for kv in a.env:
        k, v = kv.split("=", 1)
        env[k] = v
    with tempfile.TemporaryDirectory(prefix="ironclad-mem-") as d:
        proc, host, port = start(a.bin, d, env)
        try:
            time.sleep(1)
            idle = rss_kib(proc.pid)
            counts, lock = {}, threading.Lock()
            bodies = [[body(a.bytes) for _ in range(a.rounds)] for _ in range(a.clients)]
            barrier = threading.Barrier(a.clients)
            threads = [threading.Thread(target=client, args=(host, port, b, barrier, counts, lock))
                       for b in bodies]
            started = time.monotonic()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            took = time.monotonic() - started
            peak = rss_kib(proc.pid, "VmHWM")
            after, slept = {}, 0
            for s in (1, 5, 15):
                time.sleep(s - slept)
                slept = s
                after[f"after_{s}s_mib"] = round(rss_kib(proc.pid) / 1024)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    print(json.dumps({
        "clients": a.clients, "bytes": a.bytes, "rounds": a.rounds,
        "budget_bytes": a.budget_bytes, "env": a.env,
        "idle_mib": round(idle / 1024), "peak_mib": round(peak / 1024), **after,
        "answers": counts, "seconds": round(took, 1),
    }))


if __name__ == "__main__":
    sys.exit(main())
