#!/usr/bin/env python3
"""Where the time of a cold election and of a leave-failover goes, from the
services' own debug logs (µs timestamps of every transition).

Starts ZooKeeper (scripts/zk.sh) and 3 release election-server processes with
RUST_LOG=election_server=debug, creates N containers, runs one cold election
per base (status on the 3 peers at once), then a leave of the master, and
prints the median time at which each peer reaches each state, counted from
the first transition of the base on any peer.

    bench/election_profile.py [--bases 40]
"""
import argparse, json, os, re, signal, statistics, subprocess, time, urllib.error, urllib.request
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINE = re.compile(r"^(\S+)Z DEBUG (\S+) -> (\S+) base=(\S+)")
OP = re.compile(r'^election_zookeeper_operation_seconds_(sum|count)\{op="(\w+)"\} (\S+)')


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


OPENER = urllib.request.build_opener(NoRedirect)


def post(url):
    """POSTs; returns (status, body)."""
    req = urllib.request.Request(url, method="POST", data=b"")
    try:
        with OPENER.open(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, {}


def first_write(b, leaver, ports, t0, hops):
    """As the bench's "leave-failover to the first acknowledged write": polls
    the two others' status until one is master, then writes through the
    peers in a fixed order, following redirects; times each step."""
    ms = lambda: (time.time() - t0) * 1000
    while not any(post(f"http://127.0.0.1:{p}/v1/election/status?base={b}&type=meta2")[0] == 200
                  for p in ports if p != leaver):
        pass
    hops["new master seen"].append(ms())
    body = json.dumps({"properties": {"k": "v"}}).encode()
    for p in ports:
        target, first = f"127.0.0.1:{p}", True
        for _ in range(5):
            role = "the leaver" if target.endswith(str(leaver)) else "another peer"
            req = urllib.request.Request(f"http://{target}/v1/container/set?base={b}&type=meta2",
                                         method="POST", data=body,
                                         headers={"content-type": "application/json"})
            try:
                with OPENER.open(req, timeout=10) as r:
                    code, answer = r.status, json.loads(r.read() or b"{}")
            except urllib.error.HTTPError as e:
                code, answer = e.code, json.loads(e.read() or b"{}")
            label = f"{'first' if first else 'then'} {role} answers {code}"
            hops[label].append(ms())
            first = False
            if code == 303:
                target = answer.get("message", "")
                continue
            break
        if code == 200:
            hops["write acknowledged"].append(ms())
            return


def ts(s):
    return datetime.fromisoformat(s).timestamp()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bases", type=int, default=40)
    ap.add_argument("--write-after-leave", action="store_true",
                    help="after each leave, write as the bench does, and time each step")
    a = ap.parse_args()
    d = "/tmp/election-profile"
    subprocess.run(["rm", "-rf", d], check=True)
    os.makedirs(d)
    env = dict(os.environ, ZK_DIR=f"{d}/zk", ZK_TICK_MS="250")
    zk_port = "22998"
    subprocess.run([f"{ROOT}/scripts/zk.sh", "start", zk_port], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    ports = [7111, 7112, 7113]
    procs = []
    try:
        for p in ports:
            log = open(f"{d}/{p}.log", "w")
            procs.append(subprocess.Popen(
                [os.environ.get("ELECTION_SERVER_BIN", f"{ROOT}/target/release/election-server"), "--listen", f"127.0.0.1:{p}",
                 "--zk", f"127.0.0.1:{zk_port}", "--session-timeout-ms", "2000",
                 "--data-dir", f"{d}/s{p}"],
                stdout=log, stderr=log,
                env=dict(os.environ, RUST_LOG="election_server=debug,zookeeper_client=warn")))
        time.sleep(1.5)
        bases = [post(f"http://127.0.0.1:7111/v1/container/create?acct=prof&ref=c{i}&type=meta2")[1]["base"]
                 for i in range(a.bases)]
        pool = ThreadPoolExecutor(3)
        for b in bases:
            list(pool.map(lambda p: post(f"http://127.0.0.1:{p}/v1/election/status?base={b}&type=meta2"), ports))
        time.sleep(0.5)
        mark = time.time()
        asked = {}  # base -> when the leave was sent
        hops = defaultdict(list)  # what the first write met -> [ms]
        for b in bases:
            # The master: the peer whose status says 200 without a redirect.
            master = next(p for p in ports
                          if post(f"http://127.0.0.1:{p}/v1/election/status?base={b}&type=meta2")[0] == 200)
            asked[b] = time.time()
            post(f"http://127.0.0.1:{master}/v1/election/leave?base={b}&type=meta2")
            if a.write_after_leave:
                first_write(b, master, ports, asked[b], hops)
            time.sleep(0.05)
        time.sleep(0.5)
        zk_ops = defaultdict(lambda: [0.0, 0])  # op -> [seconds, count]
        for p in ports:
            with urllib.request.urlopen(f"http://127.0.0.1:{p}/metrics", timeout=10) as r:
                for line in r.read().decode().splitlines():
                    m = OP.match(line)
                    if m:
                        zk_ops[m.group(2)][0 if m.group(1) == "sum" else 1] += float(m.group(3))
    finally:
        stop = time.time()
        for pr in procs:
            pr.send_signal(signal.SIGINT)
        for pr in procs:
            pr.wait(timeout=10)
        subprocess.run([f"{ROOT}/scripts/zk.sh", "stop"], env=env, stdout=subprocess.DEVNULL)
    events = defaultdict(list)  # base -> [(t, port, pre, post)]
    for p in ports:
        for line in open(f"{d}/{p}.log"):
            m = LINE.match(line)
            if m:
                events[m.group(4)].append((ts(m.group(1)), p, m.group(2), m.group(3)))
    phases = (("cold election", lambda t: t < mark, {}),
              ("leave-failover", lambda t: mark <= t < stop, asked))
    for phase, keep, start in phases:
        at = defaultdict(list)  # (role, state) -> [ms since first]
        total = []
        for b, evs in events.items():
            evs = sorted(e for e in evs if keep(e[0]))
            if not evs:
                continue
            # From the leave request when there is one (the log's clock is
            # this machine's wall clock too), else the first transition.
            t0 = start.get(b, evs[0][0])
            final = {}
            for t, p, pre, post_ in evs:
                if post_ in ("MASTER", "SLAVE"):
                    final[p] = (t, post_)
            roles = {p: ("master" if s == "MASTER" else "slave") for p, (_, s) in final.items()}
            if b in start:
                # The leaver rejoins as a slave: told apart from the slave
                # that stayed (the medians of both mixed say neither).
                for t, p, pre, post_ in evs:
                    if pre == "LEAVING":
                        roles[p] = "leaver"
            seen = set()
            for t, p, pre, post_ in evs:
                key = (roles.get(p, "?"), post_)
                if (p, post_) in seen:
                    continue
                seen.add((p, post_))
                at[key].append((t - t0) * 1000)
            if len(final) == 3:
                total.append((max(t for t, _ in final.values()) - t0) * 1000)
        print(f"\n{phase}: {len(total)} bases; all 3 final after p50 {statistics.median(total):.2f} ms"
              if total else f"\n{phase}: no complete base")
        since = "the leave request" if start else "the first transition"
        print(f"  role   state reached             median ms after {since} (n)")
        for (role, state), v in sorted(at.items(), key=lambda kv: statistics.median(kv[1])):
            print(f"  {role:6} {state:25} {statistics.median(v):7.2f}  ({len(v)})")


    if a.write_after_leave:
        print("\nthe first write after each leave, as the bench makes it (ms after the leave request):")
        for what, v in sorted(hops.items()):
            print(f"  {what:45} {statistics.median(v):7.2f}  ({len(v)})")

    print("\nZooKeeper operations, mean round trip as the services timed them (both phases):")
    for op, (secs, n) in sorted(zk_ops.items()):
        if n:
            print(f"  {op:10} {secs / n * 1000:6.2f} ms  ({int(n)})")


if __name__ == "__main__":
    main()
