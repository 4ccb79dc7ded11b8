#!/usr/bin/env bash
# Cluster benchmark (issue 15): Warden on 1 node against 3 nodes over one
# nats-server (JetStream on), all on this machine, with the warden-bench load
# generator:
#
#   fan-in   8 publishers → 1 subscriber (`load/+/t`), QoS 0 and 1
#   fan-out  1 publisher → 50 subscribers, QoS 0 and 1
#   latency  1 publisher at 1,000 msg/s → 1 subscriber, QoS 1: p50/p99
#
# On 3 nodes the publishers and the subscribers are on different nodes
# (fan-in: publishers on nodes 1 and 2, the subscriber on node 3; fan-out
# and latency: the publisher on node 1, subscribers on nodes 2 and 3), so
# every delivery crosses NATS. Each run also reports the NATS traffic per
# published message (nats-server /varz: bytes in from the publishing nodes,
# bytes out to the others), the CPU seconds of all Warden nodes plus
# nats-server per delivered message, and the load average when it ran (the
# machine is shared: the figures are indicative). Then a message with no
# remote subscriber (publisher and subscriber both on node 1 while nodes 2
# and 3 run): what it costs NATS now. DURABLE=1 (default) repeats the QoS 1
# runs with `cluster.durable_qos: true`.
#
# ROUNDS (default 3) repeats everything, interleaved (round 1: 1 node, 3
# nodes, durable_qos; round 2: the same again; …), so that a change in the
# machine's load hits every setup alike; the table shows the median of the
# rounds per setup and scenario (each run's line, with its round, is in
# $OUT).
#
# usage: bench/cluster.sh   (env: SECS ROUNDS SUBS NO_BUILD KEEP DURABLE OUT
#                            WARDEN BENCH)
# Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust) and
# /usr/sbin/nats-server. Writes JSON lines to $OUT (bench/last-cluster.jsonl).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SECS=${SECS:-5}
ROUNDS=${ROUNDS:-3}
SUBS=${SUBS:-50}
DURABLE=${DURABLE:-1}
OUT=${OUT:-$ROOT/bench/last-cluster.jsonl}
WARDEN=${WARDEN:-$ROOT/target/release/warden}
BENCH=${BENCH:-$ROOT/target/release/warden-bench}
NATS=/usr/sbin/nats-server
WORK=$(mktemp -d /tmp/warden-cluster.XXXXXX)
DB=wbench_cluster_$$
NATS_PORT=24222
NATS_MON=28222
PORTS=(21901 21902 21903)
source "$ROOT/bench/setup.sh"

if [[ -z ${NO_BUILD:-} ]]; then
    (cd "$ROOT" && CARGO_INCREMENTAL=0 nice -n 10 cargo build --release -p warden -p warden-bench --bins)
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

PIDS=()
NODE_PIDS=()
NATS_PID=
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    psql -h 127.0.0.1 -U postgres -d postgres -qc "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true
    [[ -n ${KEEP:-} ]] || rm -rf "$WORK"
}
trap cleanup EXIT

psql -h 127.0.0.1 -U postgres -d postgres -qc "CREATE DATABASE $DB" >/dev/null
STORE="{ backend: postgres, url: \"postgres://postgres@127.0.0.1:5432/$DB\" }"

start_nats() {
    "$NATS" -a 127.0.0.1 -p $NATS_PORT -m $NATS_MON -js --store_dir "$WORK/nats" >"$WORK/nats.log" 2>&1 &
    NATS_PID=$!
    PIDS+=("$NATS_PID")
    wait_port $NATS_PORT
}

node_config() { # n cluster(0|1) durable(0|1)
    local dir=$WORK/node$1
    mkdir -p "$dir"
    cat >"$dir/w.yaml" <<EOF
data_dir: ./data
listeners:
  - { name: plain, kind: tcp, bind: "127.0.0.1:${PORTS[$1 - 1]}", max_connections: 200000 }
limits: { max_queued_messages: 100000, receive_maximum: 1000 }
log: { level: warn }
auth: { allow_anonymous: true }
persistence: { mode: none }
store: $STORE
EOF
    if [[ $2 == 1 ]]; then
        cat >>"$dir/w.yaml" <<EOF
cluster:
  nats_urls: ["nats://127.0.0.1:$NATS_PORT"]
  cluster_name: bench
  node_id: n$1
  durable_qos: $([[ $3 == 1 ]] && echo true || echo false)
EOF
    fi
}

start_nodes() { # count cluster(0|1) durable(0|1)
    local n
    NODE_PIDS=()
    for ((n = 1; n <= $1; n++)); do
        node_config "$n" "$2" "$3"
        (cd "$WORK/node$n" && exec "$WARDEN" -c w.yaml serve >serve.log 2>&1) &
        NODE_PIDS+=($!)
        PIDS+=($!)
    done
    for ((n = 1; n <= $1; n++)); do wait_port "${PORTS[$n - 1]}"; done
    # The durable consumers and the stream come up a moment after the ports.
    sleep 2
}

stop_nodes() {
    local p
    for p in "${NODE_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${NODE_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    NODE_PIDS=()
}

cpu_ticks() { # pids… → utime+stime ticks summed
    local p t=0
    for p in "$@"; do
        [[ -r /proc/$p/stat ]] || continue
        t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
    done
    echo $t
}

varz() { # field
    curl -s "http://127.0.0.1:$NATS_MON/varz" | python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"
}

# One warden-bench run; appends a JSON line with the cluster figures.
run() { # label nodes durable scenario qos [warden-bench args…]
    local label=$1 nodes=$2 durable=$3 scenario=$4 qos=$5
    shift 5
    local load in_b0 out_b0 in_m0 out_m0 t0 t1 line
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    in_b0=$(varz in_bytes) out_b0=$(varz out_bytes) in_m0=$(varz in_msgs) out_m0=$(varz out_msgs)
    t0=$(cpu_ticks "${NODE_PIDS[@]}" "$NATS_PID")
    line=$("$BENCH" "$scenario" --port "${PORTS[0]}" --user-prefix '' --topic 'load/{user}/t' \
        --qos "$qos" --secs "$SECS" --subs "$SUBS" --client-prefix "c$RANDOM" "$@")
    t1=$(cpu_ticks "${NODE_PIDS[@]}" "$NATS_PID")
    python3 - "$line" "$label" "$nodes" "$durable" "$ROUND" "$load" "$((t1 - t0))" "$(getconf CLK_TCK)" \
        "$(($(varz in_bytes) - in_b0))" "$(($(varz out_bytes) - out_b0))" \
        "$(($(varz in_msgs) - in_m0))" "$(($(varz out_msgs) - out_m0))" <<'PY' | tee -a "$OUT"
import json, sys
r = json.loads(sys.argv[1])
label, nodes, durable, rnd, load, ticks, hz, in_b, out_b, in_m, out_m = sys.argv[2:]
pub = max(r.get("published") or 0, 1)
msgs = max(r.get("msgs") or 0, 1)
r.update({
    "label": label, "nodes": int(nodes), "durable_qos": durable == "1", "round": int(rnd),
    "delivered_per_pub": (r.get("msgs") or 0) / pub,
    "load_avg": load,
    "cpu_us_per_msg_all": int(ticks) / int(hz) * 1e6 / msgs,
    "nats_in_bytes_per_pub": int(in_b) / pub, "nats_out_bytes_per_pub": int(out_b) / pub,
    "nats_in_msgs_per_pub": int(in_m) / pub, "nats_out_msgs_per_pub": int(out_m) / pub,
})
print(json.dumps(r))
PY
}

: >"$OUT"
start_nats
psql_rules() {
    "$WARDEN" -c "$WORK/node1/w.yaml" acl add --everyone --allow publish,subscribe,receive 'load/#' >/dev/null
}

for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
    log "round $ROUND/$ROUNDS: 1 node (no cluster)"
    start_nodes 1 0 0
    # The rules are in the shared store: once.
    [[ $ROUND == 1 ]] && psql_rules
    for q in 0 1; do
        run "1 node" 1 0 fanin $q --filter 'load/+/t'
        run "1 node" 1 0 fanout $q
    done
    run "1 node" 1 0 latency 1 --rate 1000
    stop_nodes

    log "round $ROUND/$ROUNDS: 3 nodes, core NATS"
    start_nodes 3 1 0
    for q in 0 1; do
        run "3 nodes" 3 0 fanin $q --filter 'load/+/t' --pub-ports "${PORTS[0]},${PORTS[1]}" --sub-ports "${PORTS[2]}"
        run "3 nodes" 3 0 fanout $q --sub-ports "${PORTS[1]},${PORTS[2]}"
    done
    run "3 nodes" 3 0 latency 1 --rate 1000 --sub-ports "${PORTS[1]}"
    # No remote subscriber: publisher and subscriber on node 1, nodes 2 and 3
    # running with no matching filter.
    SUBS=1 run "3 nodes, no remote subscriber" 3 0 fanout 0
    stop_nodes

    if [[ $DURABLE == 1 ]]; then
        log "round $ROUND/$ROUNDS: 3 nodes, durable_qos"
        start_nodes 3 1 1
        run "3 nodes durable_qos" 3 1 fanin 1 --filter 'load/+/t' --pub-ports "${PORTS[0]},${PORTS[1]}" --sub-ports "${PORTS[2]}"
        run "3 nodes durable_qos" 3 1 fanout 1 --sub-ports "${PORTS[1]},${PORTS[2]}"
        run "3 nodes durable_qos" 3 1 latency 1 --rate 1000 --sub-ports "${PORTS[1]}"
        stop_nodes
    fi
done

python3 - "$OUT" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
groups = {}
for r in rows:
    groups.setdefault((r["label"], r["scenario"], r.get("qos")), []).append(r)
def med(rs, k):
    v = [r[k] for r in rs if r.get(k) is not None]
    return statistics.median(v) if v else None
print(f"Medians of {max(r['round'] for r in rows)} round(s) per row.")
print()
print("| setup | scenario | QoS | rounds | msg/s delivered | delivered / published | drops | p50 µs | p99 µs | CPU µs/msg (all nodes + NATS) | NATS bytes in / out per publish | load avg (round 1) |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for (label, scenario, qos), rs in groups.items():
    def f(k, d=0):
        v = med(rs, k)
        return "" if v is None else f"{v:,.{d}f}"
    print(f"| {label} | {scenario} | {qos} | {len(rs)} | {f('msg_per_s')} | {f('delivered_per_pub', 3)} | {f('drops')} "
          f"| {f('p50_us')} | {f('p99_us')} | {f('cpu_us_per_msg_all', 1)} "
          f"| {f('nats_in_bytes_per_pub', 1)} / {f('nats_out_bytes_per_pub', 1)} | {rs[0]['load_avg']} |")
PY
