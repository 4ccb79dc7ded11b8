#!/usr/bin/env bash
# Durability benchmarks (issue 10): Warden with persistence.mode none,
# periodic and sync beside Mosquitto with `persistence true`.
#   1. fan-in QoS 1 into a persistent subscriber (clean session 0), the four
#      brokers interleaved for $ROUNDS rounds, same users, passwords, ACL and
#      queue limits as compare.sh;
#   2. restart time with $SESSIONS persistent sessions, each with one queued
#      QoS 1 message (anonymous, plain TCP, one allow-all rule);
#   3. disk bytes per queued message ($QUEUED messages of $PAYLOAD bytes to
#      one offline session).
# Writes the "Durability" section of docs/benchmarks.md and keeps the raw
# runs in bench/last-persist.jsonl.
#
# usage: bench/persist.sh   (env: SECS ROUNDS SESSIONS QUEUED PAYLOAD RESTARTS NO_BUILD KEEP)
#        PERSIST=1 bench/compare.sh runs it after the main comparison.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SECS=${SECS:-5}
ROUNDS=${ROUNDS:-3}
SESSIONS=${SESSIONS:-100000}
QUEUED=${QUEUED:-100000}
PAYLOAD=${PAYLOAD:-64}
RESTARTS=${RESTARTS:-3}
USERS=${USERS:-64}
RULES=${RULES:-1000}
PASSWORD=secret
WARDEN=$ROOT/target/release/warden
BENCH=$ROOT/target/release/warden-bench
WORK=$(mktemp -d /tmp/warden-persist.XXXXXX)
RESULTS=$WORK/persist.jsonl
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

start_warden() { # dir; sets STARTED to the broker's pid (the log is appended to)
    (cd "$1" && exec "$WARDEN" -c w.yaml serve >>serve.log 2>&1) &
    STARTED=$!
    PIDS+=("$STARTED")
}

start_mosquitto() { # dir; sets STARTED
    mosquitto -c "$1/m.conf" >>"$1/log" 2>&1 &
    STARTED=$!
    PIDS+=("$STARTED")
}

stop_broker() { # pid; SIGTERM, wait; sets STOP_SECS to the seconds it took to exit
    local t0 t1
    t0=$(date +%s%N)
    kill -TERM "$1"
    # Not in a $( ): only this shell can wait for its children.
    wait "$1" 2>/dev/null || true
    t1=$(date +%s%N)
    STOP_SECS=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
}

set_persistence() { # warden dir, mode, log level
    sed -i -e '/^persistence:/d' -e "s/^log: .*/log: { level: $3 }/" "$1/w.yaml"
    echo "persistence: { mode: $2, fsync_interval: 1s }" >>"$1/w.yaml"
}

RUN=0
bench() { # label pid port scenario args...
    local label=$1 pid=$2 port=$3
    shift 3
    RUN=$((RUN + 1))
    "$BENCH" "$@" --label "$label" --broker-pid "$pid" --port "$port" \
        --client-prefix "${CP:-p$RUN}" --password "$PASSWORD" >>"$RESULTS" 2>>"$WORK/bench.err" ||
        log "run failed: $label $*"
    log "$(tail -1 "$RESULTS" | cut -c1-240)"
}

# --- 1. fan-in QoS 1 into a persistent subscriber -------------------------
# Warden none / periodic / sync: 23883 24883 25883 (tls +1); users and the
# ~1,000-rule ACL are made once and the data dir copied.
log "setting up warden (users, $RULES rules) for none, periodic, sync"
WBASE=$WORK/warden-base
warden_config "$WBASE" 23883 23884
warden_users "$WBASE"
warden_rules "$WBASE"
CERTS=$WBASE/data/certs
# Makes the dev CA and server certificate Mosquitto's TLS listeners use.
"$WARDEN" -c "$WBASE/w.yaml" cert client bench0 >/dev/null
declare -A WPORT=([none]=23883 [periodic]=24883 [sync]=25883) WPID=()
for mode in none periodic sync; do
    d=$WORK/warden-$mode
    cp -a "$WBASE" "$d"
    p=${WPORT[$mode]}
    sed -i -e "s/127.0.0.1:23883/127.0.0.1:$p/" -e "s/127.0.0.1:23884/127.0.0.1:$((p + 1))/" "$d/w.yaml"
    set_persistence "$d" "$mode" warn
done
# Mosquitto, persistence true: 29883 29884 29885 (all ports here are below
# the ephemeral range, which 100k client connections fill); same queue limits.
MQ=$WORK/mosquitto-persist
mosquitto_config "$MQ" 29883 29884 29885 "$CERTS"
sed -i "s|^persistence false|persistence true\npersistence_location $MQ/|" "$MQ/m.conf"

for mode in none periodic sync; do
    start_warden "$WORK/warden-$mode"
    WPID[$mode]=$STARTED
done
start_mosquitto "$MQ"
PID_MQ=$STARTED
for p in 23883 24883 25883 29883; do wait_port $p; done

FANIN=(fanin --qos 1 --persistent --secs "$SECS")
for ((round = 1; round <= ROUNDS; round++)); do
    log "fan-in into a persistent subscriber, round $round/$ROUNDS"
    for mode in none periodic sync; do
        bench "warden-$mode" "${WPID[$mode]}" "${WPORT[$mode]}" "${FANIN[@]}"
    done
    bench mosquitto-persist "$PID_MQ" 29883 "${FANIN[@]}"
done
du_state() { du -sb "$1" 2>/dev/null | cut -f1 || echo 0; }
for mode in none periodic sync; do
    log "warden-$mode state after the fan-in runs: $(du_state "$WORK/warden-$mode/data/state") bytes"
    stop_broker "${WPID[$mode]}"
done
stop_broker "$PID_MQ"

source "$ROOT/bench/persist-restart.sh"

{
    echo "nproc: $(nproc)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
    echo "memory: $(grep MemTotal /proc/meminfo | awk '{print $2/1024/1024 " GiB"}')"
    echo "disk: $(df -T "$WORK" | awk 'NR==2 {print $2 " (" $1 ")"}') for the data dirs ($WORK)"
    echo "kernel: $(uname -sr)"
    echo "warden: $("$WARDEN" --version) ($(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?'), release build)"
    echo "mosquitto: $(mosquitto -h 2>&1 | head -1)"
    echo "rustc: $(rustc --version)"
    echo "run: $(date -u +%FT%TZ), $ROUNDS rounds interleaved, ${SECS}s per fan-in run, $SESSIONS sessions for the restart ($RESTARTS restarts), $QUEUED × $PAYLOAD-byte messages for the disk size"
} >"$WORK/machine.txt"
cp "$RESULTS" "$ROOT/bench/last-persist.jsonl"
python3 "$ROOT/bench/summarize.py" --durability "$RESULTS" "$WORK/machine.txt" "$ROOT/docs/benchmarks.md"
log "wrote the Durability section of docs/benchmarks.md (raw runs in bench/last-persist.jsonl)"
