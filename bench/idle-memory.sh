#!/usr/bin/env bash
# Idle memory per connection: for each connection count, transport (plain
# TCP with a password, TLS with a password, mutual TLS with the client
# certificate's CN as username) and broker, starts a FRESH broker, opens
# the connections with warden-bench `idle` (a warm-up wave first, then the
# rest; each client CONNECTs and then sends nothing), and reports the
# broker's RSS growth (VmRSS after − before) per connection opened after
# the warm-up. A fresh process per measurement: memory freed by an earlier
# run would be reused and hide the cost.
#
# Brokers: Warden (users, passwords and ~1,000 ACL rules through its CLI,
# as compare.sh sets it up), Mosquitto (the same users in a password file,
# the same ACL file; its own process on high ports, never the system one),
# and FlashMQ when FLASHMQ_BIN names a binary (it reads Mosquitto's
# password and ACL files). Raw runs go to bench/last-idle.jsonl and the
# table into docs/benchmarks.md between the idle-memory markers.
#
# usage: bench/idle-memory.sh   (env: CONNS TRANSPORTS BROKERS HOLD NO_BUILD KEEP FLASHMQ_BIN)
#   CONNS       connection counts (default "5000 19900": the container's
#               hard limit of 20,000 file descriptors per process leaves
#               19,900 connections with room for the broker's own files)
#   TRANSPORTS  default "tcp tls mtls"; BROKERS default "warden mosquitto"
#               (+ flashmq when FLASHMQ_BIN is set)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CONNS=${CONNS:-"5000 19900"}
TRANSPORTS=${TRANSPORTS:-"tcp tls mtls"}
BROKERS=${BROKERS:-"warden mosquitto${FLASHMQ_BIN:+ flashmq}"}
HOLD=${HOLD:-3}
USERS=${USERS:-64}
RULES=${RULES:-1000}
PASSWORD=secret
WARDEN=${WARDEN:-$ROOT/target/release/warden}
BENCH=${BENCH:-$ROOT/target/release/warden-bench}
WORK=$(mktemp -d /tmp/warden-idle.XXXXXX)
RESULTS=$WORK/results.jsonl
# Ports apart from compare.sh's, so both can run on one machine, and
# below the ephemeral range (32768+): after 20,000 client sockets one of
# them may hold a port a broker is about to bind.
declare -A PORT=(
    [warden.tcp]=25883 [warden.tls]=25884 [warden.mtls]=25885
    [mosquitto.tcp]=26883 [mosquitto.tls]=26884 [mosquitto.mtls]=26885
    [flashmq.tcp]=27883 [flashmq.tls]=27884 [flashmq.mtls]=27885
)
source "$ROOT/bench/setup.sh"

if [[ -z ${NO_BUILD:-} ]]; then
    (cd "$ROOT" && cargo build --release -p warden --bin warden -p warden-bench)
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

BROKER_PID=
cleanup() {
    [[ -z $BROKER_PID ]] || kill "$BROKER_PID" 2>/dev/null || true
    wait 2>/dev/null || true
    [[ -n ${KEEP:-} ]] || rm -rf "$WORK"
}
trap cleanup EXIT

log "setting up warden (users, $RULES rules)"
WA=$WORK/warden
warden_config "$WA" "${PORT[warden.tcp]}" "${PORT[warden.tls]}"
warden_users "$WA"
warden_rules "$WA"
CERTS=$WA/data/certs
"$WARDEN" -c "$WA/w.yaml" cert client bench0 >"$WA/cert.txt"
warden_add_mtls "$WA" "${PORT[warden.mtls]}"
CLIENT_CERT=$(ls "$CERTS"/bench0*.pem | grep -v key | head -1)
CLIENT_KEY=$(ls "$CERTS"/bench0*key* | head -1)
MQ=$WORK/mosquitto
mosquitto_config "$MQ" "${PORT[mosquitto.tcp]}" "${PORT[mosquitto.tls]}" "${PORT[mosquitto.mtls]}" "$CERTS"
if [[ -n ${FLASHMQ_BIN:-} ]]; then
    # Mosquitto's password and ACL files as they are; the client
    # certificate's CN is the username on the mTLS listener.
    FQ=$WORK/flashmq
    mkdir -p "$FQ"
    cat >"$FQ/f.conf" <<EOF
thread_count 2
log_file $FQ/log
allow_anonymous false
mosquitto_password_file $MQ/pw
mosquitto_acl_file $MQ/acl
listen {
    protocol mqtt
    inet4_bind_address 127.0.0.1
    port ${PORT[flashmq.tcp]}
}
listen {
    protocol mqtt
    inet4_bind_address 127.0.0.1
    port ${PORT[flashmq.tls]}
    fullchain $CERTS/server.pem
    privkey $CERTS/server.key
}
listen {
    protocol mqtt
    inet4_bind_address 127.0.0.1
    port ${PORT[flashmq.mtls]}
    fullchain $CERTS/server.pem
    privkey $CERTS/server.key
    client_verification_ca_file $CERTS/ca.pem
    client_verification_still_do_authn false
}
EOF
fi

start() { # broker; sets BROKER_PID
    case $1 in
    warden) (cd "$WA" && exec "$WARDEN" -c w.yaml serve >serve.log 2>&1) & ;;
    mosquitto) mosquitto -c "$MQ/m.conf" >"$MQ/log" 2>&1 & ;;
    flashmq) "$FLASHMQ_BIN" --config-file "$FQ/f.conf" >"$FQ/out" 2>&1 & ;;
    esac
    BROKER_PID=$!
    local t
    for t in tcp tls mtls; do wait_port "${PORT[$1.$t]}"; done
}

stop() {
    kill "$BROKER_PID" 2>/dev/null || true
    wait "$BROKER_PID" 2>/dev/null || true
    BROKER_PID=
}

for n in $CONNS; do
    for t in $TRANSPORTS; do
        for b in $BROKERS; do
            start "$b"
            args=(idle --conns "$n" --hold "$HOLD" --keep-alive 600 --label "$b"
                --broker-pid "$BROKER_PID" --port "${PORT[$b.$t]}" --password "$PASSWORD")
            case $t in
            tls) args+=(--ca "$CERTS/ca.pem") ;;
            mtls) args+=(--ca "$CERTS/ca.pem" --cert "$CLIENT_CERT" --key "$CLIENT_KEY") ;;
            esac
            # The report counts the connections opened after the warm-up
            # wave; "requested" keeps the asked-for total.
            "$BENCH" "${args[@]}" 2>>"$WORK/bench.err" | sed "s/^{/{\"requested\":$n,/" >>"$RESULTS" ||
                log "run failed: $b $t $n"
            log "$(tail -1 "$RESULTS" | cut -c1-200)"
            stop
        done
    done
done

cp "$RESULTS" "$ROOT/bench/last-idle.jsonl"
python3 - "$RESULTS" "$ROOT/docs/benchmarks.md" "$(git -C "$ROOT" rev-parse --short HEAD)" <<'PY'
import json, sys
results, doc, commit = sys.argv[1:]
runs = [json.loads(l) for l in open(results) if l.startswith("{")]
brokers = [b for b in ["warden", "mosquitto", "flashmq"] if any(r["broker"] == b for r in runs)]
rows = ["| transport | connections | " + " | ".join(f"{b} B/conn" for b in brokers) + " |",
        "|---|---|" + "---|" * len(brokers)]
for t in ["tcp", "tls", "mtls"]:
    for n in sorted({r["requested"] for r in runs if r["transport"] == t}):
        cells = []
        for b in brokers:
            rs = [r for r in runs if r["transport"] == t and r["broker"] == b and r["requested"] == n]
            v = rs[0].get("rss_kb_per_conn") if rs else None
            failed = rs[0].get("drops", 0) if rs else 0
            cell = "–" if v is None else f"{v * 1024:,.0f}"
            cells.append(cell + (f" ({failed} failed)" if failed else ""))
        rows.append(f"| {t} | {n:,} | " + " | ".join(cells) + " |")
table = "\n".join(rows)
print(table)
begin, end = "<!-- idle-memory:begin -->", "<!-- idle-memory:end -->"
text = open(doc).read()
if begin in text and end in text:
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    text = f"{head}{begin}\n\nWarden at {commit}; `bench/idle-memory.sh`, one fresh broker process per cell.\n\n{table}\n\n{end}{tail}"
    open(doc, "w").write(text)
PY
