#!/usr/bin/python3
"""Peer baseline: kazoo's Election recipe on a given ZooKeeper.

Run with Debian's /usr/bin/python3 (python3-kazoo); the pyenv python3 on PATH cannot
import Debian packages. Measures, as defined in shared/reference/peer-elections.md:
raw create, elect on a fresh path, elect with the parent existing, leave-failover and
(only with --crash N) crash-failover. Three KazooClient sessions in one process, one
Election per participant, each Election.run in its own thread.

Prints ONE JSON object on stdout at the end; everything else goes to stderr.
"""

import argparse
import json
import logging
import math
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid

from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError
from kazoo.recipe.election import Election

try:
    from kazoo.version import __version__ as KAZOO_VERSION
except Exception:  # pragma: no cover
    KAZOO_VERSION = "unknown"

BLATHER = 5  # kazoo's lowest log level; carries the negotiated session timeout
WAIT_S = 30.0  # guard for every wait that should take milliseconds
NPART = 3

log = logging.getLogger("kazoo_bench")


def now_ns():
    return time.perf_counter_ns()


class BenchError(Exception):
    pass


# ---------------------------------------------------------------- sessions


class _SessionCapture(logging.Handler):
    """Picks the negotiated session timeout out of kazoo's connect log record."""

    def __init__(self):
        super().__init__(level=BLATHER)
        self.negotiated_ms = None

    def emit(self, record):
        if isinstance(record.msg, str) and record.msg.startswith("Session created"):
            try:
                self.negotiated_ms = int(record.args[2])
            except Exception:
                pass


def connect(hosts, name, timeout_s=10.0):
    """Start a KazooClient; returns (client, negotiated session timeout in ms or None)."""
    logger = logging.getLogger("kazoo.client." + name)
    cap = _SessionCapture()
    logger.addHandler(cap)
    logger.setLevel(BLATHER)
    client = KazooClient(hosts=hosts, timeout=timeout_s, logger=logger)
    try:
        client.start(timeout=15)
    except Exception as e:
        client.stop()
        raise BenchError("could not connect to %s within 15 s: %s" % (hosts, e))
    finally:
        logger.setLevel(logging.WARNING)
        logger.removeHandler(cap)
    return client, cap.negotiated_ms


# ---------------------------------------------------------------- participants


class Participant:
    """One Election contender running Election.run in its own thread.

    The leader function stamps perf_counter_ns at entry, reports to the driver's
    queue, then blocks until told to return (step down)."""

    def __init__(self, k, client, path, events):
        self.k = k
        self.election = Election(client, path, "p%d" % k)
        self.events = events  # shared queue of (k, t_entry_ns)
        self.release = threading.Event()
        self.entered_ns = None
        self.exited_ns = None
        self.error = None
        self.thread = threading.Thread(target=self._run, name="p%d" % k, daemon=True)

    def _lead(self):
        self.entered_ns = now_ns()
        self.events.put((self.k, self.entered_ns))
        self.release.wait()
        self.exited_ns = now_ns()

    def _run(self):
        try:
            self.election.run(self._lead)
        except Exception as e:  # reported by the driver
            self.error = e
            self.events.put((self.k, None))

    def start(self):
        self.thread.start()

    def step_down(self):
        self.release.set()

    def stop(self):
        """Cancel if waiting, release if leading; then join."""
        self.election.cancel()
        self.release.set()

    def join(self):
        self.thread.join(WAIT_S)
        if self.thread.is_alive():
            raise BenchError("participant p%d did not finish" % self.k)


def next_leader(events, what):
    try:
        k, t = events.get(timeout=WAIT_S)
    except queue.Empty:
        raise BenchError("no leader within %.0f s (%s)" % (WAIT_S, what))
    if t is None:
        raise BenchError("participant p%d failed (%s)" % (k, what))
    return k, t


def wait_children(client, path, n, what):
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            if len(client.get_children(path)) >= n:
                return
        except NoNodeError:
            pass
        if time.monotonic() > deadline:
            raise BenchError("%d contender znodes never appeared under %s (%s)" % (n, path, what))
        time.sleep(0.002)


def shutdown(parts, leader=None):
    """Cancel the waiting contenders first (so no one else takes over), then the leader."""
    for p in parts:
        if p.k != leader:
            p.stop()
    for p in parts:
        if p.k != leader:
            p.join()
    for p in parts:
        if p.k == leader:
            p.stop()
            p.join()


def entered(parts):
    return [p.k for p in parts if p.entered_ns is not None]


# ---------------------------------------------------------------- tests


class Bench:
    def __init__(self, args):
        self.args = args
        self.root = args.root
        self.violations = 0
        self.seq = 0
        self.clients = []
        self.session_ms = None

    def fresh_path(self, tag):
        self.seq += 1
        return "%s/%s-%06d" % (self.root, tag, self.seq)

    def violation(self, msg):
        self.violations += 1
        log.warning("SAFETY VIOLATION: %s", msg)

    def remove(self, path):
        try:
            self.clients[0].delete(path, recursive=True)
        except NoNodeError:
            pass

    # -- raw create
    def bench_create(self, warmup=200, n=1000):
        c = self.clients[0]
        base = self.fresh_path("create")
        c.create(base)
        prefix = base + "/n-"
        for _ in range(warmup):
            c.create(prefix, ephemeral=True, sequence=True)
        out = []
        for _ in range(n):
            t0 = now_ns()
            c.create(prefix, ephemeral=True, sequence=True)
            out.append(now_ns() - t0)
        self.remove(base)
        return out

    # -- elect (fresh path / parent exists)
    def elect_once(self, parent_exists):
        path = self.fresh_path("elect-parent" if parent_exists else "elect-fresh")
        if parent_exists:
            self.clients[0].create(path)
        events = queue.Queue()
        parts = [Participant(k, self.clients[k], path, events) for k in range(NPART)]
        leader = None
        try:
            t0 = now_ns()
            for p in parts:
                p.start()
            leader, t1 = next_leader(events, "elect")
            dt = t1 - t0
            # untimed safety check: all contenders queued, settle, exactly one leader
            wait_children(self.clients[0], path, NPART, "elect")
            time.sleep(0.030)
            ks = entered(parts)
            if len(ks) != 1:
                self.violation("elect on %s: %d participants entered the leader function %s"
                               % (path, len(ks), ks))
        finally:
            shutdown(parts, leader)
        self.remove(path)
        return dt

    # -- leave-failover
    def leave_once(self):
        path = self.fresh_path("leave")
        events = queue.Queue()
        parts = [Participant(k, self.clients[k], path, events) for k in range(NPART)]
        current = None
        try:
            for p in parts:
                p.start()
            first, _ = next_leader(events, "leave setup")
            current = first
            wait_children(self.clients[0], path, NPART, "leave setup")
            time.sleep(0.030)
            t0 = now_ns()
            parts[first].step_down()
            second, t1 = next_leader(events, "leave")
            current = second
            dt = t1 - t0
            parts[first].join()
            if second == first:
                self.violation("leave on %s: leadership went back to p%d" % (path, first))
            elif parts[first].exited_ns is None or t1 < parts[first].exited_ns:
                self.violation("leave on %s: p%d entered before p%d returned" % (path, second, first))
            time.sleep(0.030)
            ks = entered(parts)
            if len(ks) != 2:
                self.violation("leave on %s: %d leader-function entries %s" % (path, len(ks), ks))
        finally:
            shutdown(parts, current)
        self.remove(path)
        return dt

    # -- crash-failover (optional)
    def crash_once(self, session_s):
        path = self.fresh_path("crash")
        child = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--child", "--hosts", self.args.hosts,
             "--path", path, "--child-session", str(session_s)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=sys.stderr, text=True)
        events = queue.Queue()
        parts = []
        current = None
        negotiated = None
        try:
            line = child.stdout.readline().split()
            if not line or line[0] != "LEADER":
                raise BenchError("crash child did not become leader (got %r)" % line)
            negotiated = int(line[1]) if len(line) > 1 and line[1] != "None" else None
            parts = [Participant(k, self.clients[k], path, events) for k in (1, 2)]
            for p in parts:
                p.start()
            wait_children(self.clients[0], path, NPART, "crash setup")
            time.sleep(0.100)
            if not events.empty():
                self.violation("crash on %s: a survivor led while the child was leader" % path)
            t0 = now_ns()
            os.kill(child.pid, signal.SIGKILL)
            survivor, t1 = next_leader(events, "crash")
            current = survivor
            dt = t1 - t0
            time.sleep(0.030)
            ks = entered(parts)
            if len(ks) != 1:
                self.violation("crash on %s: %d survivors entered %s" % (path, len(ks), ks))
        finally:
            if child.poll() is None:
                child.kill()
            child.wait()
            child.stdout.close()
            child.stdin.close()
            # map participant number to list position for shutdown
            for p in parts:
                if p.k != current:
                    p.stop()
            for p in parts:
                if p.k != current:
                    p.join()
            for p in parts:
                if p.k == current:
                    p.stop()
                    p.join()
        self.remove(path)
        return dt, negotiated

    def repeat(self, name, fn):
        a = self.args
        for _ in range(a.warmup):
            fn()
        out = []
        for i in range(a.reps):
            out.append(fn())
        log.info("%s: done (%d warm-up + %d measured)", name, a.warmup, a.reps)
        return out

    def run(self):
        a = self.args
        for k in range(NPART):
            c, neg = connect(a.hosts, "s%d" % k)
            self.clients.append(c)
            if k == 0:
                self.session_ms = neg
        log.info("connected %d sessions, negotiated session timeout %s ms", NPART, self.session_ms)
        c0 = self.clients[0]
        if c0.exists(self.root):
            raise BenchError("root %s already exists; pick a unique --root" % self.root)
        c0.ensure_path(self.root)
        result = {"impl": "kazoo", "version": KAZOO_VERSION, "session_timeout_ms": self.session_ms}
        try:
            result["create"] = summary(self.bench_create(), with_max=False)
            log.info("create: %s", result["create"])
            result["elect_fresh"] = summary(self.repeat("elect_fresh", lambda: self.elect_once(False)))
            log.info("elect_fresh: %s", result["elect_fresh"])
            result["elect_parent"] = summary(self.repeat("elect_parent", lambda: self.elect_once(True)))
            log.info("elect_parent: %s", result["elect_parent"])
            result["leave_failover"] = summary(self.repeat("leave_failover", self.leave_once))
            log.info("leave_failover: %s", result["leave_failover"])
            if a.crash > 0:
                settings = []
                for req_s in (10.0, 1.0):  # kazoo default request, then 1000 ms
                    vals, neg = [], None
                    for _ in range(a.crash):
                        dt, neg = self.crash_once(req_s)
                        vals.append(dt)
                        log.info("crash (requested %d ms): %.1f ms", req_s * 1000, dt / 1e6)
                    s = summary(vals)
                    s["session_requested_ms"] = int(req_s * 1000)
                    s["session_ms"] = neg
                    settings.append(s)
                result["crash_failover"] = settings
            result["violations"] = self.violations
        finally:
            try:
                c0.delete(self.root, recursive=True)
            except Exception as e:
                log.warning("cleanup of %s failed: %s", self.root, e)
            for c in self.clients:
                try:
                    c.stop()
                    c.close()
                except Exception:
                    pass
        return result


# ---------------------------------------------------------------- stats


def nearest_rank(sorted_vals, q):
    n = len(sorted_vals)
    r = max(1, math.ceil(q * n))
    return sorted_vals[r - 1]


def summary(ns_values, with_max=True):
    v = sorted(x / 1e6 for x in ns_values)
    s = {"n": len(v), "p50": round(nearest_rank(v, 0.50), 3), "p99": round(nearest_rank(v, 0.99), 3)}
    if with_max:
        s["max"] = round(v[-1], 3)
    return s


# ---------------------------------------------------------------- crash child


def child_main(args):
    """Win the election on --path, print LEADER <negotiated ms>, sleep until killed."""
    def watch_parent():  # exit when the parent goes away (stdin closes)
        sys.stdin.read()
        os._exit(0)

    threading.Thread(target=watch_parent, daemon=True).start()
    client, neg = connect(args.hosts, "child", timeout_s=args.child_session)

    def lead():
        sys.stdout.write("LEADER %s\n" % neg)
        sys.stdout.flush()
        while True:
            time.sleep(3600)

    Election(client, args.path, "child").run(lead)
    return 1  # not reached unless cancelled


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", required=True, help="ZooKeeper connect string, e.g. 127.0.0.1:2181")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--root", default=None, help="base znode (default /bench-kazoo-<pid>-<rand>)")
    ap.add_argument("--crash", type=int, default=0,
                    help="crash-failover repetitions per session setting (default 0 = off)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    ap.add_argument("--child-session", type=float, default=10.0, help=argparse.SUPPRESS)
    args = ap.parse_args()

    # kazoo's loggers go to stderr at WARNING and above only (their level is lowered to
    # BLATHER during connect to catch the negotiated timeout); ours at INFO.
    fmt = logging.Formatter("%(asctime)s kazoo_bench %(levelname)s %(name)s: %(message)s")
    root_h = logging.StreamHandler(sys.stderr)
    root_h.setLevel(logging.WARNING)
    root_h.setFormatter(fmt)
    logging.getLogger().addHandler(root_h)
    logging.getLogger().setLevel(logging.WARNING)
    own_h = logging.StreamHandler(sys.stderr)
    own_h.setFormatter(fmt)
    log.addHandler(own_h)
    log.setLevel(logging.INFO)
    log.propagate = False

    if args.child:
        return child_main(args)
    if args.reps < 1 or args.warmup < 0 or args.crash < 0:
        ap.error("--reps must be >= 1, --warmup and --crash >= 0")
    if args.root is None:
        args.root = "/bench-kazoo-%d-%s" % (os.getpid(), uuid.uuid4().hex[:8])
    if not args.root.startswith("/") or args.root == "/" or args.root.endswith("/"):
        ap.error("--root must be an absolute znode path like /bench-kazoo-x")

    t_start = time.monotonic()
    try:
        result = Bench(args).run()
    except BenchError as e:
        log.error("%s", e)
        return 1
    except Exception as e:
        log.exception("failed: %r", e)
        return 1
    log.info("total wall time %.1f s", time.monotonic() - t_start)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
