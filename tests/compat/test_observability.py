"""What operators scrape: Debian's prometheus-redis-exporter (1.45) against keg and against
redis-server 7.0.15 in the same test. Every metric family the exporter exports for Redis is exported
for keg too, and keg's values move when commands run (calls, durations, errors, network bytes)."""
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import redis  # noqa: E402

from kegtest import free_port, keg, redis as redis_server  # noqa: E402

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


if __name__ == "__main__":
    unittest.main()
