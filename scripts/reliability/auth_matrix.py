#!/usr/bin/env python3
"""Auth matrix: every role (none, producer, consumer, admin, a bad token)
against every endpoint group of a running `ironclad serve` with tokens,
expected status against actual. Prints the table; exits 1 on any mismatch.

Usage: scripts/reliability/auth_matrix.py
Expected statuses are the README's "Running the server" table: no token or
an unknown one is 401, a token of the wrong role 403.
"""

import base64
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

ROLES = ["none", "producer", "consumer", "admin", "bad"]


def ws_upgrade(server, path, token):
    """A raw WebSocket handshake: the status code of the answer (101 = open)."""
    key = base64.b64encode(os.urandom(16)).decode()
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    req = (f"GET {path} HTTP/1.1\r\nHost: {server.host}:{server.port}\r\n"
           f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
           f"Sec-WebSocket-Version: 13\r\n{auth}\r\n").encode()
    return common.raw_request(server.host, server.port, req)


def groups():
    """(group, label, call(server, token) -> status, {role: expected})."""
    ok = lambda allowed, code: {r: (code if r in allowed else (401 if r in ("none", "bad") else 403))
                                for r in ROLES}
    counter = {"n": 0}

    def append(s, t):
        counter["n"] += 1
        body = {"events": [{"type": "auth.test", "payload": {"n": counter["n"]}}]}
        return common.request(s, "POST", "/v1/streams/auth-matrix/events", body, token=t)[0]

    return [
        ("append", "POST /v1/streams/{s}/events", append, ok({"producer", "admin"}, 201)),
        ("read", "GET /v1/streams/{s}/events",
         lambda s, t: common.request(s, "GET", "/v1/streams/seed/events?from=1&limit=10", token=t)[0],
         ok({"producer", "consumer", "admin"}, 200)),
        ("read", "GET /v1/streams",
         lambda s, t: common.request(s, "GET", "/v1/streams", token=t)[0],
         ok({"producer", "consumer", "admin"}, 200)),
        ("subscribe", "GET /v1/subscribe (WebSocket)",
         lambda s, t: ws_upgrade(s, "/v1/subscribe", t), ok({"consumer", "admin"}, 101)),
        ("subscribe", "GET /v1/poll",
         lambda s, t: common.request(s, "GET", "/v1/poll?after=0&wait_ms=0&limit=5", token=t)[0],
         ok({"consumer", "admin"}, 200)),
        ("subscribe", "POST /v1/consumers/{name}/ack",
         lambda s, t: common.request(s, "POST", "/v1/consumers/auth-matrix/ack", {"position": 1}, token=t)[0],
         ok({"consumer", "admin"}, 200)),
        # After the ack above, so the consumer exists (an unknown one is 404).
        ("subscribe", "GET /v1/consumers/{name}",
         lambda s, t: common.request(s, "GET", "/v1/consumers/auth-matrix", token=t)[0],
         ok({"consumer", "admin"}, 200)),
        ("admin", "GET /v1/admin/dlq/stats",
         lambda s, t: common.request(s, "GET", "/v1/admin/dlq/stats", token=t)[0], ok({"admin"}, 200)),
        ("admin", "GET /v1/admin/dumps",
         lambda s, t: common.request(s, "GET", "/v1/admin/dumps", token=t)[0], ok({"admin"}, 200)),
        ("admin", "POST /v1/admin/ledger/verify",
         lambda s, t: common.request(s, "POST", "/v1/admin/ledger/verify", {}, token=t)[0], ok({"admin"}, 200)),
        ("metrics", "GET /metrics",
         lambda s, t: common.request(s, "GET", "/metrics", token=t)[0], ok({"admin"}, 200)),
        ("open", "GET /healthz", lambda s, t: common.request(s, "GET", "/healthz", token=t)[0],
         {r: 200 for r in ROLES}),
        ("open", "GET /readyz", lambda s, t: common.request(s, "GET", "/readyz", token=t)[0],
         {r: 200 for r in ROLES}),
        ("open", "GET /openapi.json", lambda s, t: common.request(s, "GET", "/openapi.json", token=t)[0],
         {r: 200 for r in ROLES}),
    ]


def main():
    common.build()
    scratch = tempfile.mkdtemp(prefix="ironclad-auth-")
    config = os.path.join(scratch, "ironclad.toml")
    tokens = common.write_tokens_config(config)
    tokens["none"] = None
    tokens["bad"] = "not-a-configured-token-0123456789"
    server = common.Server(os.path.join(scratch, "data"), config=config)
    try:
        seed = {"events": [{"type": "seed", "payload": {}}]}
        assert common.request(server, "POST", "/v1/streams/seed/events", seed, token=tokens["admin"])[0] == 201
        rows, mismatches = [], 0
        for group, label, call, expected in groups():
            cells = []
            for role in ROLES:
                actual = call(server, tokens[role])
                good = actual == expected[role]
                mismatches += not good
                cells.append(f"{actual}" if good else f"**{actual}** (expected {expected[role]})")
            rows.append(f"| {group} | `{label}` | " + " | ".join(cells) + " |")
    finally:
        code = server.term()
    panics = common.panics_in(server.log_path)
    print("| group | endpoint | " + " | ".join(ROLES) + " |")
    print("|---|---|" + "---|" * len(ROLES))
    print("\n".join(rows))
    print(f"\nrequests {len(rows) * len(ROLES)}, mismatches {mismatches}, panics {len(panics)}, "
          f"sigterm exit {code}")
    import shutil
    shutil.rmtree(scratch, ignore_errors=True)
    sys.exit(1 if mismatches or panics else 0)


if __name__ == "__main__":
    main()
