"""redis-benchmark 7.0 (Debian redis-tools), unmodified, against keg-server: every run completes
with no error replies."""
import os
import subprocess
import unittest

import kegtest

TESTS = "ping,set,get,incr,mset"
# The names redis-benchmark prints for those tests (PING runs both the inline and multibulk form).
EXPECTED = ["PING_INLINE", "PING_MBULK", "SET", "GET", "INCR", "MSET (10 keys)"]
# A sanitizer build sends a quarter of the requests: what it checks there is the server's memory
# and threads on every path of each run, not the volume (its server is several times slower).
SCALE = 4 if os.environ.get("KEG_SANITIZE") else 1


class RedisBenchmarkTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = kegtest.keg()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def bench(self, *args, requests=20000):
        r = subprocess.run(["redis-benchmark", "-p", str(self.server.port), "-n", str(requests // SCALE),
                            "-q", *args], capture_output=True, timeout=300)
        out = r.stdout.decode(errors="replace").replace("\r", "\n")
        err = r.stderr.decode(errors="replace")
        self.assertEqual(r.returncode, 0, out + err)
        self.assertNotIn("Error from server", out + err)
        self.assertNotIn("WARNING: Could not fetch server CONFIG", out + err)
        finished = [l for l in out.splitlines() if "requests per second" in l]
        return finished

    def check_all(self, finished):
        names = [l.split(":")[0].strip() for l in finished]
        for name in EXPECTED:
            self.assertIn(name, names, finished)

    def test_default_unpipelined(self):
        self.check_all(self.bench("-t", TESTS))

    def test_pipelined_16(self):
        self.check_all(self.bench("-t", TESTS, "-P", "16", requests=100000))

    def test_resp3(self):
        self.check_all(self.bench("-t", TESTS, "-3"))

    def test_two_client_threads(self):
        self.check_all(self.bench("-t", TESTS, "--threads", "2"))

    def test_random_keys_and_1000_byte_values(self):
        self.check_all(self.bench("-t", TESTS, "-r", "100000", "-d", "1000"))
        r = subprocess.run(["redis-cli", "-p", str(self.server.port), "--scan", "--pattern",
                            "key:0*"], capture_output=True, timeout=60)
        keys = r.stdout.split()
        self.assertGreater(len(keys), 100)
        v = subprocess.run(["redis-cli", "-p", str(self.server.port), "strlen", keys[0]],
                           capture_output=True, timeout=60).stdout.strip()
        self.assertEqual(v, b"1000")


if __name__ == "__main__":
    unittest.main()
