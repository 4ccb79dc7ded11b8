#!/usr/bin/env bash
# The HTTP auth backend with `authorize_each` (every topic asked of the
# service, answers cached per principal, action and topic), next to the
# same service handing out rules at login:
#
# - logins cold / cached: CONNS logins at once (first: /authenticate and
#   /rules asked; again: both cached). authorize_each asks nothing more at
#   login: topics are asked when used.
# - fan-in QoS 0 (8 publishers, 1 subscriber on devices/+/t, FANIN_SECS):
#   with rules (decided locally) and with authorize_each (decided from the
#   decision cache: every topic is a hit after its first use).
# - per-publish cost, one QoS 1 client (paho), publish → PUBACK round trip:
#   the same topic again and again (a cache hit) and a new topic each time
#   (a miss: the publish waits for /authorize). The service is
#   examples/auth_service.py (Python, threaded): part of what a miss costs.
#
# usage: bench/auth-each.sh   (env: CONNS FANIN_SECS PUBS WARDEN BENCH NO_BUILD KEEP)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CONNS=${CONNS:-1000}
FANIN_SECS=${FANIN_SECS:-5}
PUBS=${PUBS:-500}
WARDEN=${WARDEN:-$ROOT/target/release/warden}
BENCH=${BENCH:-$ROOT/target/release/warden-bench}
WORK=$(mktemp -d /tmp/warden-auth-each.XXXXXX)
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

service() { # port extra-args...
    local port=$1
    shift
    python3 - "$ROOT/examples" "$CONNS" "$port" "$@" >>"$WORK/service.log" 2>&1 <<'PY' &
import sys
sys.path.insert(0, sys.argv[1])
import auth_service as s
s.USERS.update({f"bench{i}": ("secret", ["staff"]) for i in range(int(sys.argv[2]))})
sys.argv = ["auth_service", "--port", sys.argv[3]] + sys.argv[4:]
s.main()
PY
    SVC=$!
    wait_port "$port"
}

start() { # dir auth-yaml
    mkdir -p "$1"
    cat >"$1/w.yaml" <<CFG
data_dir: ./data
listeners:
  - { name: tcp, kind: tcp, bind: "127.0.0.1:28883", max_connections: 200000, connect_timeout: 30s }
persistence: { mode: none }
log: { level: warn }
auth: $2
CFG
    (cd "$1" && exec "$WARDEN" -c w.yaml serve >>serve.log 2>&1) &
    PID=$!
    wait_port 28883
}

stop() {
    kill "$PID" "$SVC" 2>/dev/null || true
    wait "$PID" "$SVC" 2>/dev/null || true
    PID= SVC=
}

row() { # label json
    echo "$1 $2" >>"$WORK/results.txt"
    log "$1 $(echo "$2" | cut -c1-200)"
}

logins() { # label
    row "$1" "$("$BENCH" logins --label "$1" --port 28883 --broker-pid "$PID" --conns "$CONNS" \
        --users "$CONNS" --password secret --client-prefix h 2>>"$WORK/bench.err")"
}

fanin() { # label
    row "$1" "$("$BENCH" fanin --label "$1" --port 28883 --broker-pid "$PID" --user-prefix bench \
        --users 9 --password secret --topic 'devices/{user}/t' --filter 'devices/+/t' --qos 0 \
        --secs "$FANIN_SECS" 2>>"$WORK/bench.err")"
}

publishes() { # label
    row "$1" "$(python3 - "$PUBS" <<'PY'
import json, sys, time, threading
import paho.mqtt.client as mqtt
n = int(sys.argv[1])
acked = threading.Event()
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="pubcost", protocol=mqtt.MQTTv5)
c.username_pw_set("bench0", "secret")
c.on_publish = lambda *a: acked.set()
c.connect("127.0.0.1", 28883)
c.loop_start()
time.sleep(0.5)
def run(topic_of):
    times = []
    for i in range(n):
        acked.clear()
        t = time.perf_counter()
        c.publish(topic_of(i), b"x", qos=1)
        acked.wait(10)
        times.append(time.perf_counter() - t)
    times.sort()
    return {"mean_us": round(sum(times) / n * 1e6), "p50_us": round(times[n // 2] * 1e6),
            "p99_us": round(times[n * 99 // 100] * 1e6)}
run(lambda i: "devices/bench0/t")  # warm
out = {"hit": run(lambda i: "devices/bench0/t"), "miss": run(lambda i: f"devices/bench0/n{i}")}
c.disconnect()
print(json.dumps(out))
PY
)"
}

service 28980
start "$WORK/rules" '{ http: { url: "http://127.0.0.1:28980", timeout: 10s, max_connections: 64 }, chain: [http] }'
logins rules-logins-cold
logins rules-logins-cached
fanin rules-fanin
publishes rules-publish
stop

service 28981 --authorize-each
start "$WORK/each" '{ http: { url: "http://127.0.0.1:28981", timeout: 10s, max_connections: 64 }, chain: [http] }'
logins each-logins-cold
logins each-logins-cached
fanin each-fanin
publishes each-publish
stop

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$WORK/results.txt"
cat "$WORK/results.txt"
cp "$WORK/results.txt" "$ROOT/bench/last-auth-each.txt"
