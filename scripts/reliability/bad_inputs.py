#!/usr/bin/env python3
"""Bad inputs by class: throws classes of hostile input at a running
`ironclad serve` (with tokens; limits lowered so the edges are cheap to
reach) and tabulates per class: requests sent, status codes seen, 5xx,
answers without a JSON error body, whether the server was still healthy
(`/healthz` 200 and a good append 201) after the class, and panics in its log.

Usage: scripts/reliability/bad_inputs.py [--repeat N] [--seed S]
`--repeat` sends the randomized cases (binary garbage) N times (default 3).
Exits 1 on any 5xx, panic, or unhealthy server.
"""

import argparse
import json
import os
import random
import socket
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

BODY_MAX = 1024 * 1024
CONFIG = f"""
[server.limits]
body_bytes_max = {BODY_MAX}
json_depth_max = 64
header_timeout_ms = 2000
request_timeout_ms = 3000
"""


def http(method, path, body=b"", headers=(), token="ADMIN", ctype="application/json",
         length=None, version="HTTP/1.1"):
    """A raw request; `token="ADMIN"` is replaced by the admin token later."""
    if isinstance(body, str):
        body = body.encode()
    if isinstance(path, str):
        path = path.encode()
    lines = [method.encode() + b" " + path + b" " + version.encode(), b"Host: HOSTPORT",
             b"Connection: close"]
    if token is not None:
        lines.append(b"Authorization: Bearer " + (token.encode() if isinstance(token, str) else token))
    if ctype is not None:
        lines.append(b"Content-Type: " + (ctype.encode() if isinstance(ctype, str) else ctype))
    if length is not False:
        lines.append(b"Content-Length: " + str(len(body) if length is None else length).encode())
    lines += [h if isinstance(h, bytes) else h.encode() for h in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def append_body(payload=b'{"n":1}', type_=b'"bad.input"', extra=b""):
    return (b'{"events":[{"type":' + type_ + b',"payload":' + payload + b"}]" + extra + b"}")


def sized_append(total):
    """A valid append body of exactly `total` bytes."""
    head, tail = b'{"events":[{"type":"big","payload":{"pad":"', b'"}}]}'
    return head + b"x" * (total - len(head) - len(tail)) + tail


def classes(rnd, repeat):
    """{class name: [raw request bytes]}."""
    ap = "/v1/streams/bad-input/events"
    deep = lambda n: b"[" * n + b"]" * n
    deep_obj = lambda n: b'{"a":' * n + b"1" + b"}" * n
    big_int = b"1" * 400
    c = {}
    c["oversized bodies"] = [
        http("POST", ap, sized_append(BODY_MAX)),            # at the limit: 201
        http("POST", ap, sized_append(BODY_MAX + 1)),        # one past: 413
        http("POST", ap, sized_append(8 * BODY_MAX)),
        http("POST", ap, b'{"events":[]}', length=100 * BODY_MAX),  # lies: long length, short body
        http("POST", ap, b"", length=2 ** 63),
        http("POST", ap, b"", length=-1),
        http("POST", ap, b"", length="12abc"),
        http("POST", ap, append_body(), headers=["Content-Length: 5"]),  # two lengths
        http("POST", ap, b"%x\r\n" % (BODY_MAX + 10) + b"x" * (BODY_MAX + 10) + b"\r\n0\r\n\r\n",
             length=False, headers=["Transfer-Encoding: chunked"]),
        http("POST", ap, b"ffffffffffffffffff\r\nx\r\n0\r\n\r\n", length=False,
             headers=["Transfer-Encoding: chunked"]),
        http("POST", ap, append_body(), headers=["Transfer-Encoding: chunked"]),  # CL + TE
        http("POST", "/v1/streams/bad-input/events",
             b'{"events":[' + b",".join([b'{"type":"t","payload":1}'] * 1001) + b"]}"),
    ]
    c["deep JSON"] = [http("POST", ap, append_body(deep(n))) for n in (63, 64, 65, 1000, 100_000, 400_000)] + [
        http("POST", ap, append_body(deep_obj(n))) for n in (64, 65, 50_000)] + [
        http("POST", ap, deep(200_000)),
        http("POST", ap, b'{"events":[{"type":"t","payload":1,"metadata":' + deep_obj(1000) + b"}]}"),
        http("POST", ap, b'{"expected_version":' + deep(1000) + b',"events":[]}'),
        http("POST", "/v1/consumers/deep/ack", deep_obj(10_000)),
        http("POST", "/v1/admin/dlq/purge", deep_obj(10_000)),
    ]
    nums = [b"1e999999", b"-1e999999", big_int, b"-" + big_int, b"1e-999999", b"0." + big_int,
            b"18446744073709551616", b"-0", b"NaN", b"Infinity", b"1.0e+", b"01"]
    c["huge numbers"] = [http("POST", ap, append_body(n)) for n in nums] + [
        http("POST", ap, b'{"expected_version":' + n + b',"events":[{"type":"t","payload":1}]}')
        for n in nums] + [
        http("GET", "/v1/streams/bad-input/events?from=" + q) for q in
        ("99999999999999999999999", "-1", "1e9", "0x10", big_int.decode())] + [
        http("GET", "/v1/streams/bad-input/events?limit=" + q) for q in ("0", "1e9", big_int.decode(), "-5")] + [
        http("GET", "/v1/poll?after=" + big_int.decode()),
        http("GET", "/v1/poll?wait_ms=" + big_int.decode()),
        http("GET", "/v1/poll?after=0&wait_ms=18446744073709551615&limit=1"),
        http("POST", "/v1/consumers/nums/ack", b'{"position":' + big_int + b"}"),
        http("POST", "/v1/consumers/nums/ack", b'{"position":1e999999}'),
        http("POST", "/v1/consumers/nums/ack", b'{"position":-1}'),
        http("GET", "/v1/admin/dlq/x/" + big_int.decode()),
        http("GET", "/v1/streams?limit=" + big_int.decode()),
    ]
    c["invalid UTF-8"] = [
        http("POST", ap, append_body(b'"\xff\xfe"')),
        http("POST", ap, append_body(b'"\xc0\xaf"')),
        http("POST", ap, append_body(b'"\xed\xa0\x80"')),
        http("POST", ap, append_body(b'"\\ud800"')),
        http("POST", ap, append_body(b'"\\udc00\\ud800"')),
        http("POST", ap, b"\xef\xbb\xbf" + append_body()),
        http("POST", ap, append_body(type_=b'"\xff"')),
        http("POST", b"/v1/streams/\xff\xfe/events", append_body()),
        http("POST", "/v1/streams/%FF%FE/events", append_body()),
        http("POST", "/v1/streams/%C0%AF/events", append_body()),
        http("GET", "/v1/streams/%ED%A0%80/events"),
        http("GET", b"/v1/streams?after=\xff"),
        http("GET", "/v1/streams?after=%FF"),
        http("GET", "/v1/consumers/%FF"),
        http("POST", ap, append_body(), headers=[b"X-Junk: \xff\xfe\x80"]),
        http("POST", ap, append_body(), token=b"\xff\xfe\x80\x81-token"),
    ]
    ctl = ["%00", "%0A", "%0D%0A", "%1B%5B31m", "%7F", "%09", "%08"]
    c["control characters"] = [http("POST", f"/v1/streams/ctl{x}name/events", append_body()) for x in ctl] + [
        http("POST", ap, append_body(type_=t)) for t in
        (b'"a\\nINFO forged"', b'"\\u001b[31mred"', b'"\\u0000"', b'"tab\\there"', b'"\\u007f"',
         b'"\\u0085next"', b'"\\u2028sep"')] + [
        http("POST", ap, b'{"events":[{"type":"t","payload":1,"entity":"e\\n1"}]}'),
        http("POST", ap, b'{"events":[{"type":"t","payload":1,"metadata":{"k\\u0000":"v"}}]}'),
        http("POST", ap, b'{"events":[{"type":"t","payload":1,"metadata":{"k":"v\\u001b"}}]}'),
        http("GET", "/v1/consumers/c%0Aname"),
        http("GET", "/v1/poll?after=0&wait_ms=0&streams=a%00b"),
        http("GET", "/v1/poll?after=0&wait_ms=0&consumer=c%1Bx"),
        http("POST", ap, append_body(type_=b'"' + b"t" * 100_000 + b'"')),
        http("POST", "/v1/streams/" + "s" * 300 + "/events", append_body()),
    ]
    garbage = [b"GARBAGE\r\n\r\n", b"\r\n\r\n", b"GET\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n",
               b"GET /healthz HTTP/1.1\n\n", b" / HTTP/1.1\r\n\r\n", b"get /healthz http/1.1\r\n\r\n",
               b"GET " + b"/" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
               b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
               b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(32),
               b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGARBAGE\r\n\r\n",
               b"GET /\x00\x01 HTTP/1.1\r\n\r\n", b"\x00" * 1000]
    garbage += [bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 4096))) for _ in range(5 * repeat)]
    c["garbage request lines"] = garbage
    c["huge headers"] = [
        http("GET", "/healthz", headers=["X-Big: " + "a" * (1 << 20)], token=None, ctype=None),
        http("GET", "/healthz", headers=["X-Big: " + "a" * 65536], token=None, ctype=None),
        http("GET", "/healthz", headers=[f"X-H{i}: v" for i in range(10_000)], token=None, ctype=None),
        http("GET", "/healthz", headers=["NoColonHere"], token=None, ctype=None),
        http("GET", "/healthz", headers=[b"X-Nul: a\x00b"], token=None, ctype=None),
        http("GET", "/healthz", headers=["X-Fold: a", " continued"], token=None, ctype=None),
        http("POST", ap, append_body(), headers=["Authorization: Bearer " + "z" * 100_000]),
    ]
    c["wrong content types"] = [http("POST", ap, append_body(), ctype=t) for t in
                                ("text/plain", None, "application/x-www-form-urlencoded",
                                 "multipart/form-data; boundary=x", "application/json; charset=utf-16",
                                 "application/xml", "", "application/json, text/plain", "APPLICATION/JSON")] + [
        http("POST", ap, b""), http("POST", ap, b"null"), http("POST", ap, b"[]"), http("POST", ap, b'"s"'),
        http("POST", ap, b"{}"), http("POST", ap, b"{}x"), http("POST", ap, append_body() + append_body()),
        http("POST", ap, append_body().decode().encode("utf-16"), ctype="application/json; charset=utf-16"),
        http("POST", ap, b"\x1f\x8b\x08\x00" + bytes(20), headers=["Content-Encoding: gzip"]),
        http("POST", ap, b'{"events":[{"type":"t","payload":1,"op":null}]}'),
        http("POST", ap, b'{"events":[{"type":"t","payload":1,"id":"not-a-uuid"}]}'),
        http("POST", ap, b'{"events":[{"type":"t","payload":1}],"unknown":1}'),
        http("POST", "/v1/admin/ledger/verify", b"not json"),
        http("POST", "/v1/admin/dlq/retry", b'{"all":"yes"}'),
    ]
    c["bad tokens"] = [http("POST", ap, append_body(), token=t) for t in
                       ("", " ", "x", "z" * 65536, "tok\u00e9n", "ADMIN ", "a\tb")] + [
        http("POST", ap, append_body(), token=None, headers=["Authorization: Basic YWRtaW46YWRtaW4="]),
        http("POST", ap, append_body(), token=None, headers=["Authorization: bearer ADMIN"]),
        http("POST", ap, append_body(), token=None, headers=["Authorization: Bearer"]),
        http("POST", ap, append_body(), headers=["Authorization: Bearer wrong-token-123456"]),
        http("GET", "/metrics", token=None, headers=["Authorization: Bearer ADMIN", "Authorization: Bearer ADMIN"]),
        http("GET", "/v1/admin/dlq/stats", token=b"ADMIN\x00"),
    ]
    c["methods and paths"] = [http(m, ap, append_body()) for m in
                              ("PUT", "DELETE", "PATCH", "TRACE", "OPTIONS", "FOO", "CONNECT")] + [
        http("GET", p) for p in ("/v1/streams/../admin/dlq/stats", "//v1//streams", "/v1/streams/a%2Fb/events",
                                 "/v1/streams//events", "/v1/admin/dlq/%2e%2e", "/v1/admin/dumps/..%2F..%2Fetc/replay",
                                 "*", "http://evil.example/v1/streams", "/v1/streams?after=a&after=b")] + [
        http("POST", "/v1/admin/dumps/..%2F..%2Fetc%2Fpasswd/replay", b"{}"),
        http("POST", "/v1/admin/sinks/nope/circuit", b'{"action":"explode"}'),
        http("GET", "/v1/subscribe?from=" + "9" * 30),
        http("GET", "/v1/subscribe", headers=["Upgrade: websocket", "Connection: Upgrade",
                                             "Sec-WebSocket-Version: 99", "Sec-WebSocket-Key: x"]),
    ]
    return c


def send(host, port, raw, admin):
    """(status or None, whether a 4xx/5xx answer had the JSON error shape)."""
    raw = raw.replace(b"HOSTPORT", f"{host}:{port}".encode()).replace(b"ADMIN", admin.encode())
    s = socket.create_connection((host, port), timeout=8)
    buf = b""
    try:
        try:
            # No half-close after sending: hyper takes a read EOF as the
            # client going away and drops the request unanswered.
            s.sendall(raw)
        except OSError:
            pass
        while len(buf) < (1 << 20):
            try:
                chunk = s.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
    finally:
        s.close()
    head, _, body = buf.partition(b"\r\n\r\n")
    parts = head.split(b"\r\n", 1)[0].split(b" ")
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        return None, True
    status = int(parts[1])
    shaped = True
    if status >= 400:
        try:
            j = json.loads(body[body.index(b"{"):body.rindex(b"}") + 1])
            shaped = {"code", "message", "details"} <= set(j["error"])
        except (ValueError, KeyError, TypeError):
            shaped = False
    return status, shaped


def healthy(server, admin):
    try:
        h = common.request(server, "GET", "/healthz")[0]
        a = common.request(server, "POST", "/v1/streams/health/events",
                           {"events": [{"type": "t", "payload": {}}]}, token=admin)[0]
        return h == 200 and a == 201
    except OSError:
        return False


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--verbose", action="store_true", help="print each case and its answer to stderr")
    args = ap.parse_args()
    common.build()
    scratch = tempfile.mkdtemp(prefix="ironclad-bad-")
    config = os.path.join(scratch, "ironclad.toml")
    tokens = common.write_tokens_config(config, CONFIG)
    server = common.Server(os.path.join(scratch, "data"), config=config)
    rows, total, bad = [], 0, 0
    for name, cases in classes(random.Random(args.seed), args.repeat).items():
        statuses, fivexx, unshaped = {}, 0, 0
        for raw in cases:
            try:
                status, shaped = send(server.host, server.port, raw, tokens["admin"])
            except OSError:
                status, shaped = None, True
            key = status if status is not None else "closed"
            if args.verbose:
                line, _, rest = raw.partition(b"\r\n")
                body = rest.partition(b"\r\n\r\n")[2]
                common.log(f"{name}: {status} {'' if shaped else '(no JSON error body) '}"
                           f"{line[:100]!r} body {body[:80]!r}")
            statuses[key] = statuses.get(key, 0) + 1
            fivexx += status is not None and status >= 500
            unshaped += not shaped
        ok = healthy(server, tokens["admin"])
        total += len(cases)
        bad += fivexx + (not ok)
        codes = ", ".join(f"{k}×{v}" for k, v in sorted(statuses.items(), key=lambda kv: str(kv[0])))
        rows.append(f"| {name} | {len(cases)} | {codes} | {fivexx} | {unshaped} | {'yes' if ok else 'NO'} |")
        common.log(rows[-1])
    exit_code = server.term()
    panics = common.panics_in(server.log_path)
    print("| class | sent | statuses (closed = no answer) | 5xx | error answers without the JSON error body | healthy after |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\nsent {total}, 5xx or unhealthy {bad}, panics in the log {len(panics)}, sigterm exit {exit_code}")
    for p in panics[:5]:
        print("  panic:", p)
    import shutil
    shutil.rmtree(scratch, ignore_errors=True)
    sys.exit(1 if bad or panics else 0)


if __name__ == "__main__":
    main()
