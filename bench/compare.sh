#!/usr/bin/env bash
# Side-by-side benchmark: Warden (ACL on), Warden with one allow-all rule,
# Mosquitto (password file + ACL file), FlashMQ when FLASHMQ_BIN names its
# binary (Mosquitto's password and ACL files, read as they are; built from
# its public source by whoever runs this, never here) and rumqttd (no auth,
# no ACL; built from bench/rumqttd on first use, RUMQTTD= leaves it out).
# Runs the warden-bench scenarios interleaved (A B A B …) for $ROUNDS rounds
# and writes medians with min–max to docs/benchmarks.md. Every message run
# lasts SECS seconds and every connect run CONNECT_SECS (a sample of several
# seconds on every broker, not a fixed count that a fast broker finishes in
# a fraction of one). PERSIST=1 then runs bench/persist.sh (durability:
# persistence modes beside Mosquitto's).
#
# usage: bench/compare.sh            (env: SECS CONNECT_SECS ROUNDS IDLE IDLE_MTLS NO_BUILD KEEP
#                                     RUMQTTD FLASHMQ_BIN PERSIST)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SECS=${SECS:-10}
CONNECT_SECS=${CONNECT_SECS:-5}
ROUNDS=${ROUNDS:-3}
# Connects per connect run at most (the run ends after CONNECT_SECS).
CONNS=${CONNS:-1000000}
# Idle connections logging in with a password on Warden: each first login
# of a user costs one argon2id verify (~50 ms CPU).
CONNS_PW=${CONNS_PW:-200}
IDLE=${IDLE:-5000}
IDLE_MTLS=${IDLE_MTLS:-2000}
USERS=${USERS:-64}
RULES=${RULES:-1000}
PASSWORD=secret
WARDEN=$ROOT/target/release/warden
BENCH=$ROOT/target/release/warden-bench
WORK=$(mktemp -d /tmp/warden-compare.XXXXXX)
RESULTS=$WORK/results.jsonl
source "$ROOT/bench/setup.sh"

if [[ -z ${NO_BUILD:-} ]]; then
    (cd "$ROOT" && cargo build --release -p warden --bin warden -p warden-bench)
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [[ -n ${KEEP:-} ]] || rm -rf "$WORK"
}
trap cleanup EXIT

start_warden() { # dir; sets STARTED to the broker's pid
    (cd "$1" && exec "$WARDEN" -c w.yaml serve >serve.log 2>&1) &
    STARTED=$!
    PIDS+=("$STARTED")
}

# --- Warden, ACL on: ports 21883 (tcp) 28883 (tls) 28884 (mtls) -----------
log "setting up warden (users, $RULES rules)"
WA=$WORK/warden
warden_config "$WA" 21883 28883
warden_users "$WA"
warden_rules "$WA"
CERTS=$WA/data/certs
"$WARDEN" -c "$WA/w.yaml" cert client bench0 >"$WA/cert.txt"
warden_add_mtls "$WA" 28884
# --- Warden, one allow-all rule: ports 22883 22884 ------------------------
WB=$WORK/warden-allowall
warden_config "$WB" 22883 22884 true  # anonymous allowed: idle RSS without argon2
warden_users "$WB"
"$WARDEN" -c "$WB/w.yaml" acl add --everyone --allow publish,subscribe,receive '#' >/dev/null
# --- Mosquitto: 31883 38883 38884 ------------------------------------------
MQ=$WORK/mosquitto
mosquitto_config "$MQ" 31883 38883 38884 "$CERTS"
# --- rumqttd: 41883 --------------------------------------------------------
RQ=$WORK/rumqttd
ensure_rumqttd
HAVE_RUMQTTD=$RUMQTTD
[[ -z $HAVE_RUMQTTD ]] || rumqttd_config "$RQ" 41883
# Anonymous; keep-alive longer than any run, since the tool sends no PINGREQ.
RQ_ARGS=(--user-prefix '' --keep-alive 600)
# --- FlashMQ (FLASHMQ_BIN): 51883 58883 58884, Mosquitto's files -----------
FQ=$WORK/flashmq
HAVE_FLASHMQ=${FLASHMQ_BIN:-}
[[ -z $HAVE_FLASHMQ ]] || flashmq_config "$FQ" 51883 58883 58884 "$CERTS" "$MQ"

CLIENT_CERT=$(ls "$CERTS"/bench0*.pem | grep -v key | head -1)
CLIENT_KEY=$(ls "$CERTS"/bench0*key* | head -1)

start_warden "$WA"
PID_WA=$STARTED
start_warden "$WB"
PID_WB=$STARTED
mosquitto -c "$MQ/m.conf" >"$MQ/log" 2>&1 &
PIDS+=($!)
PID_MQ=$!
if [[ -n $HAVE_RUMQTTD ]]; then
    "$RUMQTTD" -c "$RQ/r.toml" >"$RQ/log" 2>&1 &
    PIDS+=($!)
    PID_RQ=$!
fi
if [[ -n $HAVE_FLASHMQ ]]; then
    "$FLASHMQ_BIN" --config-file "$FQ/f.conf" >"$FQ/log" 2>&1 &
    PIDS+=($!)
    PID_FQ=$!
fi
for p in 21883 28883 28884 22883 31883 38883 38884; do wait_port $p; done
[[ -z $HAVE_RUMQTTD ]] || wait_port 41883
[[ -z $HAVE_FLASHMQ ]] || for p in 51883 58883 58884; do wait_port $p; done
RUN=0
bench() { # label pid port scenario args...
    local label=$1 pid=$2 port=$3
    shift 3
    RUN=$((RUN + 1))
    "$BENCH" "$@" --label "$label" --broker-pid "$pid" --port "$port" \
        --client-prefix "r$RUN" --password "$PASSWORD" >>"$RESULTS" 2>>"$WORK/bench.err" ||
        log "run failed: $label $*"
    log "$(tail -1 "$RESULTS" | cut -c1-200)"
}
TLS=(--ca "$CERTS/ca.pem")
MTLS=(--ca "$CERTS/ca.pem" --cert "$CLIENT_CERT" --key "$CLIENT_KEY")

each_broker() { # scenario args... (tcp, all brokers)
    bench warden "$PID_WA" 21883 "$@"
    bench warden-allowall "$PID_WB" 22883 "$@"
    bench mosquitto "$PID_MQ" 31883 "$@"
    [[ -z $HAVE_FLASHMQ ]] || bench flashmq "$PID_FQ" 51883 "$@"
    [[ -z $HAVE_RUMQTTD ]] || bench rumqttd "$PID_RQ" 41883 "$@" "${RQ_ARGS[@]}"
}

# Idle first, on fresh brokers: memory freed after the message runs would
# be reused by new connections and hide their cost.
log "idle connections (once per broker, fresh processes)"
# Order matters: each process's first idle run is the clean one (mTLS on
# Warden and Mosquitto, plain on the anonymous Warden and rumqttd); the
# argon2 logins go last because they leave ~20 MiB per concurrent verify behind.
bench warden "$PID_WA" 28884 idle --conns "$IDLE_MTLS" "${MTLS[@]}"
bench mosquitto "$PID_MQ" 38884 idle --conns "$IDLE_MTLS" "${MTLS[@]}"
[[ -z $HAVE_FLASHMQ ]] || bench flashmq "$PID_FQ" 58884 idle --conns "$IDLE_MTLS" "${MTLS[@]}"
bench warden-anonymous "$PID_WB" 22883 idle --conns "$IDLE" --user-prefix ''
bench mosquitto "$PID_MQ" 31883 idle --conns "$IDLE"
[[ -z $HAVE_FLASHMQ ]] || bench flashmq "$PID_FQ" 51883 idle --conns "$IDLE"
[[ -z $HAVE_RUMQTTD ]] || bench rumqttd "$PID_RQ" 41883 idle --conns "$IDLE" "${RQ_ARGS[@]}"
bench warden "$PID_WA" 21883 idle --conns "$CONNS_PW"

for ((round = 1; round <= ROUNDS; round++)); do
    log "round $round/$ROUNDS"
    for q in 0 1; do
        each_broker fanin --qos $q --secs "$SECS"
        each_broker fanout --qos $q --secs "$SECS"
    done
    # Issue 14: QoS 0 and 1, at 1,000 and at 10,000 msg/s.
    for q in 0 1; do
        for rate in 1000 10000; do
            each_broker latency --qos $q --rate $rate --secs "$SECS"
        done
    done
    for tr in tcp tls mtls; do
        case $tr in
        tcp) ports=(21883 31883 51883) extra=() ;;
        tls) ports=(28883 38883 58883) extra=("${TLS[@]}") ;;
        mtls) ports=(28884 38884 58884) extra=("${MTLS[@]}") ;;
        esac
        C=(connect --conns "$CONNS" --connect-secs "$CONNECT_SECS" "${extra[@]}")
        bench warden "$PID_WA" "${ports[0]}" "${C[@]}"
        bench mosquitto "$PID_MQ" "${ports[1]}" "${C[@]}"
        [[ -z $HAVE_FLASHMQ ]] || bench flashmq "$PID_FQ" "${ports[2]}" "${C[@]}"
    done
    [[ -z $HAVE_RUMQTTD ]] || bench rumqttd "$PID_RQ" 41883 connect --conns "$CONNS" \
        --connect-secs "$CONNECT_SECS" "${RQ_ARGS[@]}"
done

{
    echo "nproc: $(nproc)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
    echo "memory: $(grep MemTotal /proc/meminfo | awk '{print $2/1024/1024 " GiB"}')"
    echo "kernel: $(uname -sr)"
    echo "warden: $("$WARDEN" --version) ($(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?'), release build)"
    echo "mosquitto: $(mosquitto -h 2>&1 | head -1)"
    echo "flashmq: ${HAVE_FLASHMQ:+$("$FLASHMQ_BIN" --version 2>&1 | head -1) (built from its public source; the Mosquitto password and ACL files)}${HAVE_FLASHMQ:-not run}"
    echo "rumqttd: ${HAVE_RUMQTTD:+$("$RUMQTTD" --version 2>&1 | head -1) (library in bench/rumqttd, MQTT 3.1.1 listener)}${HAVE_RUMQTTD:-not run}"
    echo "rustc: $(rustc --version)"
    echo "run: $(date -u +%FT%TZ), $ROUNDS rounds interleaved, ${SECS}s per message run, ${CONNECT_SECS}s per connect run, $IDLE idle tcp, $IDLE_MTLS idle mtls"
} >"$WORK/machine.txt"
cp "$RESULTS" "$ROOT/bench/last-results.jsonl"
python3 "$ROOT/bench/summarize.py" "$RESULTS" "$WORK/machine.txt" "$ROOT/docs/benchmarks.md"
log "wrote docs/benchmarks.md (raw runs in bench/last-results.jsonl)"

if [[ -n ${PERSIST:-} ]]; then
    # The brokers above are done; persist.sh starts its own on other ports.
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    PIDS=()
    NO_BUILD=1 SECS=$SECS ROUNDS=$ROUNDS "$ROOT/bench/persist.sh"
fi
