#!/usr/bin/env bash
# Sourced by persist.sh: the restart-time and disk-size measurements, on
# brokers of their own (anonymous, plain TCP, one allow-all rule, so that
# no argon2 verify is paid per session):
#   Warden 26883 (restart), 27883 (disk); Mosquitto 30883 (restart), 30983 (disk).

RESUME_TIMEOUT=${RESUME_TIMEOUT:-60}

# Anonymous Warden with one listener and everyone allowed on '#'.
warden_open() { # dir port mode
    warden_config "$1" "$2" "$(($2 + 1))" true
    sed -i '/name: tls/d' "$1/w.yaml"
    set_persistence "$1" "$3" info
    "$WARDEN" -c "$1/w.yaml" acl add --everyone --allow publish,subscribe,receive '#' >/dev/null
}

# Anonymous Mosquitto with persistence in DIR and compare.sh's queue limits;
# it logs to stderr (DIR/log; its stdout and file logs are buffered) so that
# "running" marks it ready. One type per log_type line: it reads one word.
mosquitto_open() { # dir port
    mkdir -p "$1"
    cat >"$1/m.conf" <<EOF
per_listener_settings false
user $(id -un)
allow_anonymous true
persistence true
persistence_location $1/
log_dest stderr
log_type error
log_type warning
log_type notice
log_type information
connection_messages false
max_queued_messages 100000
max_inflight_messages 1000
max_connections -1
listener $2 127.0.0.1
EOF
}

json_line() { # key=value ... (values that are numbers stay numbers)
    python3 -c 'import json, sys
d = {}
for kv in sys.argv[1:]:
    k, v = kv.split("=", 1)
    try:
        d[k] = int(v)
    except ValueError:
        try:
            d[k] = float(v)
        except ValueError:
            d[k] = v
print(json.dumps(d))' "$@" >>"$RESULTS"
    log "$(tail -1 "$RESULTS")"
}

# Loads $SESSIONS sessions (from 64 source addresses: each session leaves a
# client-side TIME_WAIT for 60 s; with 8, connects slowed ~10× by the third
# broker's 100k as free ports ran short), stops the broker, then restarts it $RESTARTS
# times, each time resuming another session and waiting for its message.
restart_runs() { # label dir port start-fn log-file ready-pattern
    local label=$1 dir=$2 port=$3 start=$4 logf=$5 pattern=$6 prefix pid k t0
    log "$label: $SESSIONS persistent sessions with one queued message each"
    $start "$dir"
    pid=$STARTED
    wait_port "$port" 300
    prefix=p$((RUN + 1))
    bench "$label" "$pid" "$port" offline --sessions "$SESSIONS" --per-session 1 \
        --user-prefix '' --topic 'load/r/{user}' --source-addrs 64 --concurrency 64 --window 1000
    stop_broker "$pid"
    json_line scenario=shutdown broker="$label" transport=tcp sessions="$SESSIONS" secs="$STOP_SECS"
    for ((k = 1; k <= RESTARTS; k++)); do
        : >"$logf"
        t0=$(date +%s%N)
        $start "$dir"
        pid=$STARTED
        bench "$label" "$pid" "$port" resume --client-id "$prefix-o-$k" --since-ns "$t0" \
            --ready-log "$logf" --ready-pattern "$pattern" --user-prefix '' \
            --timeout "$RESUME_TIMEOUT"
        stop_broker "$pid"
    done
}

# Bytes on disk for $QUEUED queued messages: size after one offline session
# is made (and the broker stopped), then after the messages are queued to it
# (stopped again, flushed), then after one more start and stop.
disk_runs() { # label dir port start-fn size-fn
    local label=$1 dir=$2 port=$3 start=$4 size=$5 pid before after again
    log "$label: $QUEUED queued messages of $PAYLOAD bytes, size on disk"
    $start "$dir"
    pid=$STARTED
    wait_port "$port" 300
    CP=disk bench "$label" "$pid" "$port" offline --sessions 1 --per-session 0 \
        --user-prefix '' --topic 'load/d/{user}'
    stop_broker "$pid"
    before=$($size "$dir")
    $start "$dir"
    pid=$STARTED
    wait_port "$port" 300
    CP=disk bench "$label" "$pid" "$port" offline --sessions 1 --per-session "$QUEUED" \
        --payload "$PAYLOAD" --user-prefix '' --topic 'load/d/{user}' --window 1000
    stop_broker "$pid"
    after=$($size "$dir")
    $start "$dir"
    pid=$STARTED
    wait_port "$port" 300
    sleep 1
    stop_broker "$pid"
    again=$($size "$dir")
    json_line scenario=disk broker="$label" transport=tcp msgs="$QUEUED" payload="$PAYLOAD" \
        bytes_before="$before" bytes_after="$after" bytes_after_restart="$again" \
        bytes_per_msg="$(awk -v a="$after" -v b="$before" -v n="$QUEUED" 'BEGIN { printf "%.1f", (a - b) / n }')"
}

warden_state_size() { du -sb "$1/data/state" 2>/dev/null | cut -f1 || echo 0; }
mosquitto_db_size() { stat -c %s "$1/mosquitto.db" 2>/dev/null || echo 0; }

# --- 2. restart with $SESSIONS persisted sessions --------------------------
# Periodic (the default) and sync; none keeps nothing to restart with.
for mode in ${RESTART_MODES:-periodic sync}; do
    WR=$WORK/warden-restart-$mode
    warden_open "$WR" 26883 "$mode"
    restart_runs "warden-$mode" "$WR" 26883 start_warden "$WR/serve.log" "listening on"
done
MR=$WORK/mosquitto-restart
mosquitto_open "$MR" 30883
restart_runs mosquitto-persist "$MR" 30883 start_mosquitto "$MR/log" " running"

# --- 3. disk bytes per queued message --------------------------------------
for mode in ${DISK_MODES:-periodic sync}; do
    WD=$WORK/warden-disk-$mode
    warden_open "$WD" 27883 "$mode"
    disk_runs "warden-$mode" "$WD" 27883 start_warden warden_state_size
done
MD=$WORK/mosquitto-disk
mosquitto_open "$MD" 30983
disk_runs mosquitto-persist "$MD" 30983 start_mosquitto mosquitto_db_size
