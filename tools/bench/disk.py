#!/usr/bin/python3
"""Data larger than memory: keg-server in a memory cgroup, serving a data set 4x the cgroup's limit.

In one run, on this machine:
  1. the reference: fio 4 KiB random reads (O_DIRECT, libaio) on keg's own data file at queue depth
     20 and at depth 1 (what the disk can do);
  2. quiet latencies: GET p99 of 1,000 hot keys (1 client) and SET p99 (1 client) of new keys and
     of keys of the data set, nothing else;
  3. the page cache dropped, 20 clients GET random keys of the whole data set (cold reads) while the
     hot-key client and the SET client run again: cold GET/s and p50/p99, the disk's read MB/s,
     hot GET p99, SET p99; twice: cold reads through the event loop's io_uring (the default), then
     through the read pool's threads (CONFIG SET cold-read-io-uring no);
  4. memory per key, outside the cgroup: the anonymous memory the server grows by for 10,000,000
     16-byte keys with 100-byte values, without and with a TTL.
Writes the results between markers in docs/benchmarks.md and a chart to docs/benchmarks-disk.png
(unless --no-write).

Usage: tools/bench-disk.sh [--keys N] [--value-size B] [--limit-mb M] [--server PATH] [--no-write]
Needs root (cgroups, drop_caches), fio, redis-benchmark and gnuplot (tools/install-deps.sh --bench).
"""
import argparse
import csv
import datetime
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from side_by_side import free_port, wait_port  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KEG = os.path.join(ROOT, "build", "bench", "src", "server", "keg-server")
BEGIN = "<!-- bench-disk: begin (written by tools/bench-disk.sh) -->"
END = "<!-- bench-disk: end -->"


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class MemoryCgroup:
    """A memory cgroup with a hard limit (v2 if the machine's unified hierarchy has the memory
    controller, else v1)."""

    def __init__(self, limit_bytes):
        name = f"keg-bench-disk-{os.getpid()}"
        v2_root = "/sys/fs/cgroup"
        if os.path.exists(f"{v2_root}/cgroup.controllers") and "memory" in open(f"{v2_root}/cgroup.controllers").read():
            self.version = 2
            with open(f"{v2_root}/cgroup.subtree_control", "w") as f:
                f.write("+memory")
            self.path = f"{v2_root}/{name}"
            os.mkdir(self.path)
            with open(f"{self.path}/memory.max", "w") as f:
                f.write(str(limit_bytes))
        elif os.path.isdir("/sys/fs/cgroup/memory"):
            self.version = 1
            self.path = f"/sys/fs/cgroup/memory/{name}"
            os.mkdir(self.path)
            with open(f"{self.path}/memory.limit_in_bytes", "w") as f:
                f.write(str(limit_bytes))
        else:
            sys.exit("no memory cgroup controller on this machine (neither cgroup v2 nor v1)")

    def add(self, pid):
        with open(f"{self.path}/cgroup.procs", "w") as f:
            f.write(str(pid))

    def remove(self):
        for _ in range(50):
            try:
                os.rmdir(self.path)
                return
            except OSError:
                time.sleep(0.1)


def start_keg(server, workdir, port, extra=()):
    os.makedirs(workdir, exist_ok=True)
    argv = [server, "--port", str(port), "--dir", os.path.join(workdir, "data"), "--appendfsync", "everysec",
            "--logfile", os.path.join(workdir, "keg.log"), "--save", "", *extra]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, proc, timeout=600)
    return proc


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def load(port, prefix, count, value_size, ttl_ms=0):
    """SETs prefix + 12-digit numbers (redis-benchmark's __rand_int__ form) 0..count-1, pipelined;
    waits for every reply."""
    sock = socket.create_connection(("127.0.0.1", port))
    replies = [0]
    expect = count

    def reader():
        buf = b""
        while replies[0] < expect:
            data = sock.recv(1 << 20)
            if not data:
                break
            buf += data
            n = buf.count(b"\r\n")
            replies[0] += n
            buf = buf[buf.rfind(b"\r\n") + 2:]

    t = threading.Thread(target=reader)
    t.start()
    filler = (b"0123456789abcdef" * (value_size // 16 + 1))[:value_size]
    tail = b"" if ttl_ms == 0 else b"$2\r\nPX\r\n$%d\r\n%d\r\n" % (len(str(ttl_ms)), ttl_ms)
    head = b"*3\r\n" if ttl_ms == 0 else b"*5\r\n"
    chunk = []
    size = 0
    last = time.time()
    for i in range(count):
        key = b"%s%012d" % (prefix, i)
        chunk.append(b"%s$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n%s" % (head, len(key), key, value_size, filler, tail))
        size += value_size + 64
        if size >= 4 << 20:
            sock.sendall(b"".join(chunk))
            chunk, size = [], 0
            if time.time() - last >= 5:
                last = time.time()
                log(f"  loaded {i + 1:,} of {count:,} keys")
    if chunk:
        sock.sendall(b"".join(chunk))
    t.join()
    sock.close()
    if replies[0] != count:
        sys.exit(f"load: {replies[0]} replies for {count} SETs")


def bench(port, args, clients, requests):
    """redis-benchmark: returns (requests per second, p50 ms, p99 ms)."""
    out = subprocess.run(["redis-benchmark", "-p", str(port), "-c", str(clients), "-n", str(requests), "--csv",
                          *args], capture_output=True, text=True, check=True).stdout
    rows = list(csv.reader(io.StringIO(out)))
    h, v = rows[0], rows[1]
    return float(v[h.index("rps")]), float(v[h.index("p50_latency_ms")]), float(v[h.index("p99_latency_ms")])


def fio(path, depth, seconds, buffered_in=None):
    """Read IOPS of fio's 4 KiB random reads: O_DIRECT with libaio, or (buffered_in: a MemoryCgroup)
    buffered through the page cache with io_uring, as keg reads, from inside that cgroup. Returns
    (IOPS, CPU % of one core) for the buffered form, IOPS for the other."""
    engine = ["--direct=0", "--ioengine=io_uring", "--file_service_type=random"] if buffered_in else \
        ["--direct=1", "--ioengine=libaio"]
    if buffered_in:
        drop_caches()
    out = subprocess.run(["fio", "--name=ref", f"--filename={path}", "--rw=randread", "--bs=4k", *engine,
                          f"--iodepth={depth}", f"--runtime={seconds}", "--time_based",
                          "--readonly", "--output-format=terse", "--terse-version=3"],
                         capture_output=True, text=True, check=True,
                         preexec_fn=(lambda: buffered_in.add(os.getpid())) if buffered_in else None).stdout
    fields = out.strip().splitlines()[-1].split(";")
    if buffered_in:
        return float(fields[7]), float(fields[87].rstrip("%")) + float(fields[88].rstrip("%"))
    return float(fields[7])  # read IOPS


def disk_read_bytes():
    """Bytes read from block devices that are not partitions or virtual (sectors * 512)."""
    total = 0
    with open("/proc/diskstats") as f:
        for line in f:
            p = line.split()
            name = p[2]
            if name.startswith(("loop", "ram", "zram", "dm-")):
                continue
            if os.path.exists(f"/sys/block/{name}"):
                total += int(p[5]) * 512
    return total


def rss_anon(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


def info(port, field):
    out = subprocess.run(["redis-cli", "-p", str(port), "info", "keg"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    return ""


def drop_caches():
    subprocess.run(["sync"], check=True)
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3")


def config_set(port, name, value):
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(f"*4\r\n$6\r\nCONFIG\r\n$3\r\nSET\r\n${len(name)}\r\n{name}\r\n${len(value)}\r\n{value}\r\n".encode())
        reply = s.recv(100)
    if not reply.startswith(b"+OK"):
        sys.exit(f"CONFIG SET {name} {value}: {reply!r}")


def cpu_snapshot(pid):
    """(busy, total) jiffies of the whole machine and {thread name: jiffies} of process pid's threads."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]  # idle + iowait
    threads = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                st = f.read()
        except OSError:
            continue
        name = st[st.index("(") + 1:st.rindex(")")]
        rest = st[st.rindex(")") + 2:].split()
        name = "keg-fetch" if name.startswith("keg-fetch") else name
        threads[name] = threads.get(name, 0) + int(rest[11]) + int(rest[12])  # utime + stime
    return sum(v) - idle, sum(v), threads


def cpu_use(before, after, ncpu):
    """Where the machine's CPU went between two snapshots, in % of one core: the machine, keg's threads."""
    total = (after[1] - before[1]) / ncpu  # jiffies of one core
    busy = 100.0 * (after[0] - before[0]) / total
    threads = {n: 100.0 * (j - before[2].get(n, 0)) / total for n, j in after[2].items()}
    top = sorted(((p, n) for n, p in threads.items() if p >= 1), reverse=True)
    return busy, 100.0 * ncpu, sum(threads.values()), ", ".join(f"{n} {p:.0f} %" for p, n in top)


def perf_report(data):
    """The top of `perf report` for a perf.data file: where the profiled thread's cycles went."""
    out = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children", "--sort", "sym",
                          "--percent-limit", "1.5", "-g", "none"], capture_output=True, text=True).stdout
    return "\n".join(line for line in out.splitlines() if line.strip() and not line.startswith("#"))


def cold_phase(port, opts, value, pid, profile=None):
    """The page cache dropped, 20 clients GET random keys of the data set for opts.seconds while one
    client GETs 1,000 hot keys and one SETs: the figures of one cold phase."""
    drop_caches()
    bench(port, ["-r", "1000", "GET", "hot:__rand_int__"], 1, 5000)  # the hot keys back in
    probe_rps, _, _ = bench(port, ["-r", str(opts.keys), "GET", "key:__rand_int__"], 20, 2000)
    requests = max(2000, int(probe_rps * opts.seconds))
    side = {}

    def side_load():
        time.sleep(2)
        _, side["hot_p50"], side["hot_p99"] = bench(port, ["-r", "1000", "GET", "hot:__rand_int__"], 1, 20000)
        _, side["set_p50"], side["set_p99"] = bench(port, ["-r", "1000000", "SET", "new:__rand_int__", value], 1, 5000)
        _, _, side["setold_p99"] = bench(port, ["-r", str(opts.keys), "SET", "key:__rand_int__", value], 1, 2000)

    t = threading.Thread(target=side_load)
    commands0 = int(info(port, "cold_read_commands"))
    read0, t0, cpu0 = disk_read_bytes(), time.time(), cpu_snapshot(pid)
    t.start()
    recorder = None
    if profile:
        io_tid = str(pid)  # the main thread runs the first I/O loop (keg-io-0 in INFO's thread_cpu_*)
        recorder = subprocess.Popen(["perf", "record", "-q", "-F", "1999", "-g", "-t", io_tid, "-o", profile,
                                     "--", "sleep", str(max(2, opts.seconds // 2))],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rps, p50, p99 = bench(port, ["-r", str(opts.keys), "GET", "key:__rand_int__"], 20, requests)
    if recorder:
        recorder.wait()
    elapsed = time.time() - t0
    read1, cpu1 = disk_read_bytes(), cpu_snapshot(pid)
    t.join()
    busy, cores, keg_cpu, keg_threads = cpu_use(cpu0, cpu1, os.cpu_count())
    return dict(cpu_busy=busy, cpu_cores=cores, keg_cpu=keg_cpu, keg_threads=keg_threads, cold_rps=rps, cold_p50=p50, cold_p99=p99, disk_mb_s=(read1 - read0) / elapsed / 1e6,
                cold_seconds=elapsed, cold_read_commands=int(info(port, "cold_read_commands")) - commands0, **side)


def memory_per_key(server, workdir, keys, ttl):
    port = free_port()
    proc = start_keg(server, workdir, port)
    try:
        time.sleep(0.5)
        before = rss_anon(proc.pid)
        load(port, b"m:", keys, 100, ttl_ms=3_600_000 if ttl else 0)
        time.sleep(0.5)
        return (rss_anon(proc.pid) - before) / keys
    finally:
        stop(proc)
        shutil.rmtree(workdir, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", type=int, default=3_000_000)
    ap.add_argument("--value-size", type=int, default=1000)
    ap.add_argument("--limit-mb", type=int, default=768)
    ap.add_argument("--server", default=KEG)
    ap.add_argument("--seconds", type=int, default=20, help="length of the cold-read phase")
    # 10M: where the keydir's tables are as full as at the store's established figure (they double
    # at 80 % load, so bytes per key swing between about 20 and 40 with the key count).
    ap.add_argument("--memory-keys", type=int, default=10_000_000)
    ap.add_argument("--no-write", action="store_true", help="print the results only")
    ap.add_argument("--perf", action="store_true",
                    help="profile keg-server's event loop during the io_uring cold phase (perf record) and print "
                         "where its time goes")
    ap.add_argument("--dir", default=None, help="where the data goes (default: a temporary directory under /tmp)")
    opts = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench-disk needs root: a memory cgroup and /proc/sys/vm/drop_caches")
    work = tempfile.mkdtemp(prefix="keg-bench-disk-", dir=opts.dir)
    data_bytes = opts.keys * (opts.value_size + 48)
    limit = opts.limit_mb << 20
    log(f"data set {opts.keys:,} keys x {opts.value_size} B = {data_bytes / 2**30:.2f} GiB, "
        f"{data_bytes / limit:.1f}x the cgroup's {opts.limit_mb} MiB")
    results = {"keys": opts.keys, "value_size": opts.value_size, "limit_mb": opts.limit_mb,
               "data_gib": data_bytes / 2**30, "server": opts.server}
    cg = MemoryCgroup(limit)
    port = free_port()
    proc = None
    try:
        proc = start_keg(opts.server, os.path.join(work, "big"), port)
        cg.add(proc.pid)
        results["cgroup"] = f"v{cg.version}"
        log("loading the data set ...")
        t0 = time.time()
        load(port, b"key:", opts.keys, opts.value_size)
        load(port, b"hot:", 1000, opts.value_size)
        log(f"loaded in {time.time() - t0:.0f} s")
        data_dir = os.path.join(work, "big", "data")
        files = sorted((os.path.getsize(os.path.join(data_dir, f)), f) for f in os.listdir(data_dir) if f.endswith(".data"))
        biggest = os.path.join(data_dir, files[-1][1])

        log("fio: 4 KiB random reads, O_DIRECT, depth 20 and 1 ...")
        results["fio20"] = fio(biggest, 20, 10)
        results["fio1"] = fio(biggest, 1, 10)
        log(f"  fio {results['fio20']:.0f} IOPS at depth 20, {results['fio1']:.0f} at depth 1")
        # What the page-cache path alone can do here: buffered reads over the whole data set, in the
        # cgroup, one thread submitting through io_uring as keg's event loop does.
        every = ":".join(os.path.join(data_dir, f) for _, f in files)
        results["fio_buffered"], results["fio_buffered_cpu"] = fio(every, 20, 10, buffered_in=cg)
        log(f"  fio buffered (page cache, io_uring, depth 20, all data files, in the cgroup): "
            f"{results['fio_buffered']:.0f} IOPS at {results['fio_buffered_cpu']:.0f} % of a core")

        log("quiet: hot GET and SET, 1 client each ...")
        bench(port, ["-r", "1000", "GET", "hot:__rand_int__"], 1, 20000)  # warm the hot keys
        _, results["hot_p50_quiet"], results["hot_p99_quiet"] = bench(port, ["-r", "1000", "GET", "hot:__rand_int__"], 1, 50000)
        value = "v" * opts.value_size
        # SET of new keys (nothing to read first) and SET overwriting keys of the data set (the
        # writer confirms the old record's key: a disk read when that record is cold).
        _, results["set_p50_quiet"], results["set_p99_quiet"] = bench(
            port, ["-r", "1000000", "SET", "new:__rand_int__", value], 1, 20000)
        _, _, results["setold_p99_quiet"] = bench(port, ["-r", str(opts.keys), "SET", "key:__rand_int__", value], 1, 5000)

        # The cold phase twice in the same run: cold reads through the event loop's io_uring (the
        # default), then through the read pool's threads (CONFIG SET cold-read-io-uring no).
        for mode, prefix in (("yes", ""), ("no", "pool_")):
            config_set(port, "cold-read-io-uring", mode)
            log(f"cold ({'io_uring' if mode == 'yes' else 'read pool'}): the page cache dropped; "
                "20 clients GET random keys ...")
            profile = os.path.join(work, "perf.data") if opts.perf and mode == "yes" else None
            phase = cold_phase(port, opts, value, proc.pid, profile)
            results.update({prefix + k: v for k, v in phase.items()})
            log(f"  cold GET {phase['cold_rps']:.0f}/s p50 {phase['cold_p50']} ms p99 {phase['cold_p99']} ms, "
                f"disk {phase['disk_mb_s']:.0f} MB/s; hot GET p99 {phase.get('hot_p99')} ms; SET p99 "
                f"{phase.get('set_p99')} ms (new keys), {phase.get('setold_p99')} ms (overwriting cold keys)")
            log(f"  CPU: machine {phase['cpu_busy']:.0f} % of {phase['cpu_cores']:.0f} %, keg-server "
                f"{phase['keg_cpu']:.0f} % ({phase['keg_threads']}); the rest is the clients and the kernel's own threads")
            if profile:
                log("  where keg-io-0's cycles went (perf, symbols over 1.5 %):\n" + perf_report(profile))
        config_set(port, "cold-read-io-uring", "yes")
    finally:
        if proc is not None:
            stop(proc)
        cg.remove()
        shutil.rmtree(os.path.join(work, "big"), ignore_errors=True)

    log(f"memory per key: {opts.memory_keys:,} keys without and with a TTL ...")
    results["memory_keys"] = opts.memory_keys
    results["mem_no_ttl"] = memory_per_key(opts.server, os.path.join(work, "m1"), opts.memory_keys, False)
    results["mem_ttl"] = memory_per_key(opts.server, os.path.join(work, "m2"), opts.memory_keys, True)
    log(f"  {results['mem_no_ttl']:.2f} B/key without a TTL, {results['mem_ttl']:.2f} with")
    shutil.rmtree(work, ignore_errors=True)
    report = render(results)
    print(report)
    if not opts.no_write:
        write(report, results)


def render(r):
    target = 0.5 * r["fio20"]
    ok = lambda cond: "met" if cond else "**not met**"  # noqa: E731
    lines = [
        BEGIN,
        "## Data larger than memory (`tools/bench-disk.sh`)",
        "",
        f"Run {datetime.date.today().isoformat()} on this machine (2 vCPUs, virtio disk), Release build, "
        f"`appendfsync everysec`. keg-server in a memory cgroup ({r['cgroup']}) limited to {r['limit_mb']} MiB, "
        f"{r['keys']:,} keys of {r['value_size']} bytes ({r['data_gib']:.2f} GiB of data, "
        f"{r['data_gib'] * 1024 / r['limit_mb']:.1f}x the limit); the page cache dropped before the cold phase. "
        "The reference is fio on keg's own data file, 4 KiB random reads, O_DIRECT, libaio, in the same run.",
        "",
        "| measure | figure | target | |",
        "|---|---|---|---|",
        f"| fio, 4 KiB random reads, depth 20 / depth 1 | {r['fio20']:,.0f} / {r['fio1']:,.0f} IOPS | (reference) | |",
        f"| fio, 4 KiB buffered random reads through the page cache (io_uring, depth 20, every data file, in the cgroup: keg's way of reading, nothing else) | {r['fio_buffered']:,.0f} IOPS at {r['fio_buffered_cpu']:.0f} % of one core | | |",
        f"| cold GET, 20 clients, random keys (io_uring, the default) | **{r['cold_rps']:,.0f} GET/s**, p50 {r['cold_p50']} ms, p99 {r['cold_p99']} ms | >= {target:,.0f} (0.5x fio at depth 20) | {ok(r['cold_rps'] >= target)} |",
        f"| cold GET, 20 clients, random keys (read pool: `cold-read-io-uring no`) | {r['pool_cold_rps']:,.0f} GET/s, p50 {r['pool_cold_p50']} ms, p99 {r['pool_cold_p99']} ms | | |",
        f"| CPU during the cold phase (% of one core; the machine has {r['cpu_cores']:.0f} %), io_uring; pool | machine {r['cpu_busy']:.0f} %, keg-server {r['keg_cpu']:.0f} % ({r['keg_threads']}); machine {r['pool_cpu_busy']:.0f} %, keg-server {r['pool_keg_cpu']:.0f} % ({r['pool_keg_threads']}) | | |",
        f"| disk reads during the cold phase | {r['disk_mb_s']:.0f} MB/s ({r['disk_mb_s'] * 1e6 / max(r['cold_rps'], 1) / 1024:.1f} KiB per GET) | | |",
        f"| hot-key GET p99 (1 client, 1,000 keys), quiet / during cold reads (io_uring; pool) | {r['hot_p99_quiet']} / **{r.get('hot_p99', 'n/a')}**; {r.get('pool_hot_p99', 'n/a')} ms | <= 1 ms | {ok(float(r.get('hot_p99', 99)) <= 1.0)} |",
        f"| SET p99 of new keys (1 client), quiet / during cold reads (io_uring; pool) | {r['set_p99_quiet']} / **{r.get('set_p99', 'n/a')}**; {r.get('pool_set_p99', 'n/a')} ms | <= 2 ms | {ok(float(r.get('set_p99', 99)) <= 2.0)} |",
        f"| SET p99 overwriting keys of the data set (1 client: the old record's key is confirmed, a disk read when cold), quiet / during cold reads (io_uring; pool) | {r['setold_p99_quiet']} / {r.get('setold_p99', 'n/a')}; {r.get('pool_setold_p99', 'n/a')} ms | | |",
        f"| memory per key ({r['memory_keys']:,} keys of 16 bytes, RssAnon growth), no TTL | {r['mem_no_ttl']:.2f} B | <= 27 B | {ok(r['mem_no_ttl'] <= 27)} |",
        f"| memory per key ({r['memory_keys']:,} keys of 16 bytes), with a TTL | {r['mem_ttl']:.2f} B | <= 40 B | {ok(r['mem_ttl'] <= 40)} |",
        "",
        "![cold GET/s against fio; hot and SET p99 quiet and during cold reads](benchmarks-disk.png)",
        "",
        END,
    ]
    return "\n".join(lines)


def write(report, r):
    path = os.path.join(ROOT, "docs", "benchmarks.md")
    text = open(path).read()
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + report + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + report + "\n"
    with open(path, "w") as f:
        f.write(text)
    png = os.path.join(ROOT, "docs", "benchmarks-disk.png")
    plot(r, png)
    print(f"wrote {path} and {png}")


def plot(r, png):
    script = f"""
set terminal pngcairo size 1200,420 font ",10"
set output "{png}"
set multiplot layout 1,2
set style data histograms
set style fill solid 0.8 border -1
set boxwidth 0.7
set grid ytics
set key left top
set title "Cold random reads/s, {r['data_gib']:.1f} GiB in a {r['limit_mb']} MiB cgroup"
set yrange [0:*]
plot "-" using 2:xtic(1) notitle lc rgb "#4472c4"
"fio, depth 20" {r['fio20']}
"fio, depth 1" {r['fio1']}
"keg GET, io\\_uring" {r['cold_rps']}
"keg GET, pool" {r['pool_cold_rps']}
"target" {0.5 * r['fio20']}
e
set title "p99 latency, ms (1 client each)"
set style histogram clustered gap 1
plot "-" using 2:xtic(1) title "quiet" lc rgb "#a5a5a5", "-" using 2 title "during the cold reads" lc rgb "#ed7d31"
"hot-key GET" {r['hot_p99_quiet']}
"SET" {r['set_p99_quiet']}
e
"hot-key GET" {r.get('hot_p99', 0)}
"SET" {r.get('set_p99', 0)}
e
unset multiplot
"""
    subprocess.run(["gnuplot"], input=script, text=True, check=True)


if __name__ == "__main__":
    main()
