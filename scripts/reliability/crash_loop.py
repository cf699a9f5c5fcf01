#!/usr/bin/env python3
"""Crash loop: kill -9 `ironclad serve` at random moments under concurrent
HTTP appends, restart it, repeat; then check that every acknowledged (201)
event is in the log and that `ironclad ledger verify` passes.

Usage: scripts/reliability/crash_loop.py [--cycles N] [--writers N] [--seed S]
Prints `cycles`, `acked`, `lost` (must be 0) and more; exits 1 on a loss.
"""

import argparse
import os
import random
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

STREAMS = [f"crash-{i}" for i in range(16)]


class Writers:
    """Threads that append batches of 1–10 events with client-chosen ids
    and record the ids of every append answered 201."""

    def __init__(self, count, seed, pause_s=0.0):
        self.server = None
        self.pause_s = pause_s  # between appends, per writer
        self.acked = {}  # id -> stream
        self.sent_unanswered = 0
        self.statuses = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(seed + i,), daemon=True)
                        for i in range(count)]

    def run(self, seed):
        rnd = random.Random(seed)
        while not self.stop.is_set():
            server = self.server
            if server is None:
                time.sleep(0.01)
                continue
            stream = rnd.choice(STREAMS)
            events = [{"id": common.new_id(), "type": "crash.test",
                       "payload": {"n": rnd.randrange(1 << 30), "pad": "x" * rnd.randrange(200)}}
                      for _ in range(rnd.randint(1, 10))]
            try:
                status, _ = common.request(server, "POST", f"/v1/streams/{stream}/events",
                                           {"expected_version": "any", "events": events},
                                           timeout=10)
            except OSError:
                with self.lock:
                    self.sent_unanswered += len(events)
                time.sleep(0.02)
                continue
            time.sleep(self.pause_s)
            with self.lock:
                self.statuses[status] = self.statuses.get(status, 0) + 1
                if status == 201:
                    for e in events:
                        self.acked[e["id"]] = stream


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cycles", type=int, default=20)
    ap.add_argument("--writers", type=int, default=8)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--up-min-s", type=float, default=0.3, help="shortest uptime before the kill")
    ap.add_argument("--up-max-s", type=float, default=4.0, help="longest uptime before the kill")
    ap.add_argument("--keep", action="store_true", help="keep the temporary data directory")
    args = ap.parse_args()
    common.build()
    rnd = random.Random(args.seed)
    scratch = tempfile.mkdtemp(prefix="ironclad-crash-")
    data = os.path.join(scratch, "data")
    writers = Writers(args.writers, args.seed * 1000)
    for t in writers.threads:
        t.start()
    t0 = time.time()
    uptimes = []
    for cycle in range(args.cycles):
        server = common.Server(data)
        writers.server = server
        up = rnd.uniform(args.up_min_s, args.up_max_s)
        uptimes.append(up)
        time.sleep(up)
        writers.server = None
        server.kill9()
        common.log(f"cycle {cycle + 1}/{args.cycles}: killed after {up:.2f}s, acked so far {len(writers.acked)}")
    writers.stop.set()
    for t in writers.threads:
        t.join()
    elapsed = time.time() - t0
    # Restart once more (recovery on open), stop gracefully, then read locally.
    server = common.Server(data)
    term_code = server.term()
    present = set()
    total_in_log = 0
    for stream in STREAMS:
        ids = common.read_stream_ids(data, stream)
        total_in_log += len(ids)
        present.update(ids)
    lost = [i for i in writers.acked if i not in present]
    verify_code, verify_out = common.ledger_verify(data)
    panics = common.panics_in(os.path.join(scratch, "serve.log"))
    print(f"cycles {args.cycles}")
    print(f"writers {args.writers}")
    print(f"elapsed_s {elapsed:.0f}")
    print(f"acked {len(writers.acked)}")
    print(f"events_in_log {total_in_log}")
    print(f"in_log_not_acked {total_in_log - (len(writers.acked) - len(lost))}  (in flight at a kill: allowed)")
    print(f"lost {len(lost)}")
    print(f"http_statuses {dict(sorted(writers.statuses.items()))}")
    print(f"events_without_answer {writers.sent_unanswered}")
    print(f"final_sigterm_exit {term_code}")
    print(f"ledger_verify_exit {verify_code}  {verify_out.splitlines()[-1] if verify_out else ''}")
    print(f"panics {len(panics)}")
    if not args.keep:
        import shutil
        shutil.rmtree(scratch, ignore_errors=True)
    else:
        print(f"kept {scratch}")
    ok = not lost and verify_code == 0 and not panics
    print("OK" if ok else "FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
