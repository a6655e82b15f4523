"""What operators scrape.

- Debian's prometheus-redis-exporter (1.45) against keg and against redis-server 7.0.15 in the same
  test: every metric family the exporter exports for Redis is exported for keg too, and keg's values
  move when commands run (calls, durations, errors, network bytes).
- keg's own endpoint (metrics-port): a real Prometheus (Debian's) scrapes /metrics and its query
  API finds keg's series; promtool accepts the exposition; /health/ready is 503 while a directory
  of a million keys recovers and 200 after; malformed requests, huge heads, a slowloris client and
  1,000 concurrent scrapes get their answers (or are cut off) while RESP clients are served and
  memory stays bounded.
(Readiness when writes fail is tested with the disk-full and EIO faults: tests/reliability.)"""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import threading
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import redis  # noqa: E402

from kegtest import free_port, keg, redis as redis_server, rss_kb  # noqa: E402

EXPORTER = shutil.which("prometheus-redis-exporter")


class Exporter:
    def __init__(self, redis_port):
        self.port = free_port()
        self.proc = subprocess.Popen([EXPORTER, "-redis.addr", f"redis://127.0.0.1:{redis_port}",
                                      "-web.listen-address", f"127.0.0.1:{self.port}"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the exporter did not start")

    def scrape(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=20) as r:
            return r.read().decode()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


def families(text):
    return {re.split(r"[{ ]", line, 1)[0] for line in text.splitlines()
            if line.startswith("redis_")}


def value(text, name, labels=""):
    for line in text.splitlines():
        if line.startswith(name + ("{" if labels else " ")) and labels in line:
            return float(line.rsplit(" ", 1)[1])
    return None


@unittest.skipIf(EXPORTER is None, "prometheus-redis-exporter is not installed (tools/install-deps.sh --test)")
class Observability(unittest.TestCase):
    def setUp(self):
        self.keg_server = keg()
        self.redis_server = redis_server()
        self.keg_exporter = Exporter(self.keg_server.port)
        self.redis_exporter = Exporter(self.redis_server.port)

    def tearDown(self):
        self.keg_exporter.stop()
        self.redis_exporter.stop()
        self.keg_server.stop()
        self.redis_server.stop()

    def run_commands(self, port):
        c = redis.Redis(port=port, socket_timeout=10)
        for i in range(200):
            c.set(f"k{i}", "v" * 100)
            c.get(f"k{i}")
        c.expire("k1", 1000)
        with self.assertRaises(redis.ResponseError):
            c.execute_command("NOSUCHCOMMAND")
        with self.assertRaises(redis.ResponseError):
            c.execute_command("INCR", "k2")  # not an integer
        c.close()

    def test_resetstat_zeroes_the_counters_and_the_rates_start_again(self):
        """CONFIG RESETSTAT as Redis's resetServerStats: the command and traffic counters restart
        from 0 and the instantaneous rates with them. (keg's sampler took the command counter's
        drop for a rate of 1.8e19 per second: INFO printed it cast to int64, undefined behaviour
        UBSan caught under Redis's integration/psync2, for 1.6 s after each RESETSTAT; and the
        traffic counters were not reset.)"""
        for name, server in (("redis", self.redis_server), ("keg", self.keg_server)):
            with self.subTest(server=name):
                c = redis.Redis(port=server.port, socket_timeout=10)
                pipe = c.pipeline(transaction=False)
                for i in range(20000):
                    pipe.set(f"k{i}", "v" * 100)
                pipe.execute()
                c.save()
                self.assertGreaterEqual(c.info("persistence")["rdb_saves"], 1)
                c.config_resetstat()
                self.assertEqual(c.info("persistence")["rdb_saves"], 0)
                stats = c.info("stats")
                self.assertLess(stats["total_commands_processed"], 5)
                self.assertLess(stats["total_net_input_bytes"], 1000)
                self.assertLess(stats["total_net_output_bytes"], 1000)
                self.assertLess(stats["total_reads_processed"], 5)
                # Past the next samples (every 100 ms, both): a few INFOs a second, not 20,000 SETs.
                deadline = time.time() + 0.5
                while time.time() < deadline:
                    stats = c.info("stats")
                    self.assertGreaterEqual(stats["instantaneous_ops_per_sec"], 0)
                    self.assertLess(stats["instantaneous_ops_per_sec"], 5000)
                    self.assertLess(stats["instantaneous_input_kbps"], 500)
                    time.sleep(0.02)
                c.close()

    def test_every_family_redis_has_and_values_that_move(self):
        self.run_commands(self.redis_server.port)
        self.run_commands(self.keg_server.port)
        want = families(self.redis_exporter.scrape())
        before = self.keg_exporter.scrape()
        got = families(before)
        self.assertGreater(len(want), 100)
        missing = sorted(want - got)
        self.assertEqual(missing, [], f"families the exporter has for Redis but not for keg "
                                     f"(keg {len(got)}, Redis {len(want)})")
        print(f"\nexporter families: keg {len(got)}, Redis {len(want)}", file=sys.stderr)
        # Values move with traffic.
        calls = value(before, "redis_commands_total", 'cmd="set"')
        usec = value(before, "redis_commands_duration_seconds_total", 'cmd="set"')
        errors = value(before, "redis_errors_total", 'err="ERR"')
        net_in = value(before, "redis_net_input_bytes_total")
        self.assertEqual(calls, 200)
        self.assertGreater(usec, 0)
        self.assertGreaterEqual(errors, 2)
        self.run_commands(self.keg_server.port)
        after = self.keg_exporter.scrape()
        self.assertEqual(value(after, "redis_commands_total", 'cmd="set"'), 400)
        self.assertGreater(value(after, "redis_commands_duration_seconds_total", 'cmd="set"'), usec)
        self.assertGreaterEqual(value(after, "redis_errors_total", 'err="ERR"'), errors + 2)
        self.assertGreater(value(after, "redis_net_input_bytes_total"), net_in + 200 * 30)
        self.assertEqual(value(after, "redis_db_keys", 'db="db0"'), 200)


PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")


def http_get(port, path, timeout=10):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def raw_http(port, data, timeout=10):
    """Sends raw bytes, returns everything the server sends until it closes."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk
    finally:
        s.close()


class MetricsEndpoint(unittest.TestCase):
    def setUp(self):
        self.metrics = free_port()
        self.server = keg("--metrics-port", str(self.metrics), "--enable-debug-command", "yes")

    def tearDown(self):
        self.server.stop()

    def test_health_metrics_and_promtool(self):
        self.assertEqual(http_get(self.metrics, "/health/live"), (200, '{"status":"live"}\n'))
        self.assertEqual(http_get(self.metrics, "/health/ready"), (200, '{"status":"ready"}\n'))
        c = redis.Redis(port=self.server.port, socket_timeout=10)
        c.set("a", "1")
        c.get("a")
        status, text = http_get(self.metrics, "/metrics?x=1")
        self.assertEqual(status, 200)
        self.assertIn('keg_commands_total{cmd="set"} 1\n', text)
        self.assertIn("keg_keys 1\n", text)
        self.assertIsNotNone(PROMTOOL, "promtool is missing: tools/install-deps.sh --test")
        r = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(http_get(self.metrics, "/nope")[0], 404)
        c.close()

    def test_the_metrics_thread_runs_below_the_resp_threads(self):
        pid = self.server.proc.pid
        task = f"/proc/{pid}/task"
        deadline = time.time() + 30
        while True:  # the metrics thread starts a little before the I/O loops (slower under ASan)
            nice = {}
            for tid in os.listdir(task):
                try:
                    with open(f"{task}/{tid}/stat") as f:
                        stat = f.read()
                except FileNotFoundError:  # a thread that just ended
                    continue
                # The main thread runs the first RESP loop (under the process's name).
                name = "main" if tid == str(pid) else stat[stat.index("(") + 1:stat.rindex(")")]
                nice[name] = int(stat[stat.rindex(")") + 2:].split()[16])  # field 19: nice
            if nice.get("keg-http") == 10 or time.time() > deadline:
                break
            time.sleep(0.05)
        self.assertEqual(nice.get("keg-http"), 10, nice)
        self.assertEqual(nice.get("main"), 0, nice)

    def test_malformed_huge_and_slow_requests_are_cut_off(self):
        self.assertTrue(raw_http(self.metrics, b"GARBAGE\r\n\r\n").startswith(b"HTTP/1.1 400 "))
        self.assertTrue(raw_http(self.metrics, b"POST /metrics HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 405 "))
        self.assertTrue(raw_http(self.metrics, b"GET metrics HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 400 "))
        self.assertTrue(raw_http(self.metrics, b"GET /metrics HTTP/9\r\n\r\n").startswith(b"HTTP/1.1 400 "))
        huge = b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 100000 + b"\r\n\r\n"
        try:
            reply = raw_http(self.metrics, huge)
        except ConnectionResetError:
            reply = b"HTTP/1.1 431 (reset while sending the rest)"
        self.assertTrue(reply.startswith(b"HTTP/1.1 431 "), reply[:80])
        # Slowloris: a head that never ends is cut off after 5 s; RESP clients are served meanwhile.
        slow = socket.create_connection(("127.0.0.1", self.metrics), timeout=20)
        slow.sendall(b"GET /metrics HTTP/1.1\r\nX-Slow: ")
        c = redis.Redis(port=self.server.port, socket_timeout=2)
        t0 = time.monotonic()
        self.assertTrue(c.ping())
        self.assertEqual(slow.recv(100), b"")  # closed by keg
        waited = time.monotonic() - t0
        self.assertGreater(waited, 3)
        self.assertLess(waited, 15)
        slow.close()
        c.close()

    def test_a_thousand_concurrent_scrapes(self):
        # Under AddressSanitizer freed memory waits in a quarantine (256 MB by default) before it
        # is reused, which this bound would count: a small one for this server (ignored otherwise).
        self.server.stop()
        saved = os.environ.get("ASAN_OPTIONS")
        os.environ["ASAN_OPTIONS"] = (saved + ":" if saved else "") + "quarantine_size_mb=8"
        try:
            self.server = keg("--metrics-port", str(self.metrics), "--enable-debug-command", "yes")
        finally:
            if saved is None:
                del os.environ["ASAN_OPTIONS"]
            else:
                os.environ["ASAN_OPTIONS"] = saved
        pid = self.server.proc.pid
        c = redis.Redis(port=self.server.port, socket_timeout=10)
        c.execute_command("DEBUG", "POPULATE", "10000")
        before = rss_kb(pid)
        results = []
        lock = threading.Lock()

        def scrape():
            try:
                status, text = http_get(self.metrics, "/metrics", timeout=30)
                ok = status == 200 and "keg_keys 10000\n" in text
            except (OSError, ConnectionError):
                ok = None  # refused or cut off over the connection limit
            with lock:
                results.append(ok)

        threads = [threading.Thread(target=scrape) for _ in range(1000)]
        for t in threads:
            t.start()
        # RESP keeps answering while they run.
        for _ in range(200):
            self.assertEqual(c.get("key:1"), b"value:1")
        for t in threads:
            t.join()
        self.assertEqual(len(results), 1000)
        self.assertNotIn(False, results)  # every answer was a full, correct exposition
        self.assertGreater(results.count(True), 200)
        self.assertLess(rss_kb(pid) - before, 64 * 1024, "memory grew by more than 64 MiB")
        self.assertEqual(http_get(self.metrics, "/health/ready")[0], 200)
        c.close()

    @unittest.skipIf(PROMETHEUS is None, "prometheus is not installed (tools/install-deps.sh --test)")
    def test_prometheus_scrapes_keg(self):
        work = self.server.dir
        prom_port = free_port()
        config = os.path.join(work, "prometheus.yml")
        with open(config, "w") as f:
            f.write("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: keg\n"
                    f"    static_configs:\n      - targets: ['127.0.0.1:{self.metrics}']\n")
        prom = subprocess.Popen([PROMETHEUS, f"--config.file={config}",
                                 f"--storage.tsdb.path={os.path.join(work, 'tsdb')}",
                                 f"--web.listen-address=127.0.0.1:{prom_port}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            c = redis.Redis(port=self.server.port, socket_timeout=10)
            c.set("x", "1")
            found = None
            deadline = time.time() + 60
            while time.time() < deadline and not found:
                time.sleep(0.5)
                try:
                    status, body = http_get(prom_port, "/api/v1/query?query=keg_commands_total", timeout=5)
                except OSError:
                    continue
                if status == 200 and '"cmd":"set"' in body:
                    found = body
            self.assertIsNotNone(found, "Prometheus never stored keg_commands_total{cmd=\"set\"}")
            status, body = http_get(prom_port, "/api/v1/query?query=up%7Bjob%3D%22keg%22%7D", timeout=5)
            self.assertIn('"value":[', body)
            self.assertIn('"1"]', body)
            # Every expression of the shipped dashboard and alert rules is valid PromQL that
            # Prometheus evaluates against keg's series.
            for expr in shipped_expressions():
                status, body = http_get(prom_port, "/api/v1/query?query=" + urllib.parse.quote(expr), timeout=10)
                self.assertEqual(status, 200, f"{expr}: {body}")
                self.assertIn('"status":"success"', body, expr)
            c.close()
        finally:
            prom.terminate()
            prom.wait(timeout=30)


CONF = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "conf")


def shipped_expressions():
    """The PromQL of conf/keg-grafana.json and conf/keg-alerts.yml ($instance: every instance)."""
    with open(os.path.join(CONF, "keg-grafana.json")) as f:
        dash = json.load(f)
    exprs = [t["expr"].replace("$instance", ".*") for p in dash["panels"] for t in p["targets"]]
    with open(os.path.join(CONF, "keg-alerts.yml")) as f:
        exprs += [line.split("expr:", 1)[1].strip() for line in f if line.strip().startswith("expr:")]
    return exprs


class Shipped(unittest.TestCase):
    """conf/keg-alerts.yml passes promtool, and the dashboard and rules name only metrics keg has."""

    def test_alert_rules_and_dashboard_use_keg_metrics(self):
        self.assertIsNotNone(PROMTOOL, "promtool is missing: tools/install-deps.sh --test")
        r = subprocess.run([PROMTOOL, "check", "rules", os.path.join(CONF, "keg-alerts.yml")],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        metrics = free_port()
        server = keg("--metrics-port", str(metrics))
        try:
            c = redis.Redis(port=server.port, socket_timeout=10)
            c.set("a", "1")
            c.close()
            text = http_get(metrics, "/metrics")[1]
        finally:
            server.stop()
        names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line.startswith("keg_")}
        names |= {line.split(" ")[2] for line in text.splitlines() if line.startswith("# TYPE keg_")}
        used = set()
        for expr in shipped_expressions():
            used |= set(re.findall(r"\bkeg_[a-z_]+", expr))
        self.assertGreater(len(used), 15)
        self.assertEqual(sorted(used - names), [])


class Recovery(unittest.TestCase):
    def test_ready_is_503_while_a_million_keys_recover(self):
        metrics = free_port()
        server = keg("--metrics-port", str(metrics), "--enable-debug-command", "yes")
        try:
            c = redis.Redis(port=server.port, socket_timeout=120)
            c.execute_command("DEBUG", "POPULATE", "1000000")
            c.close()
            server.proc.send_signal(15)
            server.proc.wait(timeout=60)
            data = os.path.join(server.dir, "data")
            for name in os.listdir(data):
                if name.endswith(".hint"):
                    os.unlink(os.path.join(data, name))  # recovery scans the data file
            log = open(os.path.join(server.dir, "restart.log"), "wb")
            proc = subprocess.Popen([os.environ.get("KEG_SERVER", "keg-server"), "--port", str(server.port),
                                     "--dir", data, "--metrics-port", str(metrics)],
                                    stdout=log, stderr=subprocess.STDOUT)
            try:
                seen = []
                deadline = time.time() + 60
                while time.time() < deadline and (not seen or seen[-1] != 200):
                    try:
                        seen.append(http_get(metrics, "/health/ready", timeout=5)[0])
                    except OSError:
                        time.sleep(0.002)  # not listening yet
                self.assertIn(503, seen, "never saw the recovery")
                self.assertEqual(seen[-1], 200)
                self.assertEqual(seen[seen.index(503):].count(200), 1)  # 503 until recovered
                c = redis.Redis(port=server.port, socket_timeout=10)
                self.assertEqual(c.dbsize(), 1000000)
                c.close()
            finally:
                proc.terminate()
                proc.wait(timeout=60)
                log.close()
        finally:
            server.stop()


if __name__ == "__main__":
    unittest.main()


@unittest.skipIf(os.environ.get("KEG_SANITIZE"), "a sanitizer build leaves fatal signals to the sanitizer's report")
class CrashReport(unittest.TestCase):
    """A fatal signal leaves a crash report in the log, in Redis's words (Redis's
    integration/logging: "Crash report generated on SIGABRT" / "on DEBUG SEGFAULT"): the signal,
    and the stack of the thread that crashed with keg's functions named; the process still dies
    of the signal. keg died silently (and had no DEBUG SEGFAULT)."""

    def crash(self, how, signo, logfile=False, report=True):
        """Crashes a keg `how` ("segfault": DEBUG SEGFAULT; else the signal `signo`); returns its
        crash report from the stack trace on (from --logfile's file when `logfile`). `report`
        False: crash-log-enabled no (CONFIG SET), and no report is written (returns None)."""
        d = tempfile.mkdtemp(prefix="keg_crash_")
        self.addCleanup(shutil.rmtree, d, True)
        path = os.path.join(d, "keg.log")
        server = keg("--enable-debug-command", "yes", *(["--logfile", path] if logfile else []))
        try:
            if not report:
                redis.Redis(port=server.port).config_set("crash-log-enabled", "no")
            if how == "segfault":
                with self.assertRaises(redis.ConnectionError):
                    redis.Redis(port=server.port, socket_timeout=10).execute_command("DEBUG", "SEGFAULT")
            else:
                server.proc.send_signal(signo)
            self.assertEqual(server.proc.wait(timeout=30), -signo)
            if logfile:
                with open(path) as f:
                    text = f.read()
            else:
                text = server.log_tail()
            if not report:
                self.assertNotIn("crashed by signal", text)
                self.assertNotIn("STACK TRACE", text)
                return None
            self.assertRegex(text, rf"keg \S+ crashed by signal: {signo} ")
            report = text[text.index("------ STACK TRACE ------"):]
            self.assertIn("=== KEG BUG REPORT END.", report)
            return report
        finally:
            server.stop()

    def test_debug_segfault(self):
        report = self.crash("segfault", 11)
        self.assertIn("keg-server(", report)
        self.assertRegex(report, r"Debug|RunHandler")  # the command's frames, named (-rdynamic)

    def test_sigabrt_into_the_logfile(self):
        self.crash("kill", 6, logfile=True)

    def test_crash_log_disabled(self):
        self.crash("segfault", 11, report=False)  # dies of the signal all the same
