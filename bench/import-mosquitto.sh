#!/usr/bin/env bash
# Times `warden import mosquitto` of a password file with N users (default
# 100,000) into a fresh SQLite store and a fresh PostgreSQL database
# (127.0.0.1:5432, user postgres, trust), with the release binary.
#
#   cargo build --release -p warden && bench/import-mosquitto.sh [N]
#
# The password file holds real `$7$` (PBKDF2-SHA512, 101 iterations) hashes,
# made with Python's hashlib the way mosquitto_passwd makes them, each user
# with its own salt, plus an ACL file with one `user` section per 100 users
# and two patterns. Prints one line per store: users, seconds, users/s.
set -euo pipefail

n="${1:-100000}"
root="$(cd "$(dirname "$0")/.." && pwd)"
warden="${WARDEN_BIN:-$root/target/release/warden}"
[ -x "$warden" ] || { echo "build it first: cargo build --release -p warden" >&2; exit 1; }
work="$(mktemp -d)"
db="wdn_bench_import_$$"
cleanup() {
    rm -rf "$work"
    psql -h 127.0.0.1 -U postgres -d postgres -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT

python3 - "$n" "$work" <<'PY'
import base64, hashlib, os, sys
n, work = int(sys.argv[1]), sys.argv[2]
with open(os.path.join(work, "passwd"), "w") as pw, open(os.path.join(work, "acl"), "w") as acl:
    for i in range(n):
        salt = os.urandom(12)
        key = hashlib.pbkdf2_hmac("sha512", f"pw-{i}".encode(), salt, 101, 64)
        pw.write(f"dev{i:06d}:$7$101${base64.b64encode(salt).decode()}${base64.b64encode(key).decode()}\n")
        if i % 100 == 0:
            acl.write(f"user dev{i:06d}\ntopic readwrite fleet/dev{i:06d}/#\n")
    acl.write("pattern readwrite devices/%u/#\npattern read clients/%c/in\n")
PY

run() {
    local name="$1" store="$2"
    printf 'data_dir: %s/data-%s\nstore: %s\n' "$work" "$name" "$store" > "$work/$name.yaml"
    mkdir -p "$work/data-$name"
    "$warden" -c "$work/$name.yaml" migrate >/dev/null
    local start end
    start=$(date +%s.%N)
    "$warden" -c "$work/$name.yaml" import mosquitto --passwd "$work/passwd" --acl "$work/acl" > "$work/$name.out"
    end=$(date +%s.%N)
    local users
    users=$("$warden" -c "$work/$name.yaml" user list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
    python3 -c "import sys; s=float(sys.argv[3])-float(sys.argv[2]); print(f'{sys.argv[1]}: {sys.argv[4]} users imported in {s:.1f} s ({int(sys.argv[4])/s:,.0f} users/s)')" \
        "$name" "$start" "$end" "$users"
}

run sqlite "{ backend: sqlite, path: warden.db }"
psql -h 127.0.0.1 -U postgres -d postgres -qc "CREATE DATABASE $db" >/dev/null
run postgres "{ backend: postgres, url: \"postgres://postgres@127.0.0.1:5432/$db\" }"
