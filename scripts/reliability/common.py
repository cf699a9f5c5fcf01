"""Shared helpers of the reliability scripts (python3 3.11, stdlib only).

They start the RELEASE `ironclad` binary as a real process on a temporary
data directory and talk to it over real HTTP on loopback, so what they
measure is what an operator would run. Nothing here mocks the server.
"""

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
# IRONCLAD_BIN overrides the binary (for trying the scripts on a debug build).
BIN = os.environ.get("IRONCLAD_BIN") or os.path.join(REPO, "target", "release", "ironclad")


def build():
    """Builds the release CLI (a no-op when it is up to date)."""
    if os.environ.get("IRONCLAD_BIN") or (os.environ.get("IRONCLAD_SKIP_BUILD") == "1" and os.path.exists(BIN)):
        return
    subprocess.run(
        ["cargo", "build", "--release", "-q", "-p", "ironclad-cli"], cwd=REPO, check=True
    )


def log(*parts):
    """Progress goes to stderr so stdout stays the report."""
    print(*parts, file=sys.stderr, flush=True)


class Server:
    """One `ironclad serve` process; `url` is its base URL once listening."""

    def __init__(self, data_dir, config=None, log_path=None, extra=()):
        self.data_dir = data_dir
        args = [BIN, "--data-dir", data_dir, "serve", "--listen", "127.0.0.1:0"]
        if config:
            args += ["--config", config]
        args += list(extra)
        self.log_path = log_path or os.path.join(os.path.dirname(data_dir), "serve.log")
        self.log_file = open(self.log_path, "ab")
        env = dict(os.environ, RUST_BACKTRACE="1", NO_COLOR="1")
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=self.log_file, env=env
        )
        line = self.proc.stdout.readline().decode(errors="replace").strip()
        if not line.startswith("listening on http://"):
            self.proc.wait(timeout=10)
            raise RuntimeError(
                f"serve did not start (exit {self.proc.returncode}): {line!r}; log {self.log_path}"
            )
        self.url = line.split("listening on ", 1)[1]
        hostport = self.url[len("http://"):]
        self.host, port = hostport.rsplit(":", 1)
        self.port = int(port)

    def kill9(self):
        """SIGKILL: no shutdown code runs."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.log_file.close()

    def term(self, timeout=30):
        """SIGTERM and wait: the graceful stop. Returns the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.log_file.close()
        return code


def request(server, method, path, body=None, token=None, headers=None, timeout=30):
    """One HTTP request on a fresh connection: (status, parsed JSON or text)."""
    conn = http.client.HTTPConnection(server.host, server.port, timeout=timeout)
    try:
        hdrs = {}
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        if token:
            hdrs["Authorization"] = f"Bearer {token}"
        hdrs.update(headers or {})
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        raw = resp.read()
        try:
            return resp.status, json.loads(raw)
        except ValueError:
            return resp.status, raw.decode(errors="replace")
    finally:
        conn.close()


def raw_request(host, port, payload, timeout=10, read_max=1 << 20):
    """Sends raw bytes and returns the status code of the answer, or None
    when the connection closed (or timed out) without a status line."""
    s = socket.create_connection((host, port), timeout=timeout)
    try:
        try:
            s.sendall(payload)
        except OSError:
            pass  # the server may answer and close before reading it all
        buf = b""
        while b"\r\n" not in buf and len(buf) < read_max:
            try:
                chunk = s.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
        line = buf.split(b"\r\n", 1)[0].split(b" ")
        if len(line) >= 2 and line[0].startswith(b"HTTP/") and line[1].isdigit():
            return int(line[1])
        return None
    finally:
        s.close()


def new_id():
    """A fresh event id (the client picks it, so acks can be matched)."""
    return str(uuid.uuid4())


def read_stream_ids(data_dir, stream):
    """Every event id of a stream, read from the data directory by the CLI."""
    ids = []
    out = subprocess.run(
        [BIN, "--data-dir", data_dir, "read", stream, "--limit", "1000000"],
        check=True, capture_output=True,
    ).stdout
    for line in out.splitlines():
        if line.strip():
            ids.append(json.loads(line)["id"])
    return ids


def ledger_verify(data_dir):
    """`ironclad ledger verify`: (exit code, output)."""
    p = subprocess.run(
        [BIN, "--data-dir", data_dir, "ledger", "verify"], capture_output=True, text=True
    )
    return p.returncode, (p.stdout + p.stderr).strip()


def panics_in(log_path):
    """Lines of a server log that report a panic."""
    try:
        with open(log_path, "rb") as f:
            text = f.read().decode(errors="replace")
    except OSError:
        return []
    return [l for l in text.splitlines() if "panicked" in l or "panic" in l.lower()]


def write_tokens_config(path, extra=""):
    """A config with one token per role; returns {role: token}."""
    tokens = {"producer": "p-" + uuid.uuid4().hex, "consumer": "c-" + uuid.uuid4().hex,
              "admin": "a-" + uuid.uuid4().hex}
    with open(path, "w") as f:
        for role, tok in tokens.items():
            f.write(f'[[server.tokens]]\ntoken = "{tok}"\nrole = "{role}"\n\n')
        f.write(extra)
    return tokens
