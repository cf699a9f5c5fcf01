#!/usr/bin/env bash
# OpenAPI conformance: runs schemathesis (`--checks all`) against a real
# `ironclad serve`, once with no tokens and once with an admin token, and
# fails on any finding. The document at /openapi.json must say exactly what
# the server does (issue 9 #23).
#
# Generation is deterministic, so a run repeats the previous one. Settings
# per operation are in scripts/schemathesis.toml, with the reasons.
#
# Needs python3 (3.9+) and PyPI: schemathesis is installed, pinned, into a
# venv under target/conformance/ (reused on later runs).
#
# Environment:
#   CONFORMANCE_MAX_EXAMPLES  test cases per operation and phase (default 40)
#   CONFORMANCE_VENV          where the venv lives
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

SCHEMATHESIS_VERSION=4.32.5
max_examples=${CONFORMANCE_MAX_EXAMPLES:-40}
venv=${CONFORMANCE_VENV:-$root/target/conformance/venv}
admin_token=conformance-admin-token

# Every check of `--checks all` runs; where one cannot know what the server
# may legitimately do, scripts/schemathesis.toml and schemathesis_hooks.py
# narrow it for that operation or value, and say why.

if [[ "$("$venv/bin/schemathesis" --version 2>/dev/null)" != *"$SCHEMATHESIS_VERSION"* ]]; then
    echo "== installing schemathesis $SCHEMATHESIS_VERSION into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        "schemathesis==$SCHEMATHESIS_VERSION"
fi

echo "== building ironclad"
cargo build --quiet -p ironclad-cli --bin ironclad
bin=$root/target/debug/ironclad

mkdir -p "$root/target/conformance"
work=$(mktemp -d)
server_pid=
stop_server() {
    if [[ -n "$server_pid" ]]; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=
    fi
}
cleanup() {
    stop_server
    rm -rf "$work"
}
trap cleanup EXIT

# Starts the server on a free loopback port with a fresh data directory;
# sets $base_url. Tokens come from $IRONCLAD_TOKENS when set.
start_server() {
    local name=$1
    mkdir -p "$work/$name"
    "$bin" --data-dir "$work/$name/data" serve --listen 127.0.0.1:0 \
        >"$work/$name/stdout" 2>"$work/$name/stderr" &
    server_pid=$!
    local line=
    for _ in $(seq 1 300); do
        line=$(head -n 1 "$work/$name/stdout" 2>/dev/null || true)
        [[ "$line" == "listening on "* ]] && break
        if ! kill -0 "$server_pid" 2>/dev/null; then
            echo "the server did not start:" >&2
            cat "$work/$name/stderr" >&2
            exit 1
        fi
        sleep 0.1
    done
    if [[ "$line" != "listening on "* ]]; then
        echo "the server printed no 'listening on' line within 30 s" >&2
        exit 1
    fi
    base_url=${line#listening on }
}

# Runs schemathesis against the running server; extra arguments are passed
# through (headers).
run_schemathesis() {
    local name=$1
    shift
    echo "== schemathesis ($name) against $base_url"
    # From target/conformance, where schemathesis keeps its cache.
    (cd "$root/target/conformance" && SCHEMATHESIS_HOOKS="$root/scripts/schemathesis_hooks.py" \
        "$venv/bin/schemathesis" --config-file "$root/scripts/schemathesis.toml" \
        run "$base_url/openapi.json" \
        --checks all \
        --max-examples "$max_examples" \
        --generation-deterministic \
        --request-timeout 10 \
        --report junit --report-junit-path "$root/target/conformance/$name.xml" \
        "$@")
}

status=0

start_server no-tokens
run_schemathesis no-tokens || status=1
stop_server

IRONCLAD_TOKENS="admin:$admin_token" start_server tokens
# The 401 path, explicitly: no token, then a wrong one.
for auth in "" "Bearer not-$admin_token"; do
    code=$(python3 - "$base_url/v1/streams" "$auth" <<'PY'
import sys, urllib.error, urllib.request
req = urllib.request.Request(sys.argv[1])
if sys.argv[2]:
    req.add_header("Authorization", sys.argv[2])
try:
    print(urllib.request.urlopen(req).status)
except urllib.error.HTTPError as e:
    print(e.code)
PY
)
    if [[ "$code" != 401 ]]; then
        echo "GET /v1/streams with Authorization '${auth:-none}' answered $code, not 401" >&2
        status=1
    fi
done
# With the admin token every endpoint is reachable; `ignored_auth` also
# sends requests without it and with a wrong one, expecting 401.
run_schemathesis tokens -H "Authorization: Bearer $admin_token" || status=1
stop_server

if [[ $status -ne 0 ]]; then
    echo "conformance: schemathesis found failures (see above)" >&2
fi
exit $status
