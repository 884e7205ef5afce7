# shellcheck shell=bash
# Sourced by the installer tests (test-install-command.sh, test-install-rauc.sh)
# after tap.sh: a private bus, a broker, iv-ota-cloud and the agent, all
# tracked by PID in $pids and ended by cleanup_processes (the caller's trap).
# Env: IV_OTAD, IV_OTA_CLOUD.

pids=()

cleanup_processes() {
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  pids=()
}

bail() {
  echo "Bail out! $*"
  failures=$((failures + 1)) # keeps the files for the reader
  for log in "$tmp"/*.log "$tmp"/*/*.log; do
    [ -f "$log" ] || continue
    echo "# --- $log"
    tail -n 25 "$log" | sed 's/^/# /'
  done
  exit 1
}

port_is_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# start_bus_and_broker: a private session bus open to everyone, and mosquitto
# on a free loopback port ($broker_port).
start_bus_and_broker() {
  local port pid
  start_private_bus "$tmp" '  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
  </policy>'
  local ok=$?
  pids+=("$bus_pid")
  [ "$ok" -eq 0 ] || bail "dbus-daemon did not start"
  broker_port=
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    port=$((20000 + RANDOM % 40000))
    port_is_open "$port" && continue
    printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nuser root\n' "$port" >"$tmp/mosquitto.conf"
    "$(command -v mosquitto || echo /usr/sbin/mosquitto)" -c "$tmp/mosquitto.conf" >"$tmp/mosquitto.log" 2>&1 &
    pid=$!
    if wait_for port_is_open "$port"; then pids+=("$pid"); broker_port=$port; return 0; fi
    kill "$pid" 2>/dev/null
  done
  bail "cannot start mosquitto"
}

# start_cloud DIR MODULE VERSION IMAGE [ARGS...]: iv-ota-cloud offering IMAGE
# as VERSION to MODULE; reports in DIR/cloud.out (one JSON line each).
start_cloud() {
  local dir=$1 module=$2 version=$3 image=$4
  shift 4
  rm -f "$dir/cloud.ready"
  "${ours[@]}" "$IV_OTA_CLOUD" --product=PROD --device=dev1 --port="$broker_port" --version="$version" --module="$module" \
    --firmware="$image" --ready-file="$dir/cloud.ready" "$@" >"$dir/cloud.out" 2>"$dir/cloud.log" &
  cloud_pid=$!
  pids+=("$cloud_pid")
  wait_for test -s "$dir/cloud.ready" || bail "iv-ota-cloud did not start in $dir"
}

stop_pid() { # stop_pid PID: TERM, then wait for it
  kill -TERM "$1" 2>/dev/null
  wait_for sh -c "! kill -0 $1 2>/dev/null" || kill -KILL "$1" 2>/dev/null
  wait "$1" 2>/dev/null
  return 0
}

# write_agent_config DIR TEXT: DIR/iv-otad.conf for the broker, with TEXT
# appended (the [install...] groups); state in DIR/state.
write_agent_config() {
  cat >"$1/iv-otad.conf" <<EOF
[mqtt]
port=$broker_port
[device]
product_id=PROD
device_name=dev1
[ota]
state_dir=$1/state
require_https=false
retry_interval=1
$2
EOF
}

# start_agent DIR: iv-otad with DIR/iv-otad.conf, log appended to DIR/iv-otad.log.
start_agent() {
  "${ours[@]}" "$IV_OTAD" --config "$1/iv-otad.conf" --bus session >>"$1/iv-otad.log" 2>&1 &
  agent_pid=$!
  pids+=("$agent_pid")
  wait_for gdbus_name_owned || bail "the agent did not take its bus name (see $1/iv-otad.log)"
}

gdbus_name_owned() {
  gdbus call --session --dest org.freedesktop.DBus --object-path /org/freedesktop/DBus \
    --method org.freedesktop.DBus.NameHasOwner org.iv.Ota 2>/dev/null | grep -q true
}

stop_agent() { stop_pid "$agent_pid"; }

kill_agent() {
  kill -KILL "$agent_pid" 2>/dev/null
  wait "$agent_pid" 2>/dev/null
  wait_for sh -c '! gdbus call --session --dest org.freedesktop.DBus --object-path /org/freedesktop/DBus \
    --method org.freedesktop.DBus.NameHasOwner org.iv.Ota 2>/dev/null | grep -q true'
}

# status MODULE KEY: a value of GetStatus(MODULE), as gdbus prints it.
status() {
  gdbus call --session --dest org.iv.Ota --object-path /org/iv/Ota --method org.iv.Ota.GetStatus "$1" 2>&1 |
    grep -o "'$2': <[^>]*>" | sed "s/^'$2': <//; s/>\$//"
}

status_is() { [ "$(status "$1" "$2")" = "$3" ]; }

# reports DIR STATE: how many report_progress of STATE the cloud received.
reports() { grep -c "\"state\":\"$2\"" "$1/cloud.out"; }
has_report() { grep -q "$2" "$1/cloud.out"; }
