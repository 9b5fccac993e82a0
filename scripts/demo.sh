#!/usr/bin/env bash
# The main job on a fresh machine: a local ZooKeeper, a 3-service meta2
# cluster on 127.0.0.1:6015/6017/6018, one container (myaccount/FVE0, the
# seed's), and each peer's election status.
#
#   scripts/demo.sh          start everything and show the election
#   scripts/demo.sh stop     stop what this script started (by PID)
#
# State: ${DEMO_DIR:-/tmp/oio-election-demo} (data, logs, pids).
set -euo pipefail
cd "$(dirname "$0")/.."
DEMO_DIR=${DEMO_DIR:-/tmp/oio-election-demo}
ZK_PORT=${ZK_PORT:-2181}
PORTS=(6015 6017 6018)
export ZK_DIR="$DEMO_DIR/zk"

stop_all() {
    for p in "${PORTS[@]}"; do
        if [[ -f $DEMO_DIR/$p.pid ]]; then
            kill -TERM "$(cat "$DEMO_DIR/$p.pid")" 2>/dev/null || true
            rm -f "$DEMO_DIR/$p.pid"
        fi
    done
    sleep 1
    scripts/zk.sh stop
}

if [[ ${1:-} == stop ]]; then stop_all; exit 0; fi

if ! command -v cargo >/dev/null; then
    echo "cargo is missing: install a Rust toolchain (rustup) first" >&2
    exit 1
fi
echo "==> building (first time: a few minutes)"
cargo build --bins -q

echo "==> ZooKeeper on 127.0.0.1:$ZK_PORT"
mkdir -p "$DEMO_DIR"
scripts/zk.sh start "$ZK_PORT"

echo "==> 3 election-server processes"
for p in "${PORTS[@]}"; do
    if [[ -f $DEMO_DIR/$p.pid ]] && kill -0 "$(cat "$DEMO_DIR/$p.pid")" 2>/dev/null; then
        echo "    127.0.0.1:$p already running (pid $(cat "$DEMO_DIR/$p.pid"))"
        continue
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
        echo "port $p is already in use by another program; stop it or edit PORTS in $0" >&2
        exit 1
    fi
    nohup target/debug/election-server --ns OPENIO --type meta2 --listen "127.0.0.1:$p" \
        --zk "127.0.0.1:$ZK_PORT" --data-dir "$DEMO_DIR/$p" --session-timeout-ms 6000 \
        >"$DEMO_DIR/$p.log" 2>&1 &
    echo $! >"$DEMO_DIR/$p.pid"
    for _ in $(seq 1 100); do
        curl -sf "http://127.0.0.1:$p/v1/ping" >/dev/null && break
        sleep 0.1
    done
    curl -sf "http://127.0.0.1:$p/v1/ping" >/dev/null || { echo "127.0.0.1:$p did not start; see $DEMO_DIR/$p.log" >&2; exit 1; }
    echo "    127.0.0.1:$p up (pid $(cat "$DEMO_DIR/$p.pid"), log $DEMO_DIR/$p.log)"
done

export OIO_NS=OPENIO OIO_ACCOUNT=myaccount OIO_ZOOKEEPER="127.0.0.1:$ZK_PORT"
OPENIO=target/debug/openio
echo "==> openio container create FVE0"
$OPENIO container create FVE0

echo "==> openio election status meta2 FVE0"
$OPENIO election status meta2 FVE0

echo "==> openio election status meta2 FVE0 --long"
$OPENIO election status meta2 FVE0 --long

echo "==> openio election debug meta2 FVE0 --human"
$OPENIO election debug meta2 FVE0 --human

echo "==> the same status through OpenIO's proxy API, as the real Python openio CLI asks it"
echo "    (openio --ns OPENIO --oio-proxy 127.0.0.1:${PORTS[0]} -a myaccount election status meta2 FVE0)"
curl -sf -X POST -H 'x-oio-timeout: 29700000' -H 'x-oio-req-id: demo-proxy-status' \
    "http://127.0.0.1:${PORTS[0]}/v3.0/OPENIO/admin/status?type=meta2&acct=myaccount&ref=FVE0"
echo

cat <<HELP

The cluster keeps running. With OIO_ACCOUNT=myaccount OIO_ZOOKEEPER=127.0.0.1:$ZK_PORT set:
  $OPENIO election leave meta2 FVE0 --service-id <the 200 peer>   # hand mastership over
  $OPENIO election history meta2 FVE0                             # every peer's transitions, merged
  $OPENIO election check meta2 FVE0                               # directory vs ZooKeeper nodes
  kill -9 \$(cat $DEMO_DIR/6017.pid); $OPENIO election status meta2 FVE0 -t 5
Stop everything with: scripts/demo.sh stop
HELP
