#!/usr/bin/env bash
# Login rate with the HTTP auth backend (issue 16), next to the SQLite store:
#
# - http-cold:   CONNS first logins of CONNS distinct users, all at once; each
#                asks the service twice (/authenticate, /rules). The service
#                is examples/auth_service.py (Python, threaded): part of what
#                is measured.
# - http-cached: the same clients again: answered from the login and rules
#                caches, no request to the service.
# - http-fanin / sqlite-fanin: fan-in QoS 0 (8 publishers, 1 subscriber,
#                FANIN_SECS) with the rules from the service, then the same
#                rules from the store: decisions are local, so they should
#                match.
# - sqlite-first / sqlite-again: the same users in SQLite with device
#                secrets (HMAC, the store's cheapest credential), first and
#                second logins (user, rules and policy then cached per policy
#                version).
#
# Every login compiles its policy locally (the rules from the service are
# the principal's own, so they are compiled per login; store-only
# principals share a compiled policy).
#
# usage: bench/auth-http.sh   (env: CONNS WARDEN BENCH NO_BUILD KEEP)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CONNS=${CONNS:-1000}
FANIN_SECS=${FANIN_SECS:-5}
WARDEN=${WARDEN:-$ROOT/target/release/warden}
BENCH=${BENCH:-$ROOT/target/release/warden-bench}
WORK=$(mktemp -d /tmp/warden-auth-http.XXXXXX)
RESULTS=$WORK/results.jsonl
source "$ROOT/bench/setup.sh"

if [[ -z ${NO_BUILD:-} ]]; then
    (cd "$ROOT" && cargo build --release -p warden --bin warden -p warden-bench)
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

PID= SVC=
cleanup() {
    [[ -z $PID ]] || kill "$PID" 2>/dev/null || true
    [[ -z $SVC ]] || kill "$SVC" 2>/dev/null || true
    wait 2>/dev/null || true
    [[ -n ${KEEP:-} ]] || rm -rf "$WORK"
}
trap cleanup EXIT

config() { # dir auth-yaml
    mkdir -p "$1"
    cat >"$1/w.yaml" <<CFG
data_dir: ./data
listeners:
  - { name: tcp, kind: tcp, bind: "127.0.0.1:28883", max_connections: 200000, connect_timeout: 30s }
persistence: { mode: none }
log: { level: warn }
auth: $2
CFG
}

start() { # dir
    (cd "$1" && exec "$WARDEN" -c w.yaml serve >>serve.log 2>&1) &
    PID=$!
    wait_port 28883
}

stop() {
    kill "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
    PID=
}

run() { # label args...
    local label=$1 line
    shift
    line=$("$BENCH" logins --label "$label" --port 28883 --broker-pid "$PID" "$@" 2>>"$WORK/bench.err") ||
        { log "run failed: $label"; return 0; }
    echo "$line" >>"$RESULTS"
    log "$(echo "$line" | cut -c1-240)"
}

# The example service, knowing bench0 … bench{CONNS-1} (password "secret").
python3 - "$ROOT/examples" "$CONNS" >"$WORK/service.log" 2>&1 <<'PY' &
import sys
sys.path.insert(0, sys.argv[1])
import auth_service as s
s.USERS.update({f"bench{i}": ("secret", ["staff"]) for i in range(int(sys.argv[2]))})
sys.argv = ["auth_service", "--port", "28980"]
s.main()
PY
SVC=$!
wait_port 28980

H=$WORK/http
config "$H" '{ http: { url: "http://127.0.0.1:28980", timeout: 10s, max_connections: 64 }, chain: [http] }'
start "$H"
run http-cold --conns "$CONNS" --users "$CONNS" --password secret --client-prefix h
run http-cached --conns "$CONNS" --users "$CONNS" --password secret --client-prefix h
fanin() { # label user-prefix
    local line
    line=$("$BENCH" fanin --label "$1" --port 28883 --broker-pid "$PID" --user-prefix "$2" --users 9 \
        --password secret --topic 'devices/{user}/t' --filter 'devices/+/t' --qos 0 --secs "$FANIN_SECS" 2>>"$WORK/bench.err") ||
        { log "run failed: $1"; return 0; }
    echo "$line" >>"$RESULTS"
    log "$(echo "$line" | cut -c1-240)"
}
fanin http-fanin bench
stop

S=$WORK/sqlite
config "$S" '{ allow_anonymous: false }'
python3 "$ROOT/bench/device_secrets.py" "$CONNS" "$S" "bench{}" benchers
"$WARDEN" -c "$S/w.yaml" import "$S/snapshot.json" >/dev/null
# The example service's rules for a staff user, as store rules.
"$WARDEN" -c "$S/w.yaml" acl add --role benchers --allow publish 'devices/${username}/#' >/dev/null
"$WARDEN" -c "$S/w.yaml" acl add --role benchers --allow subscribe,receive 'cmd/${username}/#' >/dev/null
"$WARDEN" -c "$S/w.yaml" acl add --role benchers --allow subscribe,receive 'devices/#' >/dev/null
for i in 0 1 2 3 4 5 6 7 8; do
    echo secret | "$WARDEN" -c "$S/w.yaml" user add "f$i" --password-stdin --role benchers >/dev/null
done
start "$S"
run sqlite-first --conns "$CONNS" --credentials "$S/creds.txt" --client-prefix s
run sqlite-again --conns "$CONNS" --credentials "$S/creds.txt" --client-prefix s
fanin sqlite-fanin f
stop

python3 - "$RESULTS" <<'PY'
import json, sys
print("| run | logins | failed | s to last CONNACK | logins/s | p50 ms | p99 ms | broker CPU ms/login |")
print("|---|---|---|---|---|---|---|---|")
fanins = []
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["scenario"] != "logins":
        fanins.append(r)
        continue
    n, secs = r.get("msgs", 0), r.get("secs", 0) or 1e-9
    ms = lambda v: f"{v / 1000:.1f}" if v is not None else "-"
    cpu = r.get("broker_cpu_s")
    per = f"{cpu * 1000 / n:.2f}" if cpu is not None and n else "-"
    print(f"| {r['broker']} | {n} | {r.get('drops', 0)} | {secs:.2f} | {n / secs:.0f} | {ms(r.get('p50_us'))} | {ms(r.get('p99_us'))} | {per} |")
print()
print("| fan-in QoS 0 | msg/s | broker µs/msg | drops |")
print("|---|---|---|---|")
for r in fanins:
    print(f"| {r['broker']} | {r.get('msg_per_s') or 0:.0f} | {r.get('broker_cpu_us_per_msg') or 0:.2f} | {r.get('drops', 0)} |")
PY
cp "$RESULTS" "$ROOT/bench/last-auth-http.jsonl"
