#!/usr/bin/env bash
# A local Shale cluster on loopback: N nodes, each a broker and a controller voter.
#
#   scripts/cluster.sh start N    start nodes 1..N on free ports (builds shale if needed)
#   scripts/cluster.sh status     each node: pid, running or not, Kafka and controller address
#   scripts/cluster.sh stop       SIGTERM every node, SIGKILL after 30 s
#
# State lives in $SHALE_CLUSTER_DIR (default ./.cluster): node-<id>/data, node-<id>/shale.log,
# node-<id>/pid and cluster.env (the ports, and BOOTSTRAP for clients). Other SHALE_*
# variables (e.g. SHALE_REMOTE_STORAGE_URL) are passed to every node. The binary is $SHALE_BIN,
# or target/debug/shale (built with cargo if missing).
#
# A node is started with --node-id, --listen, --controller-listen and
# --controller-quorum-voters, the same voter list on every node; a majority of them must run
# for the cluster to accept metadata changes.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
dir=${SHALE_CLUSTER_DIR:-$repo/.cluster}
env_file=$dir/cluster.env

die() { echo "cluster.sh: $*" >&2; exit 1; }

free_ports() { # N distinct free TCP ports on 127.0.0.1
    python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

running() { [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null; }

binary() {
    if [[ -n "${SHALE_BIN:-}" ]]; then
        echo "$SHALE_BIN"
        return
    fi
    local bin=$repo/target/debug/shale
    if [[ ! -x $bin ]]; then
        echo "cluster.sh: building shale (cargo build -p shale-broker)" >&2
        (cd "$repo" && cargo build -q -p shale-broker) >&2
    fi
    echo "$bin"
}

start() {
    local n=${1:-3}
    [[ $n =~ ^[1-9][0-9]*$ ]] || die "start N: N must be a positive number, got '$n'"
    if [[ -f $env_file ]]; then
        # shellcheck disable=SC1090
        source "$env_file"
        for id in $(seq 1 "$NODES"); do
            if running "$(cat "$dir/node-$id/pid" 2>/dev/null)"; then
                die "a cluster is already running in $dir (scripts/cluster.sh stop first)"
            fi
        done
    fi
    local bin
    bin=$(binary)
    mkdir -p "$dir"
    read -r -a ports <<<"$(free_ports $((2 * n)))"
    local voters="" bootstrap=""
    for id in $(seq 1 "$n"); do
        voters+="${voters:+,}$id@127.0.0.1:${ports[$((2 * id - 1))]}"
        bootstrap+="${bootstrap:+,}127.0.0.1:${ports[$((2 * id - 2))]}"
    done
    {
        echo "NODES=$n"
        echo "VOTERS=$voters"
        echo "BOOTSTRAP=$bootstrap"
        for id in $(seq 1 "$n"); do
            echo "KAFKA_$id=127.0.0.1:${ports[$((2 * id - 2))]}"
            echo "CONTROLLER_$id=127.0.0.1:${ports[$((2 * id - 1))]}"
        done
    } >"$env_file"
    for id in $(seq 1 "$n"); do
        local node=$dir/node-$id
        mkdir -p "$node/data"
        "$bin" serve --node-id "$id" --data-dir "$node/data" \
            --listen "127.0.0.1:${ports[$((2 * id - 2))]}" \
            --controller-listen "127.0.0.1:${ports[$((2 * id - 1))]}" \
            --controller-quorum-voters "$voters" \
            </dev/null >>"$node/shale.log" 2>&1 &
        echo $! >"$node/pid"
    done
    # Ready once every node has opened its data (it waits for a quorum to do that).
    local deadline=$((SECONDS + 120))
    for id in $(seq 1 "$n"); do
        until grep -q "shale listening" "$dir/node-$id/shale.log" 2>/dev/null; do
            running "$(cat "$dir/node-$id/pid")" || die "node $id exited; see $dir/node-$id/shale.log"
            ((SECONDS < deadline)) || die "node $id did not start within 120 s; see $dir/node-$id/shale.log"
            sleep 0.2
        done
    done
    echo "started $n nodes in $dir"
    echo "bootstrap servers: $bootstrap"
}

status() {
    [[ -f $env_file ]] || die "no cluster in $dir"
    # shellcheck disable=SC1090
    source "$env_file"
    for id in $(seq 1 "$NODES"); do
        local pid kafka controller state
        pid=$(cat "$dir/node-$id/pid" 2>/dev/null || true)
        kafka=KAFKA_$id controller=CONTROLLER_$id
        if running "$pid"; then state="running (pid $pid)"; else state="stopped"; fi
        echo "node $id: $state, kafka ${!kafka}, controller ${!controller}"
    done
    echo "bootstrap servers: $BOOTSTRAP"
}

stop() {
    [[ -f $env_file ]] || die "no cluster in $dir"
    # shellcheck disable=SC1090
    source "$env_file"
    local pids=()
    for id in $(seq 1 "$NODES"); do
        local pid
        pid=$(cat "$dir/node-$id/pid" 2>/dev/null || true)
        if running "$pid"; then
            kill -TERM "$pid"
            pids+=("$pid")
        fi
    done
    local deadline=$((SECONDS + 30))
    for pid in "${pids[@]}"; do
        while running "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
        if running "$pid"; then
            echo "cluster.sh: pid $pid did not stop within 30 s; killing it" >&2
            kill -KILL "$pid" || true
        fi
    done
    echo "stopped ${#pids[@]} nodes"
}

case "${1:-}" in
start) start "${2:-3}" ;;
status) status ;;
stop) stop ;;
*) die "usage: scripts/cluster.sh start N | status | stop" ;;
esac
