#!/usr/bin/python3
"""keg-server and redis-server 7.0 side by side at equal durability, measured with redis-benchmark.

For each fsync policy both servers run at once (keg `appendfsync P`; Redis `appendonly yes`,
`appendfsync P`, automatic AOF rewrite off, no RDB). Each workload runs A B A B ... (keg first in
odd rounds, Redis first in even ones) for --rounds rounds; the report gives medians, the ratio
keg/redis, and each server's CPU time per million requests (utime + stime of all its threads, from
/proc/<pid>/stat, around each run). Each run starts once both servers are idle (settle): background
work an earlier run left (keg's compaction) is not counted in it. Writes docs/benchmarks.md and
docs/benchmarks.png.

Usage: tools/bench.sh [--rounds N] [--quick] [--only TEXT]   (tools/bench.sh builds Release first)
"""
import argparse
import hashlib
import csv
import datetime
import io
import os
import platform
import random
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# KEG_BENCH_SERVER: another keg-server binary (comparing two builds).
KEG = os.environ.get("KEG_BENCH_SERVER") or os.path.join(ROOT, "build", "bench", "src", "server", "keg-server")
TICKS = os.sysconf("SC_CLK_TCK")
NOTES_MARKER = "<!-- Everything below this line is written by hand and kept by tools/bench.sh. -->"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited: {proc.args}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"no server on port {port}")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (all threads)


class Server:
    def __init__(self, name, argv_for, workdir):
        self.name = name
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        self.argv = argv_for(self.port, self.dir)
        self.start()

    def start(self):
        """Starts the server; returns the seconds until it answered PING with +PONG (a server still
        loading answers -LOADING)."""
        t0 = time.time()
        self.log = open(os.path.join(self.dir, "server.log"), "ab")
        self.proc = subprocess.Popen(self.argv, cwd=self.dir, stdout=self.log, stderr=subprocess.STDOUT)
        wait_port(self.port, self.proc, timeout=900)
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as c:
                    c.sendall(b"PING\r\n")
                    if c.recv(64).startswith(b"+PONG"):
                        return time.time() - t0
            except OSError:
                pass
            if self.proc.poll() is not None:
                sys.exit(f"server exited: {self.argv}")
            time.sleep(0.01)

    def stop(self):
        # SIGTERM again every 10 s (a redis-server replica was seen to miss the first one, and
        # stayed up), SIGKILL after 300 s.
        for _ in range(30):
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
                break
            except subprocess.TimeoutExpired:
                pass
        else:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        if getattr(self, "_sock", None) is not None:
            self._sock.close()
            self._sock = None

    def status_kb(self, field):
        """A field of /proc/<pid>/status in KiB (VmRSS, RssAnon)."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        return 0

    def command(self, *args):
        out = subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True,
                             text=True, timeout=600)
        return out.stdout.strip()

    def query(self, *args):
        """One command on a connection kept open (no redis-cli process): for polling during a
        measurement, where spawning a process 20 times a second on this 2-vCPU machine was itself
        most of the primary's p99 (perf: redis-cli and its loader on the primary's CPU). Returns a
        bulk, status or integer reply as text; an error reply raises."""
        if getattr(self, "_sock", None) is None:
            self._sock = socket.create_connection(("127.0.0.1", self.port), timeout=600)
            self._buf = b""
        req = b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a)
                                                  for a in (str(x).encode() for x in args))
        self._sock.sendall(req)

        def line():
            while b"\r\n" not in self._buf:
                data = self._sock.recv(65536)
                if not data:
                    raise ConnectionError(f"{self.name}: connection closed")
                self._buf += data
            out, self._buf = self._buf.split(b"\r\n", 1)
            return out

        head = line()
        if head[:1] == b"-":
            raise RuntimeError(f"{self.name}: {head.decode()}")
        if head[:1] == b"$":
            n = int(head[1:])
            if n < 0:
                return None
            while len(self._buf) < n + 2:
                self._buf += self._sock.recv(65536)
            out, self._buf = self._buf[:n], self._buf[n + 2:]
            return out.decode()
        return head[1:].decode()

    def info(self, field):
        for line in self.command("INFO").splitlines():
            if line.startswith(field + ":"):
                return line.split(":", 1)[1].strip()
        return ""


def start_pair(policy, workdir):
    keg = Server("keg", lambda port, d: [KEG, "--port", str(port), "--dir", os.path.join(d, "data"),
                                         "--appendfsync", policy, "--logfile", "keg.log"], workdir)
    redis = Server("redis", lambda port, d: [
        "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", d, "--save", "",
        "--appendonly", "yes", "--appendfsync", policy, "--auto-aof-rewrite-percentage", "0",
        "--logfile", "redis.log"], workdir)
    return keg, redis


def bench(server, args, requests):
    """One redis-benchmark run: (requests per second, p50 ms, p99 ms, server CPU seconds, share of
    one core the redis-benchmark process used)."""
    before = cpu_seconds(server.proc.pid)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    out = subprocess.run(["redis-benchmark", "-p", str(server.port), "-n", str(requests), "--csv",
                          *args], capture_output=True, text=True, timeout=900)
    wall = time.time() - t0
    after = cpu_seconds(server.proc.pid)
    done = resource.getrusage(resource.RUSAGE_CHILDREN)
    client_busy = (done.ru_utime + done.ru_stime - usage.ru_utime - usage.ru_stime) / wall
    if out.returncode != 0:
        sys.exit(f"redis-benchmark failed against {server.name}: {out.stderr}")
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    row = rows[-1]
    return (float(row["rps"]), float(row["p50_latency_ms"]), float(row["p99_latency_ms"]),
            after - before, client_busy)


# The scripting issue's script: three calls (GET, INCR, PEXPIRE) on one counter key. Loaded on both
# servers before the workloads run (SCRIPT LOAD).
SCRIPT = ("redis.call('get', KEYS[1]) local n = redis.call('incr', KEYS[1]) "
          "redis.call('pexpire', KEYS[1], 60000) return n")
SCRIPT_SHA = hashlib.sha1(SCRIPT.encode()).hexdigest()


# (name, redis-benchmark arguments, requests, quick requests)
def workloads(policy):
    base = ["-c", "50", "-r", "100000", "-d", "100"]
    w = [
        (f"SET, {policy}", ["-t", "set", *base], 300000, 50000),
        (f"GET, {policy}", ["-t", "get", *base], 300000, 50000),
        (f"SET -P 16, {policy}", ["-t", "set", "-P", "16", *base], 2000000, 300000),
        (f"GET -P 16, {policy}", ["-t", "get", "-P", "16", *base], 2000000, 300000),
        (f"EVALSHA (GET, INCR, PEXPIRE), {policy}",
         ["-c", "50", "-r", "100000", "EVALSHA", SCRIPT_SHA, "1", "counter:__rand_int__"], 200000, 30000),
        (f"EVALSHA -P 16, {policy}",
         ["-c", "50", "-r", "100000", "-P", "16", "EVALSHA", SCRIPT_SHA, "1", "counter:__rand_int__"], 1000000, 150000),
    ]
    if policy == "everysec":
        w += [
            ("SET 1 client, everysec", ["-t", "set", "-c", "1", "-r", "100000", "-d", "100"], 30000, 5000),
            ("GET 1 client, everysec", ["-t", "get", "-c", "1", "-r", "100000", "-d", "100"], 30000, 5000),
            ("MSET (10 keys), everysec", ["-t", "mset", *base], 200000, 30000),
            ("EVAL of a cached body, everysec",
             ["-c", "50", "-r", "100000", "EVAL", SCRIPT, "1", "counter:__rand_int__"], 200000, 30000),
        ]
        # Hashes and sets (issue 17): 100,000 small hashes and sets written then read, and a hash
        # and a set of 100 elements read whole (loaded before the workloads: load_collections).
        rnd = ["-c", "50", "-r", "100000"]
        w += [
            ("HSET (collections), everysec", [*rnd, "HSET", "h:__rand_int__", "field", "value-of-16bytes"], 300000, 50000),
            ("HSET -P 16 (collections), everysec",
             [*rnd, "-P", "16", "HSET", "h:__rand_int__", "field", "value-of-16bytes"], 2000000, 300000),
            ("HGET (collections), everysec", [*rnd, "HGET", "h:__rand_int__", "field"], 300000, 50000),
            ("HGET -P 16 (collections), everysec", [*rnd, "-P", "16", "HGET", "h:__rand_int__", "field"], 2000000, 300000),
            ("SADD (collections), everysec", [*rnd, "SADD", "s:__rand_int__", "member-1"], 300000, 50000),
            ("SADD -P 16 (collections), everysec", [*rnd, "-P", "16", "SADD", "s:__rand_int__", "member-1"], 2000000, 300000),
            ("SISMEMBER (collections), everysec", [*rnd, "SISMEMBER", "s:__rand_int__", "member-1"], 300000, 50000),
            ("SISMEMBER -P 16 (collections), everysec",
             [*rnd, "-P", "16", "SISMEMBER", "s:__rand_int__", "member-1"], 2000000, 300000),
            ("HGETALL of 100 fields (collections), everysec", ["-c", "50", "HGETALL", "hash100"], 200000, 30000),
            ("HGETALL of 100 fields -P 16 (collections), everysec", ["-c", "50", "-P", "16", "HGETALL", "hash100"], 600000, 100000),
            ("SMEMBERS of 100 (collections), everysec", ["-c", "50", "SMEMBERS", "set100"], 200000, 30000),
            ("SMEMBERS of 100 -P 16 (collections), everysec", ["-c", "50", "-P", "16", "SMEMBERS", "set100"], 600000, 100000),
        ]
        # Lists (issue 18): redis-benchmark's own list tests on its one list `mylist` (per element
        # in keg once past 128 elements); the pops take what the pushes left.
        for t in ("lpush", "rpush", "lpop", "rpop"):
            w += [(f"{t.upper()} (lists), everysec", ["-c", "50", "-t", t], 300000, 50000),
                  (f"{t.upper()} -P 16 (lists), everysec", ["-c", "50", "-P", "16", "-t", t], 2000000, 300000)]
        # The load generator's own ceiling: PING_MBULK costs either server almost nothing, so its
        # rate is what one redis-benchmark thread can send with -P 16 beside a server on this
        # machine. A -P 16 row where Redis runs at more than 2/3 of it cannot show 1.5x.
        w += [("PING_MBULK -P 16 (client ceiling), everysec", ["-c", "50", "-P", "16", "-t", "ping_mbulk"], 3000000, 300000)]
        w += [("LRANGE_100 (lists), everysec", ["-c", "50", "-t", "lrange_100"], 100000, 20000),
              ("LRANGE_100 -P 16 (lists), everysec", ["-c", "50", "-P", "16", "-t", "lrange_100"], 300000, 50000)]
        # Sorted sets (issue 18): redis-benchmark's ZADD (random members into its one sorted set
        # `myzset`: large, per member in keg) and ZPOPMIN (taking what ZADD left), and a
        # ZRANGEBYSCORE of 10 members of zset100k (100,000 members, load_collections).
        for t in ("zadd", "zpopmin"):
            w += [(f"{t.upper()} (zsets), everysec", ["-c", "50", "-r", "100000", "-t", t], 300000, 50000),
                  (f"{t.upper()} -P 16 (zsets), everysec", ["-c", "50", "-r", "100000", "-P", "16", "-t", t], 2000000, 300000)]
        zr = ["ZRANGEBYSCORE", "zset100k", "50000", "50009"]
        w += [("ZRANGEBYSCORE of 10 (zsets), everysec", ["-c", "50", *zr], 300000, 50000),
              ("ZRANGEBYSCORE of 10 -P 16 (zsets), everysec", ["-c", "50", "-P", "16", *zr], 1000000, 150000)]
    return w


def load_collections(server):
    """hash100 (100 fields of 10-byte values) and set100 (100 members), the read workloads' keys."""
    server.command("DEL", "hash100", "set100")
    args = []
    for i in range(100):
        args += [f"field:{i:04d}", f"value:{i:04d}"]
    server.command("HSET", "hash100", *args)
    server.command("SADD", "set100", *[f"member:{i:04d}" for i in range(100)])
    server.command("DEL", "zset100k")
    for start in range(0, 100_000, 1000):
        args = []
        for i in range(start, start + 1000):
            args += [str(i), f"member:{i:06d}"]
        server.command("ZADD", "zset100k", *args)


def write_load_file(path, keys):
    """The RESP of `keys` SETs of key:%012d (redis-benchmark's key names, 16 bytes) to 100-byte
    values, for redis-cli --pipe."""
    with open(path, "wb") as f:
        step = 20000
        for start in range(0, keys, step):
            f.write(b"".join(b"*3\r\n$3\r\nSET\r\n$16\r\nkey:%012d\r\n$100\r\n%s\r\n"
                             % (i, ((b"%012d" % i) * 9)[:100]) for i in range(start, min(keys, start + step))))
            if (start // step) % max(1, keys // step // 10) == 0:
                print(f"  generating {start * 100 // keys:3d}%", flush=True)


def pipe_load(server, path):
    t0 = time.time()
    with open(path, "rb") as f:
        out = subprocess.run(["redis-cli", "-p", str(server.port), "--pipe"], stdin=f,
                             capture_output=True, text=True, timeout=3600)
    if out.returncode != 0 or "errors: 0," not in out.stdout:
        sys.exit(f"loading {server.name} failed: {out.stdout} {out.stderr}")
    return time.time() - t0


def p99_pair(server, keys, requests):
    """(SET p99 ms, GET p99 ms) of one unpipelined 50-client run each."""
    base = ["-c", "50", "-r", str(keys), "-d", "100"]
    return (bench(server, ["-t", "set", *base], requests)[2],
            bench(server, ["-t", "get", *base], requests)[2])


def settle(servers, window=1.1, timeout=300):
    """Waits until every server used under 5% of a core for `window` seconds (longer than keg's
    1 s background interval), so that no run measures work another run left behind: keg compacts
    the dead records of earlier rows and writes hint files in the background, and that work shares
    the two cores with whichever server runs next. Redis's equivalent, the AOF rewrite, is off in
    this bench. Returns the CPU seconds the servers spent meanwhile (reported per policy)."""
    spent = 0.0
    deadline = time.time() + timeout
    while True:
        before = [cpu_seconds(s.proc.pid) for s in servers]
        time.sleep(window)
        used = [cpu_seconds(s.proc.pid) - b for s, b in zip(servers, before)]
        spent += sum(used)
        if max(used) < 0.05 * window or time.time() > deadline:
            return spent


def wait_field(server, field, value, timeout=1800):
    deadline = time.time() + timeout
    while server.info(field) != value:
        if time.time() > deadline:
            sys.exit(f"{server.name}: {field} never became {value}")
        time.sleep(0.2)


def scale(opts, workdir):
    """Memory per key, restart time and p99 during compaction at opts.keys keys (everysec)."""
    keys = opts.keys
    r = {"keys": keys}
    keg, redis = start_pair("everysec", workdir)
    try:
        base = {"keg": keg.status_kb("RssAnon"), "redis": redis.status_kb("VmRSS"),
                "redis_used": int(redis.info("used_memory"))}
        path = os.path.join(workdir, "load.resp")
        print(f"scale: writing {keys:,} SETs to {path}", flush=True)
        write_load_file(path, keys)
        for s in (keg, redis):
            r[f"{s.name}_load_s"] = pipe_load(s, path)
            print(f"scale: loaded {s.name} in {r[f'{s.name}_load_s']:.1f} s", flush=True)
        os.unlink(path)
        time.sleep(2)
        for s in (keg, redis):
            if int(s.command("DBSIZE")) != keys:
                sys.exit(f"{s.name} holds {s.command('DBSIZE')} keys, not {keys}")
        r["keg_anon_b"] = (keg.status_kb("RssAnon") - base["keg"]) * 1024 / keys
        r["redis_rss_b"] = (redis.status_kb("VmRSS") - base["redis"]) * 1024 / keys
        r["redis_used_b"] = (int(redis.info("used_memory")) - base["redis_used"]) / keys
        print(f"scale: keg {r['keg_anon_b']:.1f} B/key anon, Redis {r['redis_rss_b']:.1f} B/key RSS",
              flush=True)

        # Restarts, alternating; Redis first from the AOF as written, then after BGREWRITEAOF (an
        # RDB preamble: Redis's fastest load).
        r["keg_restart"], r["redis_restart_aof"], r["redis_restart_rdb"] = [], [], []
        for rnd in range(opts.rounds):
            for s in ((keg, redis) if rnd % 2 == 0 else (redis, keg)):
                s.stop()
                secs = s.start()
                r[f"{s.name}_restart" if s is keg else "redis_restart_aof"].append(secs)
                print(f"scale: {s.name} restart {secs:.2f} s", flush=True)
        r["keg_anon_after_restart_b"] = (keg.status_kb("RssAnon") - base["keg"]) * 1024 / keys
        redis.command("BGREWRITEAOF")
        time.sleep(1)
        wait_field(redis, "aof_rewrite_in_progress", "0")
        for _ in range(opts.rounds):
            redis.stop()
            r["redis_restart_rdb"].append(redis.start())
            print(f"scale: redis restart after rewrite {r['redis_restart_rdb'][-1]:.2f} s", flush=True)

        # p99 while keg compacts (and, for reference, while Redis rewrites its AOF), against each
        # server's own steady state. A quarter of the keys is overwritten first (dead bytes).
        n = 100000 if opts.quick else 300000
        for s in (keg, redis):
            bench(s, ["-t", "set", "-P", "32", "-c", "50", "-r", str(keys), "-d", "100"], keys // 4)
        for s, start_cmd, field in ((keg, ["COMPACT", "ASYNC"], "compaction_in_progress"),
                                    (redis, ["BGREWRITEAOF"], "aof_rewrite_in_progress")):
            steady, during, covered = [], [], []
            for _ in range(opts.rounds):
                steady.append(p99_pair(s, keys, n))
                s.command(*start_cmd)
                time.sleep(0.2)
                during.append(p99_pair(s, keys, n))
                covered.append(s.info(field) == "1")  # still running when the runs ended
                wait_field(s, field, "0")
            r[f"{s.name}_p99"] = (statistics.median(x[0] for x in steady),
                                  statistics.median(x[1] for x in steady),
                                  statistics.median(x[0] for x in during),
                                  statistics.median(x[1] for x in during), all(covered))
            print(f"scale: {s.name} p99 steady/during SET {r[f'{s.name}_p99'][0]}/{r[f'{s.name}_p99'][2]} "
                  f"GET {r[f'{s.name}_p99'][1]}/{r[f'{s.name}_p99'][3]} ms", flush=True)
    finally:
        keg.stop()
        redis.stop()
    return r


def write_hash_file(path, shape):
    """The RESP that builds issue 17's memory data sets, for redis-cli --pipe: "one" is 1,000,000
    fields (f%07d -> 10-byte values) in one hash, 1,000 per HSET; "many" is 1,000,000 hashes
    (h:%07d) of 10 such fields each; issue 18's "zset" is 1,000,000 members (m%09d, scores
    scattered) in one sorted set and "list" 1,000,000 elements (e%09d) in one list, 1,000 per
    command."""
    with open(path, "wb") as f:
        if shape == "one":
            for start in range(0, 1_000_000, 1000):
                args = [b"HSET", b"big"]
                for i in range(start, start + 1000):
                    args += [b"f%07d" % i, b"v%09d" % i]
                f.write(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
        elif shape in ("zset", "list"):  # issue 18: one sorted set / one list of 1,000,000
            for start in range(0, 1_000_000, 1000):
                args = [b"ZADD", b"bigz"] if shape == "zset" else [b"RPUSH", b"bigl"]
                for i in range(start, start + 1000):
                    args += [b"%d" % ((i * 7919) % 1_000_003), b"m%09d" % i] if shape == "zset" else [b"e%09d" % i]
                f.write(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
        else:
            for h in range(1_000_000):
                args = [b"HSET", b"h:%07d" % h]
                for i in range(10):
                    args += [b"f%07d" % i, b"v%09d" % (h + i)]
                f.write(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))


def collection_memory(opts, workdir, shapes=("one", "many")):
    """Issue 17's memory and restart targets (everysec): RSS growth for 1,000,000 fields in one
    hash and for 1,000,000 hashes of 10 fields (keg: its anonymous memory — the data files' pages
    are page cache, which the kernel reclaims; Redis: its RSS), and the restart time of each (keg
    from its hint files once they are written; Redis from its AOF)."""
    r = {}
    for shape in shapes:
        keg, redis = start_pair("everysec", os.path.join(workdir, shape))
        try:
            base = {"keg": keg.status_kb("RssAnon"), "redis": redis.status_kb("VmRSS")}
            path = os.path.join(workdir, f"{shape}.resp")
            write_hash_file(path, shape)
            for s in (keg, redis):
                r[f"{shape}_{s.name}_load_s"] = pipe_load(s, path)
            os.unlink(path)
            time.sleep(2)
            r[f"{shape}_keg_b"] = (keg.status_kb("RssAnon") - base["keg"]) * 1024
            r[f"{shape}_redis_b"] = (redis.status_kb("VmRSS") - base["redis"]) * 1024
            # keg writes hint files for sealed data files in the background: wait for them.
            deadline = time.time() + 120
            while keg.info("hint_files") != keg.info("sealed_data_files") and time.time() < deadline:
                time.sleep(0.2)
            for name in ("keg_restart", "redis_restart"):
                r[f"{shape}_{name}"] = []
            for rnd in range(opts.rounds):
                for s in ((keg, redis) if rnd % 2 == 0 else (redis, keg)):
                    s.stop()
                    r[f"{shape}_{s.name}_restart"].append(s.start())
            r[f"{shape}_keg_after_restart_b"] = (keg.status_kb("RssAnon") - base["keg"]) * 1024
            print(f"collections memory ({shape}): keg {r[f'{shape}_keg_b'] / 2**20:.1f} MiB anon "
                  f"({r[f'{shape}_keg_after_restart_b'] / 2**20:.1f} after restart), Redis "
                  f"{r[f'{shape}_redis_b'] / 2**20:.1f} MiB RSS, ratio "
                  f"{r[f'{shape}_keg_b'] / r[f'{shape}_redis_b']:.3f}; restart keg "
                  f"{statistics.median(r[f'{shape}_keg_restart']):.2f} s, Redis "
                  f"{statistics.median(r[f'{shape}_redis_restart']):.2f} s; load keg "
                  f"{r[f'{shape}_keg_load_s']:.1f} s, Redis {r[f'{shape}_redis_load_s']:.1f} s", flush=True)
        finally:
            keg.stop()
            redis.stop()
    return r


def wake_once(waiter, pusher, pop, push, lines):
    """One blocked-client wake: `waiter` sends a blocking pop and is blocked (the server's
    blocked_clients shows it), then `pusher` sends the push; the time from the push's send to the
    waiter's reply, in ms."""
    waiter.sendall(pop)
    time.sleep(0.002)  # the pop is parsed and blocked well before the push
    t0 = time.perf_counter()
    pusher.sendall(push)
    got = b""
    while got.count(b"\r\n") < lines:  # the whole reply: [key, value] or [key, member, score]
        got += waiter.recv(4096)
    t1 = time.perf_counter()
    pusher.recv(4096)  # the push's own reply
    return (t1 - t0) * 1000


def wake_latency(opts, workdir):
    """Issue 18's blocked-client wake target: p99 of the time from a push to the reply of the
    client blocked on it (BLPOP woken by LPUSH, BZPOPMIN by ZADD), keg and Redis alternating, for
    each fsync policy."""
    n = 300 if opts.quick else 2000
    for policy in ("everysec", "always"):
        keg, redis = start_pair(policy, os.path.join(workdir, policy))
        try:
            res = {}
            for kind, pop, push, lines in (
                    ("BLPOP/LPUSH", b"*3\r\n$5\r\nBLPOP\r\n$1\r\nq\r\n$1\r\n0\r\n",
                     b"*3\r\n$5\r\nLPUSH\r\n$1\r\nq\r\n$1\r\nx\r\n", 5),
                    ("BZPOPMIN/ZADD", b"*3\r\n$8\r\nBZPOPMIN\r\n$1\r\nz\r\n$1\r\n0\r\n",
                     b"*4\r\n$4\r\nZADD\r\n$1\r\nz\r\n$1\r\n1\r\n$1\r\nm\r\n", 7)):
                samples = {"keg": [], "redis": []}
                conns = {}
                for s in (keg, redis):
                    conns[s.name] = (socket.create_connection(("127.0.0.1", s.port)),
                                     socket.create_connection(("127.0.0.1", s.port)))
                for i in range(n):  # alternating keg and Redis
                    for s in ((keg, redis) if i % 2 == 0 else (redis, keg)):
                        w, p = conns[s.name]
                        samples[s.name].append(wake_once(w, p, pop, push, lines))
                for pair in conns.values():
                    for c in pair:
                        c.close()
                for name, v in samples.items():
                    v.sort()
                    res[(kind, name)] = (v[len(v) // 2], v[int(len(v) * 0.99)], v[-1])
                print(f"wake {kind}, {policy}: keg p50 {res[(kind, 'keg')][0]:.3f} p99 "
                      f"{res[(kind, 'keg')][1]:.3f} max {res[(kind, 'keg')][2]:.3f} ms; Redis p50 "
                      f"{res[(kind, 'redis')][0]:.3f} p99 {res[(kind, 'redis')][1]:.3f} max "
                      f"{res[(kind, 'redis')][2]:.3f} ms ({n} wakes each)", flush=True)
        finally:
            keg.stop()
            redis.stop()


def with_replicas(opts, workdir):
    """Issue 19's target: SET and GET on a primary with two replicas attached, every node durable
    under the same fsync policy (Redis's replicas with appendonly too), keg and Redis alternating,
    unpipelined and -P 16. Rows as the main table's."""
    policy = "everysec"
    d = os.path.join(workdir, policy)
    keg, redis = start_pair(policy, d)
    nodes = [keg, redis]
    try:
        for i in range(2):
            nodes.append(Server(f"keg-replica{i}", lambda port, dd: [
                KEG, "--port", str(port), "--dir", os.path.join(dd, "data"), "--appendfsync", policy,
                "--logfile", "keg.log", "--replicaof", "127.0.0.1", str(keg.port)], d))
            nodes.append(Server(f"redis-replica{i}", lambda port, dd: [
                "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", dd, "--save", "",
                "--appendonly", "yes", "--appendfsync", policy, "--auto-aof-rewrite-percentage", "0",
                "--logfile", "redis.log", "--replicaof", "127.0.0.1", str(redis.port)], d))
        for s in (keg, redis):
            wait_field(s, "connected_slaves", "2")
        base = ["-c", "50", "-r", "100000", "-d", "100"]
        for s in (keg, redis):  # warm up: every key exists (and is replicated)
            bench(s, ["-t", "set", *base], 50000 if opts.quick else 300000)
        results = []
        for name, args, n in ((f"SET, 2 replicas, {policy}", ["-t", "set", *base], 300000),
                              (f"GET, 2 replicas, {policy}", ["-t", "get", *base], 300000),
                              (f"SET -P 16, 2 replicas, {policy}", ["-t", "set", "-P", "16", *base], 2000000),
                              (f"GET -P 16, 2 replicas, {policy}", ["-t", "get", "-P", "16", *base], 2000000)):
            count = n // 6 if opts.quick else n
            samples = {"keg": [], "redis": []}
            for rnd in range(opts.rounds):
                for s in ((keg, redis) if rnd % 2 == 0 else (redis, keg)):
                    samples[s.name].append(bench(s, args, count))
            results.append((name, count, samples["keg"], samples["redis"]))
            print_row(results[-1])
        return results
    finally:
        for s in nodes:
            s.stop()


class LatencyProbe(threading.Thread):
    """GET and SET of existing keys (key:<n>, n < keys) in turn on one connection, about 1,000 a
    second: each request's latency in seconds goes to `samples` (swap it out to start a phase)."""

    def __init__(self, port, keys):
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.keys = keys
        self.samples = []
        self.stopping = threading.Event()
        self.buf = b""

    def _line(self):
        while b"\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("probe connection closed")
            self.buf += data
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _reply(self):
        line = self._line()
        if line[:1] == b"$" and int(line[1:]) >= 0:
            n = int(line[1:]) + 2
            while len(self.buf) < n:
                self.buf += self.sock.recv(65536)
            self.buf = self.buf[n:]
        elif line[:1] == b"-":
            raise RuntimeError(f"probe: {line!r}")

    def run(self):
        rng = random.Random(7)
        i = 0
        while not self.stopping.is_set():
            key = b"key:%d" % rng.randrange(self.keys)
            if i % 2 == 0:
                cmd = b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(key), key)
            else:
                cmd = b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$5\r\nprobe\r\n" % (len(key), key)
            t0 = time.perf_counter()
            self.sock.sendall(cmd)
            self._reply()
            self.samples.append(time.perf_counter() - t0)
            i += 1
            time.sleep(0.001)

    def phase(self, seconds=None):
        """Starts a new phase; after `seconds` (if given) returns the samples of the one that ended."""
        if seconds:
            time.sleep(seconds)
        done, self.samples = self.samples, []
        return done


def p99_ms(samples):
    return statistics.quantiles(samples, n=100)[98] * 1000 if len(samples) >= 100 else float("nan")


def full_sync(opts, workdir):
    """Issue 19's target: a full sync of --keys keys (default 10,000,000: DEBUG POPULATE, 32-byte
    values) from a primary to a new replica of the same kind, from REPLICAOF until the replica's
    link is up with the data loaded; keg against Redis (fork and RDB, diskless with no delay: its
    fastest), in turn, --rounds rounds. Meanwhile a probe measures the primary's latency (GET / SET,
    about 1,000 a second): its p99 during the sync against 10 s of steady state before, and the
    primary's RSS growth during the sync. Every node durable under everysec."""
    policy = "everysec"
    keys = opts.keys
    d = os.path.join(workdir, policy)
    # --replica-cpu N: replicas run on CPU N only, the primaries and this process (the probe) on
    # the others: a replica on its own machine, as near as one machine gets.
    primary_cpus = None
    if opts.replica_cpu is not None:
        primary_cpus = sorted(os.sched_getaffinity(0) - {opts.replica_cpu})
        if not primary_cpus:
            sys.exit("--replica-cpu: no CPU left for the primaries")
        os.sched_setaffinity(0, primary_cpus)  # the probe, and the primaries started below
    keg = Server("keg", lambda port, dd: [KEG, "--port", str(port), "--dir", os.path.join(dd, "data"),
                                          "--appendfsync", policy, "--logfile", "keg.log",
                                          "--enable-debug-command", "yes"], d)
    redis = Server("redis", lambda port, dd: [
        "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", dd, "--save", "",
        "--appendonly", "yes", "--appendfsync", policy, "--auto-aof-rewrite-percentage", "0",
        "--logfile", "redis.log", "--enable-debug-command", "yes", "--repl-diskless-sync-delay", "0"], d)
    # --replica-nice N: replicas (either kind) run at that nice value, a stand-in for their own
    # machine (on this 2-vCPU VM a loading replica otherwise takes the primary's CPU, and the
    # primary's p99 measures the replica as much as the primary).
    nice = ["nice", "-n", str(opts.replica_nice)] if opts.replica_nice else []
    if opts.replica_idle:  # SCHED_IDLE: any other runnable thread goes first
        nice = ["chrt", "--idle", "0"] + nice
    if opts.replica_cpu is not None:
        nice = ["taskset", "-c", str(opts.replica_cpu)] + nice
    replica_argv = {
        "keg": lambda port, dd: nice + [KEG, "--port", str(port), "--dir", os.path.join(dd, "data"),
                                        "--appendfsync", policy, "--logfile", "keg.log"],
        "redis": lambda port, dd: nice + ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", dd,
                                          "--save", "", "--appendonly", "yes", "--appendfsync", policy,
                                          "--auto-aof-rewrite-percentage", "0", "--logfile", "redis.log"]}
    kinds = [k for k in ("keg", "redis") if k in opts.fullsync_servers.split(",")]
    rows = {k: [] for k in kinds}
    try:
        for s in (x for x in (keg, redis) if x.name in kinds):
            t0 = time.time()
            s.command("DEBUG", "POPULATE", str(keys), "key", "32")
            if s.command("DBSIZE") != str(keys):
                sys.exit(f"{s.name}: DEBUG POPULATE left DBSIZE {s.command('DBSIZE')}")
            print(f"{s.name}: {keys:,} keys populated in {time.time() - t0:.1f} s", flush=True)
        # keg writes hint files for its sealed data files in the background (keg-compact): wait for
        # them, or the first rounds measure that work beside the sync.
        t0 = time.time()
        while "keg" in kinds and keg.info("hint_files") != keg.info("sealed_data_files") and time.time() - t0 < 300:
            time.sleep(0.5)
        print(f"keg: hint files written {time.time() - t0:.1f} s later", flush=True)
        for rnd in range(opts.rounds):
            for primary in (x for x in ((keg, redis) if rnd % 2 == 0 else (redis, keg)) if x.name in kinds):
                probe = LatencyProbe(primary.port, keys)
                probe.start()
                steady = probe.phase(10)
                rss0 = primary.status_kb("VmRSS")
                replica = Server(f"{primary.name}-replica{rnd}", replica_argv[primary.name], d)
                rss_max = rss0
                t0 = time.time()
                replica.query("REPLICAOF", "127.0.0.1", str(primary.port))
                while True:
                    rss_max = max(rss_max, primary.status_kb("VmRSS"))
                    info = replica.query("INFO", "replication")
                    if "master_link_status:up" in info and "master_sync_in_progress:0" in info:
                        break
                    if time.time() - t0 > 1800:
                        sys.exit(f"{primary.name}: the full sync did not end in 30 minutes")
                    time.sleep(0.05)
                took = time.time() - t0
                during = probe.phase()
                probe.stopping.set()
                probe.join()
                if replica.command("DBSIZE") != str(keys):
                    sys.exit(f"{primary.name}'s replica has DBSIZE {replica.command('DBSIZE')}")
                row = (took, p99_ms(steady), p99_ms(during), (rss_max - rss0) / 1024)
                rows[primary.name].append(row)
                print(f"full sync of {keys:,} keys, {primary.name}: {took:.1f} s; primary p99 steady "
                      f"{row[1]:.2f} ms, during the sync {row[2]:.2f} ms ({row[2] / row[1]:.1f}x); primary "
                      f"RSS +{row[3]:,.0f} MiB", flush=True)
                replica.stop()
                shutil.rmtree(replica.dir, ignore_errors=True)
        med = {k: [statistics.median(r[i] for r in v) for i in range(4)] for k, v in rows.items()}
        where = (f"{policy}; replicas at nice {opts.replica_nice}{', SCHED_IDLE' if opts.replica_idle else ''}"
                 f"{f', on CPU {opts.replica_cpu}, primaries on {primary_cpus}' if primary_cpus else ''}; medians of {opts.rounds}")
        if len(kinds) < 2:
            m = med[kinds[0]]
            print(f"full sync of {keys:,} keys ({where}): {kinds[0]} {m[0]:.1f} s; primary p99 during / steady "
                  f"{m[2]:.2f} / {m[1]:.2f} ms ({m[2] / m[1]:.1f}x); primary RSS growth {m[3]:,.0f} MiB")
            return med
        print(f"full sync of {keys:,} keys ({where}): keg {med['keg'][0]:.1f} s, "
              f"redis {med['redis'][0]:.1f} s: keg {med['redis'][0] / med['keg'][0]:.2f}x faster; primary p99 "
              f"during / steady: keg {med['keg'][2]:.2f} / {med['keg'][1]:.2f} ms "
              f"({med['keg'][2] / med['keg'][1]:.1f}x), redis {med['redis'][2]:.2f} / {med['redis'][1]:.2f} ms "
              f"({med['redis'][2] / med['redis'][1]:.1f}x); primary RSS growth keg {med['keg'][3]:,.0f} MiB, "
              f"redis {med['redis'][3]:,.0f} MiB")
        return med
    finally:
        keg.stop()
        redis.stop()


PUBSUB_BENCH = os.path.join(ROOT, "build", "bench", "tools", "keg_pubsub_bench")


def pubsub_run(server, args):
    """One tools/bench/pubsub_bench.cc run: its key=value line as a dict of floats, plus the
    server's CPU seconds."""
    before = cpu_seconds(server.proc.pid)
    out = subprocess.run([PUBSUB_BENCH, "--port", str(server.port), *args], capture_output=True, text=True,
                         timeout=600)
    if out.returncode != 0:
        sys.exit(f"pubsub_bench failed against {server.name}: {out.stderr}")
    r = {k: float(v) for k, v in (kv.split("=") for kv in out.stdout.split())}
    r["cpu"] = cpu_seconds(server.proc.pid) - before
    return r


def subscription_memory(server, clients=100, channels=1000, round_id=0):
    """RSS growth per subscription: `clients` connections (opened first, so their own memory is not
    counted) each SUBSCRIBE to `channels` distinct channels (new names each round)."""
    socks = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(clients)]
    try:
        time.sleep(0.5)
        before = server.status_kb("VmRSS")
        for i, c in enumerate(socks):
            names = [f"channel:{round_id}:{i}:{j}".encode() for j in range(channels)]
            cmd = b"*%d\r\n$9\r\nSUBSCRIBE\r\n" % (len(names) + 1) + b"".join(
                b"$%d\r\n%s\r\n" % (len(n), n) for n in names)
            c.sendall(cmd)
        for c in socks:  # every confirmation read: the subscriptions are in place
            want, got = channels, b""
            while got.count(b"subscribe\r\n") < want:
                got += c.recv(65536)
        time.sleep(0.5)
        return (server.status_kb("VmRSS") - before) * 1024 / (clients * channels)
    finally:
        for c in socks:
            c.close()


def pubsub(opts, workdir):
    """The pub/sub issue's targets: delivery rate to 50 subscribers, publish-to-delivery p99 with
    10,000 subscribers, memory per subscription. Both servers run at once (pub/sub writes nothing
    to disk: the fsync policy does not matter, everysec)."""
    r = {}
    keg = Server("keg", lambda port, d: [KEG, "--port", str(port), "--dir", os.path.join(d, "data"),
                                         "--maxclients", "12000", "--logfile", "keg.log"], workdir)
    redis = Server("redis", lambda port, d: [
        "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", d, "--save", "",
        "--appendonly", "no", "--maxclients", "12000", "--logfile", "redis.log"], workdir)
    try:
        seconds = "2" if opts.quick else "5"
        cases = [
            ("fanout", "PUBLISH to 50 subscribers, -P 16",
             ["--subscribers", "50", "--publishers", "1", "--pipeline", "16", "--seconds", seconds]),
            ("fanout4", "PUBLISH to 50 subscribers, 4 publishers -P 16",
             ["--subscribers", "50", "--publishers", "4", "--pipeline", "16", "--seconds", seconds]),
            ("latency", "10,000 subscribers, 5 PUBLISH/s",
             ["--subscribers", "10000", "--rate", "5", "--seconds", "4" if opts.quick else "10"]),
        ]
        for key, label, args in cases:
            samples = {"keg": [], "redis": []}
            for rnd in range(opts.rounds):
                for s in ((keg, redis) if rnd % 2 == 0 else (redis, keg)):
                    samples[s.name].append(pubsub_run(s, args))
            r[key] = (label, samples)
            k = statistics.median(x["delivered"] for x in samples["keg"])
            d = statistics.median(x["delivered"] for x in samples["redis"])
            kp = statistics.median(x["p99_us"] for x in samples["keg"])
            dp = statistics.median(x["p99_us"] for x in samples["redis"])
            print(f"{label:45s} delivered/s keg {k:12,.0f} redis {d:12,.0f} ratio {k / d:5.2f}  "
                  f"p99 us keg {kp:8.1f} redis {dp:8.1f}", flush=True)
        # Memory on fresh servers (the runs above leave freed memory behind for reuse).
        mem = {"keg": [], "redis": []}
        for rnd in range(opts.rounds):
            for s in ((keg, redis) if rnd % 2 == 0 else (redis, keg)):
                s.stop()
                s.start()
                mem[s.name].append(subscription_memory(s, round_id=rnd))
        r["memory"] = mem
        print(f"memory per subscription: keg {statistics.median(mem['keg']):.0f} B, "
              f"redis {statistics.median(mem['redis']):.0f} B", flush=True)
    finally:
        keg.stop()
        redis.stop()
    return r


def pubsub_lines(r, opts):
    med = statistics.median
    lines = ["## Pub/sub", "",
             f"`tools/bench/pubsub_bench.cc` against both servers, alternately, median of {opts.rounds}: "
             "subscribers on one channel read through epoll by one thread; publishers keep 16 "
             "PUBLISHes in flight (or send at a fixed rate); every message carries its send time, "
             "so each delivery's delay is measured. 32-byte messages. Memory: RSS growth when 100 "
             "connected clients subscribe to 1,000 channels each (fresh servers).", "",
             "| workload | keg delivered/s | Redis delivered/s | keg / Redis | keg p50 / p99 µs | Redis p50 / p99 µs | keg CPU s | Redis CPU s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for key in ("fanout", "fanout4", "latency"):
        label, s = r[key]
        k, d = s["keg"], s["redis"]
        kd, dd = med(x["delivered"] for x in k), med(x["delivered"] for x in d)
        lines.append(f"| {label} | {kd:,.0f} | {dd:,.0f} | **{kd / dd:.2f}** | "
                     f"{med(x['p50_us'] for x in k):.0f} / {med(x['p99_us'] for x in k):.0f} | "
                     f"{med(x['p50_us'] for x in d):.0f} / {med(x['p99_us'] for x in d):.0f} | "
                     f"{med(x['cpu'] for x in k):.2f} | {med(x['cpu'] for x in d):.2f} |")
    km, dm = med(r["memory"]["keg"]), med(r["memory"]["redis"])
    lines += ["", f"Memory per subscription: keg {km:.0f} B, Redis {dm:.0f} B (**{km / dm:.2f}**).", ""]
    return lines


def machine():
    model = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    disk = subprocess.run(["df", "-hT", tempfile.gettempdir()], capture_output=True, text=True).stdout.splitlines()[-1]
    redis_v = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.strip()
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    return (f"{os.cpu_count()} vCPU ({model}), {mem_kb // 1024 // 1024} GiB RAM, Linux "
            f"{platform.release()}; data on `{disk.split()[1]}` ({disk.split()[0]}); "
            f"{redis_v.split(' sha=')[0]}; keg at commit {commit}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--replica-idle", action="store_true",
                    help="fullsync: run the replicas under SCHED_IDLE (a stand-in for their own machine)")
    ap.add_argument("--replica-nice", type=int, default=0,
                    help="fullsync: run the replicas at this nice value (a stand-in for their own machine)")
    ap.add_argument("--replica-cpu", type=int,
                    help="fullsync: run the replicas on this CPU only and the primaries and the probe on "
                         "the others (a stand-in for their own machine)")
    ap.add_argument("--fullsync-servers", default="keg,redis",
                    help="fullsync: the primaries to measure, keg, redis or both (keg,redis)")
    ap.add_argument("--quick", action="store_true", help="fewer requests (a smoke run)")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs"))
    ap.add_argument("--replot", action="store_true", help="redraw the chart from benchmarks.md")
    ap.add_argument("--keys", type=int, help="keys of the memory / restart / compaction part "
                    "(default 10,000,000; 1,000,000 with --quick)")
    ap.add_argument("--only", help="run only workloads whose name contains this text; prints the "
                    "rows and leaves docs/ alone (for trying a change)")
    opts = ap.parse_args()
    if opts.keys is None:
        opts.keys = 1_000_000 if opts.quick else 10_000_000
    if opts.replot:
        replot(opts.out)
        return

    workdir = tempfile.mkdtemp(prefix="keg_bench_")
    results = []  # (workload, keg samples, redis samples)
    try:
        for policy in ("everysec", "always"):
            names = [w[0] for w in workloads(policy)] + [f"GET {x} values, {policy}" for x in ("1 KB", "64 KiB")]
            if opts.only and not any(opts.only in n for n in names):
                continue
            keg, redis = start_pair(policy, os.path.join(workdir, policy))
            try:
                for s in (keg, redis):  # warm up: every key exists, both servers are hot
                    bench(s, ["-t", "set", "-c", "50", "-r", "100000", "-d", "100"], 300000 if not opts.quick else 50000)
                    if s.command("SCRIPT", "LOAD", SCRIPT) != SCRIPT_SHA:
                        sys.exit(f"SCRIPT LOAD on {s.name} did not answer {SCRIPT_SHA}")
                    load_collections(s)
                settled = 0.0  # CPU seconds of background work waited out between runs
                for name, args, n, quick_n in workloads(policy):
                    if opts.only and opts.only not in name:
                        continue
                    samples = {"keg": [], "redis": []}
                    count = quick_n if opts.quick else n
                    for rnd in range(opts.rounds):
                        order = (keg, redis) if rnd % 2 == 0 else (redis, keg)
                        for s in order:
                            settled += settle((keg, redis))
                            samples[s.name].append(bench(s, args, count))
                    results.append((name, count, samples["keg"], samples["redis"]))
                    print_row(results[-1])
                if policy == "everysec":
                    for size, keys, n in (("1 KB", "100000", 200000), ("64 KiB", "1000", 30000)):
                        if opts.only and opts.only not in f"GET {size} values, everysec":
                            continue
                        d = "1024" if size == "1 KB" else "65536"
                        for s in (keg, redis):
                            bench(s, ["-t", "set", "-c", "50", "-r", keys, "-d", d], int(keys) * 3)
                        args = ["-t", "get", "-c", "50", "-r", keys, "-d", d]
                        samples = {"keg": [], "redis": []}
                        count = n // 5 if opts.quick else n
                        for rnd in range(opts.rounds):
                            order = (keg, redis) if rnd % 2 == 0 else (redis, keg)
                            for s in order:
                                settled += settle((keg, redis))
                                samples[s.name].append(bench(s, args, count))
                        results.append((f"GET {size} values, everysec", count, samples["keg"], samples["redis"]))
                        print_row(results[-1])
                print(f"{policy}: background work waited out between runs: {settled:.1f} s of CPU", flush=True)
            finally:
                keg.stop()
                redis.stop()
        pubsub_result = None
        if not opts.only or opts.only in ("pubsub", "PUBLISH"):
            pubsub_result = pubsub(opts, os.path.join(workdir, "pubsub"))
        scaled = None
        if not opts.only or opts.only == "scale":
            scaled = scale(opts, os.path.join(workdir, "scale"))
        if opts.only == "collection-memory":  # issue 17's memory targets (about 2 GB of RAM)
            collection_memory(opts, os.path.join(workdir, "collection-memory"))
        if opts.only == "wake":  # issue 18's blocked-client wake latency
            wake_latency(opts, os.path.join(workdir, "wake"))
        if opts.only == "replicas":  # issue 19's: SET / GET with two replicas attached
            with_replicas(opts, os.path.join(workdir, "replicas"))
        if opts.only == "fullsync":  # issue 19's: a full sync of --keys keys, and the primary's p99
            full_sync(opts, os.path.join(workdir, "fullsync"))
        if opts.only == "zset-list-memory":  # issue 18's: 1,000,000 members in one sorted set / list
            collection_memory(opts, os.path.join(workdir, "zset-list-memory"), ("zset", "list"))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if not opts.only:
        write_report(results, scaled, opts, pubsub_result)


def summarize(samples, requests):
    """Medians: requests/s, p50 ms, p99 ms, CPU seconds per million requests."""
    return (statistics.median(x[0] for x in samples), statistics.median(x[1] for x in samples),
            statistics.median(x[2] for x in samples),
            statistics.median(x[3] for x in samples) / requests * 1e6,
            statistics.median(x[4] for x in samples))


def print_row(r):
    name, requests, k, rd = r
    kr, _, _, kc, kb = summarize(k, requests)
    rr, _, _, rc, rb = summarize(rd, requests)
    # Client busy: the share of one core redis-benchmark used; near 1 the client, not the server,
    # sets the rate.
    print(f"{name:28s} keg {kr:10,.0f}/s  redis {rr:10,.0f}/s  ratio {kr / rr:5.2f}  "
          f"CPU s/M req keg {kc:5.2f} redis {rc:5.2f}  client busy keg {kb:4.2f} redis {rb:4.2f}", flush=True)


def plot(data, out_dir):
    """A bar per workload: keg's throughput divided by Redis's (1.0 = parity)."""
    dat = os.path.join(tempfile.gettempdir(), "keg_bench.dat")
    with open(dat, "w") as f:
        for name, kr, rr in data:
            f.write(f"\"{name}\" {kr / rr:.3f}\n")
    script = f"""
set terminal pngcairo size 1100,520 font ",10"
set output "{os.path.join(out_dir, 'benchmarks.png')}"
set title "keg / Redis 7.0 throughput, same appendfsync (above 1.0: keg is faster)"
set style data histogram
set style fill solid 0.8 border -1
set boxwidth 0.7
set xtics rotate by -30 scale 0
set grid ytics
set yrange [0:*]
unset key
plot "{dat}" using 2:xtic(1) lc rgb "#2b7bba", 1 with lines lw 2 lc rgb "#d7301f"
"""
    subprocess.run(["gnuplot"], input=script, text=True, check=True)


def replot(out_dir):
    """Redraws the chart from the table in docs/benchmarks.md (no new measurements)."""
    data = []
    with open(os.path.join(out_dir, "benchmarks.md")) as f:
        for line in f:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) >= 3 and cells[1].replace(",", "").isdigit():
                data.append((cells[0], float(cells[1].replace(",", "")), float(cells[2].replace(",", ""))))
    plot(data, out_dir)


def scale_lines(r, opts):
    keys = f"{r['keys']:,}"
    med = statistics.median
    kr, ra, rr = med(r["keg_restart"]), med(r["redis_restart_aof"]), med(r["redis_restart_rdb"])
    kp, rp = r["keg_p99"], r["redis_p99"]
    note = lambda covered: "" if covered else " (it ended before the runs did)"
    return [
        f"## At {keys} keys", "",
        f"16-byte keys (`key:%012d`, redis-benchmark's names), 100-byte values, loaded with "
        f"`redis-cli --pipe` into both servers (everysec). Memory is the growth over the empty "
        f"server: keg's anonymous memory (`RssAnon`, the keydir; values live in the page cache), "
        f"Redis's RSS. Restart: from starting the process to the first `+PONG` (Redis answers "
        f"`-LOADING` until it has loaded), median of {opts.rounds}.", "",
        "| measure | keg | Redis | keg / Redis |", "|---|---:|---:|---:|",
        f"| memory per key | {r['keg_anon_b']:.1f} B (after a restart: "
        f"{r['keg_anon_after_restart_b']:.1f} B) | {r['redis_rss_b']:.1f} B (`used_memory`: "
        f"{r['redis_used_b']:.1f} B) | **{r['keg_anon_b'] / r['redis_rss_b']:.2f}** |",
        f"| restart | {kr:.2f} s | {ra:.2f} s from the AOF as written; {rr:.2f} s after "
        f"BGREWRITEAOF (RDB preamble) | **{ra / kr:.1f}x** / **{rr / kr:.1f}x** faster |",
        f"| load with `redis-cli --pipe` | {r['keg_load_s']:.1f} s | {r['redis_load_s']:.1f} s | "
        f"{r['redis_load_s'] / r['keg_load_s']:.2f}x faster |", "",
        f"p99 latency (ms, 50 clients, unpipelined, random keys of the {keys}) in steady state and "
        f"while keg runs `COMPACT ASYNC` over every sealed file (for reference, Redis while it runs "
        f"`BGREWRITEAOF`), median of {opts.rounds}:", "",
        "| server | SET steady | SET during | GET steady | GET during | during / steady (SET, GET) |",
        "|---|---:|---:|---:|---:|---:|",
        f"| keg, COMPACT{note(kp[4])} | {kp[0]:.3f} | {kp[2]:.3f} | {kp[1]:.3f} | {kp[3]:.3f} | "
        f"**{kp[2] / kp[0]:.2f}**, **{kp[3] / kp[1]:.2f}** |",
        f"| Redis, BGREWRITEAOF{note(rp[4])} | {rp[0]:.3f} | {rp[2]:.3f} | {rp[1]:.3f} | {rp[3]:.3f} | "
        f"{rp[2] / rp[0]:.2f}, {rp[3] / rp[1]:.2f} |", ""]


def write_report(results, scaled, opts, pubsub_result=None):
    os.makedirs(opts.out, exist_ok=True)
    lines = []
    data = []
    for name, requests, k, rd in results:
        kr, k50, k99, kc, kb = summarize(k, requests)
        rr, r50, r99, rc, rb = summarize(rd, requests)
        lines.append((name, kr, rr, kr / rr, k50, r50, k99, r99, kc, rc, max(kb, rb)))
        data.append((name, kr, rr))
    md = ["# Benchmarks: keg vs Redis, side by side", "",
          f"Machine: {machine()}.", "",
          f"Command: `tools/bench.sh{' --quick' if opts.quick else ''}` ({opts.rounds} rounds, keg and "
          "redis-server run at the same time and are measured alternately, A B A B ...; medians). "
          "Redis runs with `appendonly yes`, the same `appendfsync`, AOF rewrite off, no RDB. "
          "redis-benchmark 7.0: 50 clients, 100,000 random keys, 100-byte values unless said. "
          "CPU is the server's user + system time (all threads) during a run, from /proc. "
          "Each run starts once both servers are idle (under 5% of a core for 1.1 s): keg's "
          "compaction of earlier rows' dead records is not counted in a later row.", "",
          f"Run on {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC.", "",
          "| workload | keg req/s | Redis req/s | keg / Redis | keg p50 / p99 ms | Redis p50 / p99 ms | keg CPU s / M req | Redis CPU s / M req | Redis / keg CPU | client busy |",
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, kr, rr, ratio, k50, r50, k99, r99, kc, rc, busy in lines:
        md.append(f"| {name} | {kr:,.0f} | {rr:,.0f} | **{ratio:.2f}** | {k50:.3f} / {k99:.3f} | "
                  f"{r50:.3f} / {r99:.3f} | {kc:.2f} | {rc:.2f} | {rc / kc:.2f} | {busy:.0%} |")
    md += ["", "CPU s / M req: CPU seconds the server used per million requests (median over the "
           "rounds); Redis / keg CPU above 1 means keg needs less CPU per request. Client busy: the "
           "share of one core the redis-benchmark process used (the higher of the two servers' "
           "medians); near 100% the client, not the server, sets the pace, and on 2 cores the "
           "server and the client share the machine.", "", "![keg / Redis throughput ratio per workload](benchmarks.png)", ""]
    if pubsub_result:
        md += pubsub_lines(pubsub_result, opts)
    if scaled:
        md += scale_lines(scaled, opts)
    # Hand-written analysis below the marker survives a new run.
    path = os.path.join(opts.out, "benchmarks.md")
    kept = ""
    if os.path.exists(path):
        with open(path) as f:
            old = f.read()
        if NOTES_MARKER in old:
            kept = old[old.index(NOTES_MARKER):]
    with open(path, "w") as f:
        f.write("\n".join(md) + "\n" + (kept or NOTES_MARKER + "\n"))
    plot(data, opts.out)
    print(f"wrote {os.path.join(opts.out, 'benchmarks.md')} and benchmarks.png")


if __name__ == "__main__":
    main()
