#!/usr/bin/env bash
# What the metrics cost per message, in instructions: the same Warden build
# with metrics off (no metrics listener, `sys_interval: 0s`, so the message
# counters are not kept) and on (metrics listener and `$SYS`), each under
# callgrind through the same fan-in load, as bench/acl-cost.sh does for the
# ACL. Reports instructions per delivered message for both, and the
# inclusive cost of the counting itself (`observe::stats::Sharded::add`,
# kept out of line for this) with metrics on: the total per message moves
# with batching from run to run, the counting's own share does not.
#
# usage: bench/metrics-cost.sh   (env: RUNS="fanin:0 ..." SECS USERS NO_BUILD KEEP)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SECS=${SECS:-8}
USERS=${USERS:-64}
PASSWORD=secret
WARDEN=${WARDEN:-$ROOT/target/release/warden}
BENCH=${BENCH:-$ROOT/target/release/warden-bench}
WORK=$(mktemp -d /tmp/warden-metricscost.XXXXXX)
source "$ROOT/bench/setup.sh"

command -v valgrind >/dev/null || { echo "valgrind is needed (apt install valgrind)" >&2; exit 1; }
if [[ -z ${NO_BUILD:-} ]]; then
    (cd "$ROOT" && cargo build --release -p warden --bin warden -p warden-bench)
fi

PID=
cleanup() {
    [[ -z $PID ]] || kill "$PID" 2>/dev/null || true
    wait 2>/dev/null || true
    [[ -n ${KEEP:-} ]] || rm -rf "$WORK"
}
trap cleanup EXIT

log "setting up: metrics off and on (allow-all rule each)"
for which in off on; do
    port=$([[ $which == off ]] && echo 25883 || echo 26883)
    warden_config "$WORK/$which" "$port" $((port + 1))
    warden_users "$WORK/$which"
    "$WARDEN" -c "$WORK/$which/w.yaml" acl add --everyone --allow publish,subscribe,receive '#' >/dev/null
done
echo "sys_interval: 0s" >>"$WORK/off/w.yaml"
printf 'metrics: { bind: "127.0.0.1:26990" }\nsys_interval: 10s\n' >>"$WORK/on/w.yaml"

# label dir port scenario args... ; prints one JSON line
measure() {
    local label=$1 dir=$2 port=$3 scenario=$4
    shift 4
    local out=$dir/cg.$scenario.$*
    out=${out// /}
    (cd "$dir" && exec valgrind --tool=callgrind --callgrind-out-file="$out" \
        "$WARDEN" -c w.yaml serve >"serve.$scenario.log" 2>&1) &
    PID=$!
    wait_port "$port" 600
    "$BENCH" "$scenario" --port "$port" --password "$PASSWORD" --secs 2 "$@" \
        --client-prefix warm --label warm >/dev/null
    callgrind_control -z "$PID" >/dev/null
    local run
    run=$("$BENCH" "$scenario" --port "$port" --password "$PASSWORD" --secs "$SECS" "$@" \
        --client-prefix run --label "$label")
    callgrind_control -d "$PID" >/dev/null
    kill "$PID"
    wait "$PID" 2>/dev/null || true
    PID=
    python3 "$ROOT/bench/metrics_cost_report.py" "$label" "$scenario" "$run" "$out.1" "$@"
}

RESULTS=$WORK/metrics-cost.jsonl
for run in ${RUNS:-fanin:0}; do
    scenario=${run%:*} qos=${run#*:}
    log "$scenario qos $qos"
    measure metrics-off "$WORK/off" 25883 "$scenario" --qos "$qos" >>"$RESULTS"
    measure metrics-on "$WORK/on" 26883 "$scenario" --qos "$qos" >>"$RESULTS"
done
cp "$RESULTS" "$ROOT/bench/last-metrics-cost.jsonl"
python3 "$ROOT/bench/metrics_cost_report.py" --table "$RESULTS"
