#!/usr/bin/env bash
# WebSocket transports beside TLS on one Warden (release build): connect
# rate over tcp, tls, ws, wss, mtls and wss+mTLS, and the broker's CPU per
# message in a fan-in over tls and over wss. Logins are anonymous (one
# allow-all rule) or by client certificate, so that no argon2 verify hides
# the transport's cost. Rounds are interleaved; bench/ws_report.py prints
# medians with min-max.
#
# usage: bench/ws.sh        (env: ROUNDS CONNS SECS NO_BUILD KEEP)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-1000}
SECS=${SECS:-5}
WARDEN=$ROOT/target/release/warden
BENCH=$ROOT/target/release/warden-bench
WORK=$(mktemp -d /tmp/warden-ws-bench.XXXXXX)
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

W=$WORK/warden
mkdir -p "$W"
# The first CLI call makes the development CA and server certificate.
cat >"$W/w.yaml" <<CFG
data_dir: ./data
auth: { allow_anonymous: true }
log: { level: warn }
CFG
"$WARDEN" -c "$W/w.yaml" cert client bench0 >/dev/null
"$WARDEN" -c "$W/w.yaml" user add bench0 --no-password >/dev/null
"$WARDEN" -c "$W/w.yaml" acl add --everyone --allow publish,subscribe,receive '#' >/dev/null
C=$W/data/certs
MTLS_KEYS="client_auth: required, client_ca: $C/ca.pem, username_from: cn"
cat >"$W/w.yaml" <<CFG
data_dir: ./data
listeners:
  - { name: tcp, kind: tcp, bind: "127.0.0.1:26883", max_connections: 200000 }
  - { name: tls, kind: tls, bind: "127.0.0.1:26884", max_connections: 200000 }
  - { name: ws, kind: ws, bind: "127.0.0.1:26885", max_connections: 200000 }
  - { name: wss, kind: wss, bind: "127.0.0.1:26886", max_connections: 200000 }
  - { name: mtls, kind: tls, bind: "127.0.0.1:26887", max_connections: 200000, $MTLS_KEYS }
  - { name: wss-mtls, kind: wss, bind: "127.0.0.1:26888", max_connections: 200000, $MTLS_KEYS }
auth: { allow_anonymous: true }
limits: { max_queued_messages: 100000, receive_maximum: 1000 }
log: { level: warn }
CFG
(cd "$W" && exec "$WARDEN" -c w.yaml serve >serve.log 2>&1) &
PID=$!
for p in 26883 26884 26885 26886 26887 26888; do wait_port $p; done

RUN=0
bench() { # label port args...
    local label=$1 port=$2
    shift 2
    RUN=$((RUN + 1))
    "$BENCH" "$@" --label "$label" --broker-pid "$PID" --port "$port" \
        --client-prefix "r$RUN" >>"$RESULTS" 2>>"$WORK/bench.err" ||
        log "run failed: $label $*"
    log "$(tail -1 "$RESULTS" | cut -c1-160)"
}
ANON=(--user-prefix '')
TLS=(--ca "$C/ca.pem")
MTLS=(--ca "$C/ca.pem" --cert "$C/bench0.pem" --key "$C/bench0.key")
WSP=(--ws-path /mqtt)

for ((round = 1; round <= ROUNDS; round++)); do
    log "round $round/$ROUNDS"
    bench warden 26883 connect --conns "$CONNS" "${ANON[@]}"
    bench warden 26885 connect --conns "$CONNS" "${ANON[@]}" "${WSP[@]}"
    bench warden 26884 connect --conns "$CONNS" "${ANON[@]}" "${TLS[@]}"
    bench warden 26886 connect --conns "$CONNS" "${ANON[@]}" "${TLS[@]}" "${WSP[@]}"
    bench warden 26887 connect --conns "$CONNS" "${MTLS[@]}"
    bench warden 26888 connect --conns "$CONNS" "${MTLS[@]}" "${WSP[@]}"
    bench warden 26884 fanin --qos 0 --secs "$SECS" "${ANON[@]}" "${TLS[@]}"
    bench warden 26886 fanin --qos 0 --secs "$SECS" "${ANON[@]}" "${TLS[@]}" "${WSP[@]}"
done
cp "$RESULTS" "$ROOT/bench/last-ws.jsonl"
python3 "$ROOT/bench/ws_report.py" "$RESULTS"
