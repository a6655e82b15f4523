"""twemproxy (Debian nutcracker 0.5.0) in front of two keg-servers: keys spread over both and
GET, SET, DEL, EXISTS, MGET, MSET route correctly. Commands the proxy does not forward (COMPACT,
INFO, CONFIG, ...) are run on each node directly (README, "twemproxy")."""
import os
import subprocess
import tempfile
import time
import unittest

import redis

import kegtest


class TwemproxyTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.nodes = [kegtest.keg(), kegtest.keg()]
        cls.dir = tempfile.mkdtemp(prefix="keg_compat_nutcracker_")
        cls.port = kegtest.free_port()
        conf = os.path.join(cls.dir, "nutcracker.yml")
        with open(conf, "w") as f:
            f.write("keg:\n"
                    f"  listen: 127.0.0.1:{cls.port}\n"
                    "  hash: fnv1a_64\n"
                    "  distribution: modula\n"
                    "  redis: true\n"
                    "  auto_eject_hosts: false\n"
                    "  timeout: 5000\n"
                    "  servers:\n")
            for i, n in enumerate(cls.nodes):
                f.write(f"   - 127.0.0.1:{n.port}:1 node{i}\n")
        cls.proxy = subprocess.Popen(["nutcracker", "-c", conf, "-s", str(kegtest.free_port()),
                                      "-o", os.path.join(cls.dir, "nutcracker.log")],
                                     preexec_fn=kegtest._die_with_parent)
        kegtest.wait_for_port(cls.port, cls.proxy)

    @classmethod
    def tearDownClass(cls):
        cls.proxy.terminate()
        cls.proxy.wait(timeout=10)
        for n in cls.nodes:
            n.stop()

    def test_keys_spread_and_route(self):
        r = redis.Redis(port=self.port)
        keys = [f"tw:{i}" for i in range(400)]
        for k in keys:
            self.assertTrue(r.set(k, k + ":v"))
        for k in keys[:50]:
            self.assertEqual(r.get(k), (k + ":v").encode())
        # Each key lives on exactly one node, and both nodes got some.
        direct = [redis.Redis(port=n.port) for n in self.nodes]
        counts = [d.dbsize() for d in direct]
        self.assertEqual(sum(counts), 400)
        self.assertGreater(min(counts), 50, counts)
        for k in keys[:50]:
            self.assertEqual(sum(d.exists(k) for d in direct), 1)
        # MGET and MSET are split per node by the proxy and reassembled in order.
        self.assertEqual(r.mget(keys[:100]), [(k + ":v").encode() for k in keys[:100]])
        self.assertTrue(r.mset({f"ms:{i}": str(i) for i in range(100)}))
        self.assertEqual(r.mget([f"ms:{i}" for i in range(100)]), [str(i).encode() for i in range(100)])
        # twemproxy 0.5.0 sends a multi-key EXISTS to the first key's node only: one key each.
        self.assertEqual([r.exists(k) for k in keys[:10]], [1] * 10)
        self.assertEqual(r.delete(*keys[:10]), 10)  # DEL is split per node
        self.assertEqual([r.exists(k) for k in keys[:10]], [0] * 10)
        self.assertIsNone(r.get(keys[0]))
        self.assertEqual(sum(d.dbsize() for d in direct), 490)
        # Run keg's own commands per node, not through the proxy.
        for d in direct:
            self.assertTrue(d.execute_command("COMPACT"))
            self.assertIn("data_files", d.info("keg"))
            d.close()
        r.close()


if __name__ == "__main__":
    unittest.main()
