#!/usr/bin/env bash
# Sourced by compare.sh: writes the configs, users and ACLs of each broker
# under $WORK. Warden's store is filled through its CLI only.
#
# Rule set (~1,000 rules in Warden's store, the same in Mosquitto's ACL file):
#   role benchers: publish bench/${username}/#      (per-user placeholder)
#   role benchers: subscribe,receive bench/+/t      (role rule, wildcard)
#   role benchers: deny publish bench/+/admin/#
#   role benchers: 20 × subscribe,receive fleet/N/+/telemetry
#   everyone:      publish,subscribe,receive load/#
#   user benchN:   publish,subscribe,receive bench/benchN/private/#  (each bench user)
#   roles team0-9: publish,subscribe,receive sensors/devN/#          (filler up to 1,000;
#                  no bench user is a member; Mosquitto: per-user lines of devN)

log() { echo "[$(date +%T)] $*" >&2; }

wait_port() { # port [tries of 0.1 s]
    local i
    for ((i = 0; i < ${2:-100}; i++)); do
        (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "port $1 did not open" >&2
    return 1
}

# The QoS 1 window toward a subscriber (messages in flight, unacknowledged)
# is the same on Warden, Mosquitto and FlashMQ: 65,535. FlashMQ has no knob
# of its own for it: toward an MQTT 3.1.1 client its window is
# max_qos_msg_pending_per_client (65,535 below, its most), so Warden's
# receive_maximum and Mosquitto's max_inflight_messages match it. (With
# 1,000 on Warden and Mosquitto, FlashMQ alone kept 65 times as many
# messages in flight to the fan-in subscriber.)
WINDOW=65535

warden_config() { # dir plain tls [allow_anonymous]
    local dir=$1
    mkdir -p "$dir"
    cat >"$dir/w.yaml" <<EOF
data_dir: ./data
listeners:
  - { name: plain, kind: tcp, bind: "127.0.0.1:$2", max_connections: 200000 }
  - { name: tls, kind: tls, bind: "127.0.0.1:$3", max_connections: 200000 }
limits: { max_queued_messages: 100000, receive_maximum: $WINDOW }
log: { level: warn }
auth: { allow_anonymous: ${4:-false} }
EOF
}

# Adds the mTLS listener once the dev CA exists (the first CLI call makes it).
warden_add_mtls() { # dir port
    local certs=$1/data/certs
    python3 - "$1/w.yaml" "$2" "$certs" <<'PY'
import sys
path, port, certs = sys.argv[1:]
lines = open(path).read().splitlines()
i = lines.index("listeners:")
lines.insert(i + 1, f'  - {{ name: mtls, kind: tls, bind: "127.0.0.1:{port}", client_auth: required, '
             f'client_ca: {certs}/ca.pem, username_from: cn, cert: {certs}/server.pem, '
             f'key: {certs}/server.key, max_connections: 200000 }}')
open(path, "w").write("\n".join(lines) + "\n")
PY
}

warden_users() { # dir
    local w="$WARDEN -c $1/w.yaml" i
    for ((i = 0; i < USERS; i++)); do
        echo "$PASSWORD" | $w user add "bench$i" --password-stdin --role benchers >/dev/null
    done
}

warden_rules() { # dir
    local w="$WARDEN -c $1/w.yaml" i n=0
    $w acl add --role benchers --allow publish 'bench/${username}/#' >/dev/null
    $w acl add --role benchers --allow subscribe,receive 'bench/+/t' >/dev/null
    $w acl add --role benchers --deny publish 'bench/+/admin/#' >/dev/null
    $w acl add --everyone --allow publish,subscribe,receive 'load/#' >/dev/null
    n=4
    for ((i = 0; i < 20; i++, n++)); do
        $w acl add --role benchers --allow subscribe,receive "fleet/$i/+/telemetry" >/dev/null
    done
    for ((i = 0; i < USERS; i++, n++)); do
        $w acl add --user "bench$i" --allow publish,subscribe,receive "bench/bench$i/private/#" >/dev/null
    done
    for ((i = 0; i < 10; i++)); do $w role add "team$i" >/dev/null; done
    for ((i = 0; n < RULES; i++, n++)); do
        $w acl add --role "team$((i % 10))" --allow publish,subscribe,receive "sensors/dev$i/#" >/dev/null
    done
}

mosquitto_config() { # dir plain tls mtls certs
    local dir=$1 certs=$5 i n=0
    mkdir -p "$dir"
    : >"$dir/pw"
    for ((i = 0; i < USERS; i++)); do mosquitto_passwd -b "$dir/pw" "bench$i" "$PASSWORD"; done
    {
        echo 'pattern write bench/%u/#'
        echo 'pattern read bench/+/t'
        echo 'pattern deny bench/+/admin/#'
        echo 'pattern readwrite load/#'
        n=4
        for ((i = 0; i < 20; i++, n++)); do echo "pattern read fleet/$i/+/telemetry"; done
        for ((i = 0; i < USERS; i++, n++)); do printf 'user bench%d\ntopic readwrite bench/bench%d/private/#\n' $i $i; done
        for ((i = 0; n < RULES; i++, n++)); do printf 'user dev%d\ntopic readwrite sensors/dev%d/#\n' $i $i; done
    } >"$dir/acl"
    cat >"$dir/m.conf" <<EOF
per_listener_settings false
# Read the files in the 0700 work dir when started as root (no privilege drop).
user $(id -un)
allow_anonymous false
password_file $dir/pw
acl_file $dir/acl
persistence false
log_dest none
max_queued_messages 100000
max_inflight_messages $WINDOW
max_connections -1
listener $2 127.0.0.1
listener $3 127.0.0.1
certfile $certs/server.pem
keyfile $certs/server.key
listener $4 127.0.0.1
cafile $certs/ca.pem
certfile $certs/server.pem
keyfile $certs/server.key
require_certificate true
use_identity_as_username true
EOF
}

# FlashMQ reads Mosquitto's password and ACL files as they are (the same
# users, hashes and rules as Mosquitto). Its own defaults would make the
# comparison unfair or lossy, so:
# - tcp_nodelay on every listener (Warden and Mosquitto set TCP_NODELAY);
# - client_max_write_buffer_size 1 GiB: a QoS 0 packet that does not fit a
#   subscriber's write buffer (1 MiB by default) is dropped, and FlashMQ does
#   not slow publishers down for a subscriber that is behind, so the fan-in
#   subscriber's backlog (8 publishers; several hundred MB in a 10 s run)
#   must fit (64 MiB still dropped 79% in a 2 s run; 1 GiB dropped none);
# - max_qos_msg/bytes_pending_per_client: QoS 1 queued beyond the window is
#   kept up to 65,535 messages (its most; Warden and Mosquitto keep 100,000), not
#   512 messages / 64 KiB;
# - rlimit_nofile: the hard limit it can actually get (it asks 1,000,000).
# mTLS takes the username from the certificate's CN without a password, as
# Mosquitto's use_identity_as_username does. No storage_dir: no persistence.
flashmq_config() { # dir plain tls mtls certs mosquitto_dir
    local dir=$1 certs=$5 mq=$6
    mkdir -p "$dir"
    local tls="  fullchain $certs/server.pem
  privkey $certs/server.key"
    cat >"$dir/f.conf" <<EOF
allow_anonymous false
mosquitto_password_file $mq/pw
mosquitto_acl_file $mq/acl
log_level error
rlimit_nofile $(ulimit -Hn)
client_max_write_buffer_size 1073741824
max_qos_msg_pending_per_client 65535
max_qos_bytes_pending_per_client 67108864
listen {
  protocol mqtt
  inet_protocol ip4
  inet4_bind_address 127.0.0.1
  port $2
  tcp_nodelay true
}
listen {
  protocol mqtt
  inet_protocol ip4
  inet4_bind_address 127.0.0.1
  port $3
$tls
  tcp_nodelay true
}
listen {
  protocol mqtt
  inet_protocol ip4
  inet4_bind_address 127.0.0.1
  port $4
$tls
  client_verification_ca_file $certs/ca.pem
  tcp_nodelay true
}
EOF
}

# rumqttd is built from bench/rumqttd (its library behind a small main, with
# a lockfile that compiles on current rustc) into target/rumqttd on first use.
# Sets RUMQTTD to the binary, or to nothing when it cannot be built; RUMQTTD
# set beforehand (a path, or "" to leave rumqttd out) is kept.
ensure_rumqttd() {
    [[ -n ${RUMQTTD+set} ]] && return 0
    local dir=$ROOT/target/rumqttd
    RUMQTTD=$dir/release/rumqttd
    # Skipped under NO_BUILD once built; otherwise cargo finds it up to date.
    [[ -n ${NO_BUILD:-} && -x $RUMQTTD ]] && return 0
    log "building rumqttd from bench/rumqttd (~5 min the first time)"
    if ! (cd "$ROOT/bench/rumqttd" && CARGO_TARGET_DIR=$dir cargo build --release --locked); then
        log "rumqttd did not build; comparing without it"
        RUMQTTD=
    fi
}

# No auth, no ACL (rumqttd 0.20 has a plain-text password map but no ACL).
# Only an MQTT 3.1.1 listener ([v4.1]), the protocol warden-bench speaks;
# rumqttd refuses keep-alive 0, so compare.sh sends one. Limits, as
# rumqttd 0.20 applies them:
# - every publish is appended to an in-memory log per subscribed filter and
#   read from there, so QoS 0 and QoS 1 wait for slow subscribers instead of
#   being dropped, until a subscriber falls max_segment_size ×
#   max_segment_count (~1 GiB, rumqttd's default) behind. The log keeps
#   delivered messages too, up to that size per filter (~350 B of RSS per
#   64-byte message measured), several GiB by the end of a full compare.sh;
# - max_outgoing_packet_count is how many QoS 0 messages one read of the log
#   hands a connection; the QoS 1 window to a subscriber is fixed at 100;
# - max_inflight_count is how many incoming packets are read in one batch.
# next_connection_delay_ms = 0 is the least; rumqttd's accept loop still
# sleeps that long after each accept, a tokio timer of >= 1 ms, which caps
# its connects near 1,000/s.
rumqttd_config() { # dir plain
    mkdir -p "$1"
    cat >"$1/r.toml" <<EOF
id = 0
[router]
max_connections = 200000
max_outgoing_packet_count = 1000
max_segment_size = 104857600
max_segment_count = 10

[v4.1]
name = "v4-1"
listen = "127.0.0.1:$2"
next_connection_delay_ms = 0
    [v4.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = 20480
    max_inflight_count = 1000
    dynamic_filters = true
EOF
}
