#!/usr/bin/env bash
# What the ACL costs per message, in instructions: the same Warden build
# with the benchmark's ~1,000-rule ACL and with a single allow-all rule, each
# run under callgrind through the same fan-in and fan-out load. Instruction
# counts do not depend on what else the machine is doing, so this shows a
# few percent where msg/s on a shared 2-core machine cannot.
#
# For each broker and scenario: a warm-up run (logins: argon2 and the store
# are paid there and kept out of the count), counters zeroed, the measured
# run, counters dumped. Reports instructions per delivered message and the
# share spent inside the decision points (the per-client decision memo and
# the policy's `decide` behind it, inclusive). Run it before compare.sh: the
# summary there takes the ACL-cost target from bench/last-acl-cost.jsonl.
#
# usage: bench/acl-cost.sh   (env: RUNS="fanin:0 fanout:1 ..." SECS USERS RULES NO_BUILD KEEP)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SECS=${SECS:-8}
USERS=${USERS:-64}
RULES=${RULES:-1000}
PASSWORD=secret
WARDEN=$ROOT/target/release/warden
BENCH=$ROOT/target/release/warden-bench
WORK=$(mktemp -d /tmp/warden-aclcost.XXXXXX)
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

log "setting up: ACL ($RULES rules) and allow-all"
warden_config "$WORK/acl" 23883 23884
warden_users "$WORK/acl"
warden_rules "$WORK/acl"
warden_config "$WORK/all" 24883 24884
warden_users "$WORK/all"
"$WARDEN" -c "$WORK/all/w.yaml" acl add --everyone --allow publish,subscribe,receive '#' >/dev/null

# label dir port scenario args... ; prints one JSON line
measure() {
    local label=$1 dir=$2 port=$3 scenario=$4
    shift 4
    local out=$dir/cg.$scenario.$*
    out=${out// /}
    (cd "$dir" && exec valgrind --tool=callgrind --callgrind-out-file="$out" \
        "$WARDEN" -c w.yaml serve >"serve.$scenario.log" 2>&1) &
    PID=$!
    wait_port "$port" 600  # a broker under valgrind starts slowly
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
    python3 "$ROOT/bench/acl_cost_report.py" "$label" "$scenario" "$run" "$out.1" "$@"
}

RESULTS=$WORK/acl-cost.jsonl
for run in ${RUNS:-fanin:0 fanin:1 fanout:0 fanout:1}; do
    scenario=${run%:*} qos=${run#*:}
    log "$scenario qos $qos"
    measure warden "$WORK/acl" 23883 "$scenario" --qos "$qos" >>"$RESULTS"
    measure warden-allowall "$WORK/all" 24883 "$scenario" --qos "$qos" >>"$RESULTS"
done
cp "$RESULTS" "$ROOT/bench/last-acl-cost.jsonl"
python3 "$ROOT/bench/acl_cost_report.py" --table "$RESULTS"
log "raw runs in bench/last-acl-cost.jsonl (compare.sh's summary reads them)"
