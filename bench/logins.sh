#!/usr/bin/env bash
# Login storms against one Warden (release build), issue 13:
#
# 1. fleet: CONNS (5,000) clients of ONE user connect and log in at the same
#    moment, first logins on a fresh broker (nothing cached): seconds until
#    the last CONNACK, failures, and warden's peak RSS (VmHWM). Over plain
#    TCP and over TLS, a fresh broker each. Targets: < 2 s, < 100 MB.
#    How many argon2 verifications ran is read from /metrics.
# 2. devices: DEVICES (10,000) distinct users with device secrets (the
#    `warden user add --generate-secret` scheme: HMAC-SHA256, per-user salt;
#    the hashes are made here in Python and loaded with `warden import`, as
#    10,000 CLI calls would take minutes), each logged in once, then the
#    broker is restarted and all of them reconnect at once: seconds until
#    the last CONNACK. Target: < 10 s.
#
# Each run prints one JSON line (warden-bench); bench/logins_report.py
# prints the summary. Rounds: ROUNDS (default 3), medians reported.
#
# usage: bench/logins.sh   (env: ROUNDS CONNS DEVICES NO_BUILD KEEP)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-5000}
DEVICES=${DEVICES:-10000}
WARDEN=${WARDEN:-$ROOT/target/release/warden}
BENCH=${BENCH:-$ROOT/target/release/warden-bench}
WORK=$(mktemp -d /tmp/warden-logins.XXXXXX)
RESULTS=$WORK/results.jsonl
source "$ROOT/bench/setup.sh"

if [[ -z ${NO_BUILD:-} ]]; then
    (cd "$ROOT" && cargo build --release -p warden --bin warden -p warden-bench)
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

PID=
cleanup() {
    [[ -z $PID ]] || kill "$PID" 2>/dev/null || true
    wait 2>/dev/null || true
    [[ -n ${KEEP:-} ]] || rm -rf "$WORK"
}
trap cleanup EXIT

# dir: a config with a tcp and a tls listener, metrics on 127.0.0.1:26990.
config() {
    mkdir -p "$1"
    cat >"$1/w.yaml" <<CFG
data_dir: ./data
listeners:
  - { name: tcp, kind: tcp, bind: "127.0.0.1:27883", max_connections: 200000, connect_timeout: 30s }
  - { name: tls, kind: tls, bind: "127.0.0.1:27884", max_connections: 200000, connect_timeout: 30s }
metrics: { bind: "127.0.0.1:26990" }
persistence: { mode: none }
log: { level: warn }
CFG
}

start() { # dir
    (cd "$1" && exec "$WARDEN" -c w.yaml serve >>serve.log 2>&1) &
    PID=$!
    wait_port 27883
    wait_port 27884
    wait_port 26990
}

stop() {
    kill "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
    PID=
}

metric() { # name{labels}
    curl -s http://127.0.0.1:26990/metrics | awk -v k="$1" '$1 == k { print $2 }'
}

# label args...: one warden-bench run, its JSON line plus the verifications
# counted by the broker, appended to the results.
run() {
    local label=$1
    shift
    local line argon2 shared
    line=$("$BENCH" logins --label "$label" --broker-pid "$PID" "$@" 2>>"$WORK/bench.err") ||
        { log "run failed: $label"; return 0; }
    argon2=$(metric 'warden_password_verifications_total{kind="argon2"}')
    shared=$(metric 'warden_password_verifications_shared_total')
    line=${line%\}}",\"argon2\":${argon2:-null},\"shared\":${shared:-null},\"load\":\"$(cut -d' ' -f1-3 /proc/loadavg)\"}"
    echo "$line" >>"$RESULTS"
    log "$(echo "$line" | cut -c1-220)"
}

F=$WORK/fleet
config "$F"
"$WARDEN" -c "$F/w.yaml" cert client unused >/dev/null # makes the dev CA
echo fleet-password | "$WARDEN" -c "$F/w.yaml" user add fleet0 --password-stdin --role fleet >/dev/null
"$WARDEN" -c "$F/w.yaml" acl add --role fleet --allow publish,subscribe,receive 'fleet/#' >/dev/null
CA=$F/data/certs/ca.pem

D=$WORK/devices
config "$D"
log "making $DEVICES device secrets"
python3 "$ROOT/bench/device_secrets.py" "$DEVICES" "$D" "dev{:05d}" devices
"$WARDEN" -c "$D/w.yaml" import "$D/snapshot.json" >/dev/null
"$WARDEN" -c "$D/w.yaml" acl add --role devices --allow publish,subscribe,receive 'dev/#' >/dev/null

for ((round = 1; round <= ROUNDS; round++)); do
    for transport in tcp tls; do
        # A fresh broker: every login of the storm is a first login.
        rm -rf "$F/data/state"
        start "$F"
        if [[ $transport == tcp ]]; then
            run "fleet" --port 27883 --conns "$CONNS" --users 1 --user-prefix fleet --password fleet-password --client-prefix "f$round"
        else
            run "fleet" --port 27884 --ca "$CA" --conns "$CONNS" --users 1 --user-prefix fleet --password fleet-password --client-prefix "f$round"
        fi
        stop
    done
    # Devices: all log in once, then the broker restarts and they return.
    start "$D"
    run "devices-first" --port 27883 --conns "$DEVICES" --credentials "$D/creds.txt" --client-prefix "d$round"
    stop
    start "$D"
    run "devices-after-restart" --port 27883 --conns "$DEVICES" --credentials "$D/creds.txt" --client-prefix "d$round"
    stop
done

python3 "$ROOT/bench/logins_report.py" "$RESULTS"
if [[ -n ${KEEP:-} ]]; then log "results kept in $RESULTS"; fi
cp "$RESULTS" "$ROOT/bench/last-logins.jsonl"
