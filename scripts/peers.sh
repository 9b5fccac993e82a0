#!/usr/bin/env bash
# Peer baselines: kazoo's Election and Curator's LeaderLatch measured the same way as
# our service (see bench/peers/). Each run prints one JSON object on stdout; logs go to stderr.
#
#   scripts/peers.sh install                 apt-get install python3-kazoo, libcurator-recipes-java
#                                            (and a JDK if javac is missing); root only, skips what is there
#   scripts/peers.sh build                   compile bench/peers/CuratorBench.java into target/peers/
#   scripts/peers.sh kazoo   --hosts H [..]  run the kazoo program (Debian's /usr/bin/python3)
#   scripts/peers.sh curator --hosts H [..]  run the Curator program (builds first if needed; -Xmx256m)
#
# Program options: --hosts 127.0.0.1:PORT (required) --warmup 20 --reps 200
#                  --root /bench-<unique> (default: generated) --crash N (off by default)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT_DIR=$PWD
SRC=$ROOT_DIR/bench/peers
OUT=$ROOT_DIR/target/peers
PY=/usr/bin/python3
J=/usr/share/java
# Jars named here are required; zookeeper.jar's manifest Class-Path brings netty, jute, etc.
JARS=(curator-client curator-framework curator-recipes zookeeper zookeeper-jute guava slf4j-api slf4j-simple)
OPT_JARS=(failureaccess)

die() { echo "peers.sh: error: $*" >&2; exit 1; }

have_kazoo() { [[ -x $PY ]] && "$PY" -c 'import kazoo' 2>/dev/null; }
have_curator() { [[ -f $J/curator-recipes.jar && -f $J/curator-framework.jar && -f $J/curator-client.jar ]]; }
have_javac() { command -v javac >/dev/null 2>&1; }

install_peers() {
    local pkgs=()
    have_kazoo || pkgs+=(python3-kazoo)
    have_curator || pkgs+=(libcurator-recipes-java)
    [[ -f $J/zookeeper.jar ]] || pkgs+=(libzookeeper-java)
    [[ -f $J/slf4j-simple.jar ]] || pkgs+=(libslf4j-java)
    have_javac || pkgs+=(default-jdk-headless)
    if [[ ${#pkgs[@]} -eq 0 ]]; then
        echo "peers.sh: everything already installed" >&2
        return 0
    fi
    [[ $(id -u) -eq 0 ]] || die "missing packages (${pkgs[*]}); run as root: apt-get update && apt-get install -y ${pkgs[*]}"
    command -v apt-get >/dev/null || die "apt-get not found; install ${pkgs[*]} by hand"
    echo "peers.sh: installing ${pkgs[*]}..." >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${pkgs[@]}" >/dev/null
    have_kazoo || die "python3-kazoo installed but '$PY -c \"import kazoo\"' fails"
    have_curator || die "libcurator-recipes-java installed but the curator jars are not in $J"
    have_javac || die "javac still missing after installing default-jdk-headless"
    echo "peers.sh: install done" >&2
}

classpath() {
    local cp="" j
    for j in "${JARS[@]}"; do
        [[ -f $J/$j.jar ]] || die "missing $J/$j.jar (run: scripts/peers.sh install)"
        cp+="$J/$j.jar:"
    done
    for j in "${OPT_JARS[@]}"; do
        [[ -f $J/$j.jar ]] && cp+="$J/$j.jar:"
    done
    echo "${cp%:}"
}

build_curator() {
    have_javac || die "javac not found (run: scripts/peers.sh install)"
    have_curator || die "Curator jars missing in $J (run: scripts/peers.sh install)"
    local cp; cp=$(classpath)
    mkdir -p "$OUT"
    echo "peers.sh: compiling $SRC/CuratorBench.java -> $OUT" >&2
    javac -nowarn -d "$OUT" -cp "$cp" "$SRC/CuratorBench.java" || die "javac failed"
}

needs_build() {
    [[ ! -f $OUT/CuratorBench.class ]] || [[ $SRC/CuratorBench.java -nt $OUT/CuratorBench.class ]]
}

run_kazoo() {
    have_kazoo || die "kazoo not importable by $PY (run: scripts/peers.sh install)"
    exec "$PY" "$SRC/kazoo_bench.py" "$@"
}

run_curator() {
    if needs_build; then build_curator; fi
    local cp; cp=$(classpath)
    # The crash child is started by the program itself with the same java and classpath.
    exec java -Xmx256m -Dorg.slf4j.simpleLogger.defaultLogLevel=warn \
        -Dorg.slf4j.simpleLogger.logFile=System.err \
        -Dorg.slf4j.simpleLogger.log.org.apache.zookeeper.ClientCnxn=error \
        -cp "$OUT:$cp" CuratorBench "$@"
}

cmd=${1:-}
[[ $# -gt 0 ]] && shift
case $cmd in
    install) install_peers ;;
    build) build_curator ;;
    kazoo) run_kazoo "$@" ;;
    curator) run_curator "$@" ;;
    *) sed -n '2,12p' "$0" >&2; exit 2 ;;
esac
