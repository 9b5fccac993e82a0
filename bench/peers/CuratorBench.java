// Peer baseline: Curator's LeaderLatch on a given ZooKeeper.
//
// Measures, as defined in shared/reference/peer-elections.md: raw create, elect on a fresh
// path, elect with the parent existing, leave-failover and (only with --crash N)
// crash-failover. Three CuratorFramework clients (three sessions) in one JVM, one LeaderLatch
// per participant. Prints ONE JSON object on stdout at the end; logs go to stderr.
//
// Build and run through scripts/peers.sh (classpath from Debian's jars under /usr/share/java).

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Locale;
import java.util.Properties;
import java.util.UUID;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.CuratorFrameworkFactory;
import org.apache.curator.framework.recipes.leader.LeaderLatch;
import org.apache.curator.framework.recipes.leader.LeaderLatchListener;
import org.apache.curator.retry.ExponentialBackoffRetry;
import org.apache.zookeeper.CreateMode;
import org.apache.zookeeper.KeeperException;

public final class CuratorBench {
    static final long WAIT_MS = 30_000; // guard for every wait that should take milliseconds
    static final int NPART = 3;

    static final class BenchError extends Exception {
        BenchError(String msg) { super(msg); }
    }

    static void log(String fmt, Object... args) {
        System.err.println("curator_bench: " + String.format(Locale.ROOT, fmt, args));
    }

    // ------------------------------------------------------------ options

    String hosts;
    int warmup = 20;
    int reps = 200;
    int crash = 0;
    String root;
    boolean child;
    String childPath;
    int childSessionMs = 0; // 0 = Curator's default request (60 s)

    void parse(String[] argv) throws BenchError {
        for (int i = 0; i < argv.length; i++) {
            String a = argv[i];
            String v = (i + 1 < argv.length) ? argv[i + 1] : null;
            switch (a) {
                case "--hosts": hosts = need(a, v); i++; break;
                case "--warmup": warmup = Integer.parseInt(need(a, v)); i++; break;
                case "--reps": reps = Integer.parseInt(need(a, v)); i++; break;
                case "--root": root = need(a, v); i++; break;
                case "--crash": crash = Integer.parseInt(need(a, v)); i++; break;
                case "--child": child = true; break;
                case "--path": childPath = need(a, v); i++; break;
                case "--child-session": childSessionMs = Integer.parseInt(need(a, v)); i++; break;
                case "-h": case "--help":
                    System.err.println("usage: CuratorBench --hosts H:P [--warmup 20] [--reps 200]"
                        + " [--root /bench-curator-x] [--crash N]");
                    System.exit(0);
                    break;
                default: throw new BenchError("unknown argument " + a);
            }
        }
        if (hosts == null) throw new BenchError("--hosts is required");
        if (reps < 1 || warmup < 0 || crash < 0) throw new BenchError("--reps >= 1, --warmup/--crash >= 0");
        if (root == null) {
            root = "/bench-curator-" + ProcessHandle.current().pid() + "-"
                + UUID.randomUUID().toString().substring(0, 8);
        }
        if (!root.startsWith("/") || root.equals("/") || root.endsWith("/")) {
            throw new BenchError("--root must be an absolute znode path like /bench-curator-x");
        }
    }

    static String need(String a, String v) throws BenchError {
        if (v == null) throw new BenchError(a + " needs a value");
        return v;
    }

    // ------------------------------------------------------------ sessions

    static CuratorFramework connect(String hosts, int sessionMs) throws Exception {
        CuratorFrameworkFactory.Builder b = CuratorFrameworkFactory.builder()
            .connectString(hosts)
            .retryPolicy(new ExponentialBackoffRetry(1000, 3));
        if (sessionMs > 0) b.sessionTimeoutMs(sessionMs);
        CuratorFramework c = b.build();
        c.start();
        if (!c.blockUntilConnected(15, TimeUnit.SECONDS)) {
            c.close();
            throw new BenchError("could not connect to " + hosts + " within 15 s");
        }
        return c;
    }

    static int negotiated(CuratorFramework c) {
        try {
            return c.getZookeeperClient().getZooKeeper().getSessionTimeout();
        } catch (Exception e) {
            return -1;
        }
    }

    // ------------------------------------------------------------ participants

    /** One LeaderLatch whose isLeader() stamps System.nanoTime() and reports to the driver. */
    static final class Part {
        final int k;
        final LeaderLatch latch;
        final AtomicInteger entries = new AtomicInteger();
        boolean started;
        boolean closed;

        Part(int k, CuratorFramework client, String path, BlockingQueue<long[]> events) {
            this.k = k;
            this.latch = new LeaderLatch(client, path, "p" + k);
            latch.addListener(new LeaderLatchListener() {
                @Override public void isLeader() {
                    long t = System.nanoTime();
                    entries.incrementAndGet();
                    events.add(new long[] {k, t});
                }
                @Override public void notLeader() { }
            });
        }

        void start() throws Exception { latch.start(); started = true; }

        void close() {
            if (!started || closed) return;
            closed = true;
            try {
                latch.close();
            } catch (Exception e) {
                log("close of p%d failed: %s", k, e);
            }
        }
    }

    static long[] nextLeader(BlockingQueue<long[]> events, String what) throws Exception {
        long[] ev = events.poll(WAIT_MS, TimeUnit.MILLISECONDS);
        if (ev == null) throw new BenchError("no leader within " + WAIT_MS + " ms (" + what + ")");
        return ev;
    }

    /**
     * Close waiting contenders first so nobody else takes over, then the leader. Waiters go
     * from the newest node to the oldest: a closed latch ignores its watch, so no open latch
     * sees its predecessor vanish and re-reads the children while being closed (that race
     * logs "Can't find our node. Resetting" and re-creates a node).
     */
    static void shutdown(List<Part> parts, int leader) {
        List<Part> waiters = new ArrayList<>();
        for (Part p : parts) if (p.k != leader) waiters.add(p);
        waiters.sort((a, b) -> Long.compare(seqOf(b), seqOf(a)));
        for (Part p : waiters) p.close();
        for (Part p : parts) if (p.k == leader) p.close();
    }

    static long seqOf(Part p) {
        String path = p.latch.getOurPath();
        if (path == null || path.length() < 10) return Long.MAX_VALUE; // no node yet: close first
        try {
            return Long.parseLong(path.substring(path.length() - 10));
        } catch (NumberFormatException e) {
            return Long.MAX_VALUE;
        }
    }

    static int leadersNow(List<Part> parts) {
        int n = 0;
        for (Part p : parts) if (!p.closed && p.latch.hasLeadership()) n++;
        return n;
    }

    static int entries(List<Part> parts) {
        int n = 0;
        for (Part p : parts) n += p.entries.get();
        return n;
    }

    // ------------------------------------------------------------ driver

    CuratorFramework[] clients = new CuratorFramework[NPART];
    int violations;
    long seq;
    Integer sessionMs;

    String fresh(String tag) {
        seq++;
        return String.format(Locale.ROOT, "%s/%s-%06d", root, tag, seq);
    }

    void violation(String fmt, Object... args) {
        violations++;
        log("SAFETY VIOLATION: " + fmt, args);
    }

    void waitChildren(String path, int n, String what) throws Exception {
        long deadline = System.nanoTime() + WAIT_MS * 1_000_000L;
        while (true) {
            try {
                if (clients[0].getChildren().forPath(path).size() >= n) return;
            } catch (KeeperException.NoNodeException e) {
                // not created yet
            }
            if (System.nanoTime() > deadline) {
                throw new BenchError(n + " contender znodes never appeared under " + path + " (" + what + ")");
            }
            Thread.sleep(2);
        }
    }

    /** Waits for the closed latches' background deletes, then removes the election znode. */
    void remove(String path) throws Exception {
        long deadline = System.nanoTime() + WAIT_MS * 1_000_000L;
        while (true) {
            try {
                if (clients[0].getChildren().forPath(path).isEmpty()) {
                    clients[0].delete().forPath(path);
                    return;
                }
            } catch (KeeperException.NoNodeException e) {
                return;
            } catch (KeeperException.NotEmptyException e) {
                // a latch re-created a node? retry below
            }
            if (System.nanoTime() > deadline) {
                clients[0].delete().deletingChildrenIfNeeded().forPath(path);
                log("forced removal of %s (children left after close)", path);
                return;
            }
            Thread.sleep(1);
        }
    }

    List<Part> parts(String path, BlockingQueue<long[]> events, int... ks) {
        List<Part> ps = new ArrayList<>();
        for (int k : ks) ps.add(new Part(k, clients[k], path, events));
        return ps;
    }

    long[] benchCreate(int warm, int n) throws Exception {
        CuratorFramework c = clients[0];
        String base = fresh("create");
        c.create().forPath(base);
        String prefix = base + "/n-";
        for (int i = 0; i < warm; i++) c.create().withMode(CreateMode.EPHEMERAL_SEQUENTIAL).forPath(prefix);
        long[] out = new long[n];
        for (int i = 0; i < n; i++) {
            long t0 = System.nanoTime();
            c.create().withMode(CreateMode.EPHEMERAL_SEQUENTIAL).forPath(prefix);
            out[i] = System.nanoTime() - t0;
        }
        c.delete().deletingChildrenIfNeeded().forPath(base);
        return out;
    }

    long electOnce(boolean parentExists) throws Exception {
        String path = fresh(parentExists ? "elect-parent" : "elect-fresh");
        if (parentExists) clients[0].create().forPath(path);
        BlockingQueue<long[]> events = new LinkedBlockingQueue<>();
        List<Part> ps = parts(path, events, 0, 1, 2);
        int leader = -1;
        long dt;
        try {
            long t0 = System.nanoTime();
            for (Part p : ps) p.start();
            long[] ev = nextLeader(events, "elect");
            leader = (int) ev[0];
            dt = ev[1] - t0;
            // untimed safety check: all contenders queued, settle, exactly one leader
            waitChildren(path, NPART, "elect");
            Thread.sleep(30);
            int now = leadersNow(ps), ent = entries(ps);
            if (now != 1 || ent != 1) {
                violation("elect on %s: %d latches hold leadership, %d isLeader calls", path, now, ent);
            }
        } finally {
            shutdown(ps, leader);
        }
        remove(path);
        return dt;
    }

    long leaveOnce() throws Exception {
        String path = fresh("leave");
        BlockingQueue<long[]> events = new LinkedBlockingQueue<>();
        List<Part> ps = parts(path, events, 0, 1, 2);
        int current = -1;
        long dt;
        try {
            for (Part p : ps) p.start();
            int first = (int) nextLeader(events, "leave setup")[0];
            current = first;
            waitChildren(path, NPART, "leave setup");
            Thread.sleep(30);
            Part old = ps.get(first);
            long t0 = System.nanoTime();
            old.close();
            long[] ev = nextLeader(events, "leave");
            int second = (int) ev[0];
            current = second;
            dt = ev[1] - t0;
            if (second == first) violation("leave on %s: leadership went back to p%d", path, first);
            Thread.sleep(30);
            int now = leadersNow(ps), ent = entries(ps);
            if (now != 1 || ent != 2) {
                violation("leave on %s: %d latches hold leadership, %d isLeader calls", path, now, ent);
            }
        } finally {
            shutdown(ps, current);
        }
        remove(path);
        return dt;
    }

    long crashOnce(int childSession, int[] negotiatedOut) throws Exception {
        String path = fresh("crash");
        String java = ProcessHandle.current().info().command().orElse("java");
        List<String> cmd = new ArrayList<>(List.of(java, "-Xmx256m"));
        for (String prop : System.getProperties().stringPropertyNames()) { // logging settings
            if (prop.startsWith("org.slf4j.")) cmd.add("-D" + prop + "=" + System.getProperty(prop));
        }
        cmd.addAll(List.of("-cp", System.getProperty("java.class.path"), "CuratorBench", "--child",
            "--hosts", hosts, "--path", path, "--child-session", Integer.toString(childSession)));
        Process proc = new ProcessBuilder(cmd).redirectError(ProcessBuilder.Redirect.INHERIT).start();
        BlockingQueue<long[]> events = new LinkedBlockingQueue<>();
        List<Part> ps = Collections.emptyList();
        int current = -1;
        long dt;
        try {
            BufferedReader r = new BufferedReader(new InputStreamReader(proc.getInputStream(), StandardCharsets.UTF_8));
            String line = r.readLine();
            if (line == null || !line.startsWith("LEADER ")) {
                throw new BenchError("crash child did not become leader (got " + line + ")");
            }
            negotiatedOut[0] = Integer.parseInt(line.substring(7).trim());
            ps = parts(path, events, 1, 2);
            for (Part p : ps) p.start();
            waitChildren(path, NPART, "crash setup");
            Thread.sleep(100);
            if (!events.isEmpty()) violation("crash on %s: a survivor led while the child was leader", path);
            long t0 = System.nanoTime();
            proc.destroyForcibly(); // SIGKILL: TCP drops, the session is not closed
            long[] ev = nextLeader(events, "crash");
            current = (int) ev[0];
            dt = ev[1] - t0;
            Thread.sleep(30);
            int now = leadersNow(ps), ent = entries(ps);
            if (now != 1 || ent != 1) {
                violation("crash on %s: %d survivors hold leadership, %d isLeader calls", path, now, ent);
            }
        } finally {
            proc.destroyForcibly();
            proc.waitFor(WAIT_MS, TimeUnit.MILLISECONDS);
            shutdown(ps, current);
        }
        remove(path);
        return dt;
    }

    interface Rep { long run() throws Exception; }

    long[] repeat(String name, Rep fn) throws Exception {
        for (int i = 0; i < warmup; i++) fn.run();
        long[] out = new long[reps];
        for (int i = 0; i < reps; i++) out[i] = fn.run();
        log("%s: done (%d warm-up + %d measured)", name, warmup, reps);
        return out;
    }

    String runAll() throws Exception {
        for (int k = 0; k < NPART; k++) clients[k] = connect(hosts, 0);
        int neg = negotiated(clients[0]);
        sessionMs = neg > 0 ? neg : null;
        log("connected %d sessions, negotiated session timeout %s ms", NPART, sessionMs);
        CuratorFramework c0 = clients[0];
        if (c0.checkExists().forPath(root) != null) {
            throw new BenchError("root " + root + " already exists; pick a unique --root");
        }
        c0.create().creatingParentsIfNeeded().forPath(root);
        StringBuilder j = new StringBuilder();
        try {
            j.append("{\"impl\":\"curator\",\"version\":\"").append(curatorVersion()).append('"');
            j.append(",\"session_timeout_ms\":").append(sessionMs == null ? "null" : sessionMs.toString());
            String s = summary(benchCreate(200, 1000), false);
            log("create: %s", s);
            j.append(",\"create\":").append(s);
            s = summary(repeat("elect_fresh", () -> electOnce(false)), true);
            log("elect_fresh: %s", s);
            j.append(",\"elect_fresh\":").append(s);
            s = summary(repeat("elect_parent", () -> electOnce(true)), true);
            log("elect_parent: %s", s);
            j.append(",\"elect_parent\":").append(s);
            s = summary(repeat("leave_failover", this::leaveOnce), true);
            log("leave_failover: %s", s);
            j.append(",\"leave_failover\":").append(s);
            if (crash > 0) {
                j.append(",\"crash_failover\":[");
                int[][] settings = {{0, 60000}, {1000, 1000}}; // {request passed, requested ms}
                for (int si = 0; si < settings.length; si++) {
                    long[] vals = new long[crash];
                    int[] negOut = {-1};
                    for (int i = 0; i < crash; i++) {
                        vals[i] = crashOnce(settings[si][0], negOut);
                        log("crash (requested %d ms): %.1f ms", settings[si][1], vals[i] / 1e6);
                    }
                    String sum = summary(vals, true);
                    if (si > 0) j.append(',');
                    j.append(sum, 0, sum.length() - 1)
                        .append(",\"session_requested_ms\":").append(settings[si][1])
                        .append(",\"session_ms\":").append(negOut[0] > 0 ? Integer.toString(negOut[0]) : "null")
                        .append('}');
                }
                j.append(']');
            }
            j.append(",\"violations\":").append(violations).append('}');
        } finally {
            try {
                c0.delete().deletingChildrenIfNeeded().forPath(root);
            } catch (Exception e) {
                log("cleanup of %s failed: %s", root, e);
            }
            for (CuratorFramework c : clients) if (c != null) c.close();
        }
        return j.toString();
    }

    static String curatorVersion() {
        try (var in = CuratorFramework.class.getResourceAsStream(
                "/META-INF/maven/org.apache.curator/curator-framework/pom.properties")) {
            if (in != null) {
                Properties p = new Properties();
                p.load(in);
                String v = p.getProperty("version");
                if (v != null) return v;
            }
        } catch (Exception e) {
            // fall through
        }
        String v = CuratorFramework.class.getPackage().getImplementationVersion();
        return v != null ? v : "unknown";
    }

    // ------------------------------------------------------------ stats

    static double nearestRank(double[] sorted, double q) {
        int r = Math.max(1, (int) Math.ceil(q * sorted.length));
        return sorted[r - 1];
    }

    static String summary(long[] ns, boolean withMax) {
        double[] v = new double[ns.length];
        for (int i = 0; i < ns.length; i++) v[i] = ns[i] / 1e6;
        java.util.Arrays.sort(v);
        StringBuilder b = new StringBuilder();
        b.append(String.format(Locale.ROOT, "{\"n\":%d,\"p50\":%.3f,\"p99\":%.3f",
            v.length, nearestRank(v, 0.50), nearestRank(v, 0.99)));
        if (withMax) b.append(String.format(Locale.ROOT, ",\"max\":%.3f", v[v.length - 1]));
        return b.append('}').toString();
    }

    // ------------------------------------------------------------ crash child

    /** Win the latch on --path, print "LEADER <negotiated ms>", sleep until killed. */
    void childMain() throws Exception {
        Thread watch = new Thread(() -> { // exit when the parent goes away (stdin closes)
            try {
                while (System.in.read() >= 0) { }
            } catch (Exception e) {
                // ignore
            }
            Runtime.getRuntime().halt(0);
        });
        watch.setDaemon(true);
        watch.start();
        CuratorFramework c = connect(hosts, childSessionMs);
        int neg = negotiated(c);
        LeaderLatch latch = new LeaderLatch(c, childPath, "child");
        latch.addListener(new LeaderLatchListener() {
            @Override public void isLeader() {
                System.out.println("LEADER " + neg);
                System.out.flush();
            }
            @Override public void notLeader() { }
        });
        latch.start();
        Thread.sleep(Long.MAX_VALUE);
    }

    public static void main(String[] argv) {
        if (System.getProperty("org.slf4j.simpleLogger.defaultLogLevel") == null) {
            System.setProperty("org.slf4j.simpleLogger.defaultLogLevel", "warn");
        }
        CuratorBench b = new CuratorBench();
        long tStart = System.nanoTime();
        try {
            b.parse(argv);
            if (b.child) {
                b.childMain();
                return;
            }
            String json = b.runAll();
            log("total wall time %.1f s", (System.nanoTime() - tStart) / 1e9);
            System.out.println(json);
            System.out.flush();
            System.exit(0);
        } catch (BenchError e) {
            log("error: %s", e.getMessage());
            System.exit(1);
        } catch (Exception e) {
            log("error: %s", e);
            e.printStackTrace();
            System.exit(1);
        }
    }
}
