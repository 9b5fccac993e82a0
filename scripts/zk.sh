#!/usr/bin/env bash
# Local ZooKeeper for the demo and for development: install, start, stop, status.
#
#   scripts/zk.sh install            install Debian's zookeeper package (root, apt-get)
#   scripts/zk.sh start [PORT]       start a standalone server on 127.0.0.1:PORT (default 2181)
#   scripts/zk.sh stop               stop the server this script started (by PID)
#   scripts/zk.sh status             print the server's `srvr` answer
#
# State lives in ${ZK_DIR:-/tmp/oio-election-zk} (data, logs, pid). tickTime is
# ${ZK_TICK_MS:-2000}; the heap is capped (-Xmx256m): never run it without -Xmx.
set -euo pipefail

ZK_DIR=${ZK_DIR:-/tmp/oio-election-zk}
ZK_PORT=${2:-${ZK_PORT:-2181}}
ZK_TICK_MS=${ZK_TICK_MS:-2000}
JAR=/usr/share/java/zookeeper.jar

have_zk() { [[ -f $JAR ]] && command -v java >/dev/null; }

install_zk() {
    if have_zk; then return 0; fi
    if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
        echo "ZooKeeper is missing. Install Debian's package as root: apt-get update && apt-get install -y zookeeper" >&2
        exit 1
    fi
    echo "installing ZooKeeper (Debian package 'zookeeper')..." >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q zookeeper >/dev/null
    have_zk || { echo "zookeeper package installed but $JAR or java is missing" >&2; exit 1; }
}

srvr() { # host port -> prints the srvr answer, fails when unreachable
    exec 3<>"/dev/tcp/$1/$2" || return 1
    printf srvr >&3
    timeout 2 cat <&3 || true
    exec 3<&- 3>&-
}

start_zk() {
    install_zk
    if [[ -f $ZK_DIR/pid ]] && kill -0 "$(cat "$ZK_DIR/pid")" 2>/dev/null; then
        echo "ZooKeeper already running (pid $(cat "$ZK_DIR/pid"), port $(cat "$ZK_DIR/port"))"
        return 0
    fi
    mkdir -p "$ZK_DIR/data"
    cat >"$ZK_DIR/zoo.cfg" <<CFG
tickTime=$ZK_TICK_MS
dataDir=$ZK_DIR/data
clientPort=$ZK_PORT
clientPortAddress=127.0.0.1
admin.enableServer=false
4lw.commands.whitelist=ruok,srvr,stat,mntr,conf,cons,envi
maxClientCnxns=0
CFG
    local cp=/etc/zookeeper/conf:$JAR:/usr/share/java/slf4j-log4j12.jar:/usr/share/java/log4j-1.2.jar
    nohup java -Xmx256m -Dzookeeper.root.logger=INFO,CONSOLE -Dzookeeper.log.dir="$ZK_DIR" -cp "$cp" \
        org.apache.zookeeper.server.ZooKeeperServerMain "$ZK_DIR/zoo.cfg" >"$ZK_DIR/out.log" 2>&1 &
    echo $! >"$ZK_DIR/pid"
    echo "$ZK_PORT" >"$ZK_DIR/port"
    for _ in $(seq 1 150); do
        # Readiness is `srvr` showing Mode:, not `ruok`.
        if srvr 127.0.0.1 "$ZK_PORT" 2>/dev/null | grep -q '^Mode:'; then
            echo "ZooKeeper ready on 127.0.0.1:$ZK_PORT (pid $(cat "$ZK_DIR/pid"))"
            return 0
        fi
        sleep 0.1
    done
    echo "ZooKeeper did not become ready on port $ZK_PORT; see $ZK_DIR/out.log" >&2
    exit 1
}

stop_zk() {
    [[ -f $ZK_DIR/pid ]] || { echo "no ZooKeeper started by this script"; return 0; }
    local pid; pid=$(cat "$ZK_DIR/pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$ZK_DIR/pid"
    echo "ZooKeeper stopped"
}

case ${1:-} in
    install) install_zk ;;
    start) start_zk ;;
    stop) stop_zk ;;
    status) srvr 127.0.0.1 "$(cat "$ZK_DIR/port" 2>/dev/null || echo "$ZK_PORT")" || { echo "ZooKeeper not reachable"; exit 1; } ;;
    *) sed -n '2,10p' "$0"; exit 2 ;;
esac
