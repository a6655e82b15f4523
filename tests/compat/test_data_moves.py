"""Data moving between keg and redis-server 7.0.15, both ways: DUMP/RESTORE payloads and MIGRATE
(with TTLs, COPY, REPLACE, KEYS, AUTH to a password-protected target, and its errors)."""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import redis  # noqa: E402

from kegtest import keg, redis as redis_server  # noqa: E402


class DataMoves(unittest.TestCase):
    def setUp(self):
        self.keg_server = keg("--appendfsync", "always")
        self.redis_server = redis_server("--requirepass", "s3cret")
        self.k = redis.Redis(port=self.keg_server.port, socket_timeout=10)
        self.r = redis.Redis(port=self.redis_server.port, password="s3cret", socket_timeout=10)

    def tearDown(self):
        self.k.close()
        self.r.close()
        self.keg_server.stop()
        self.redis_server.stop()

    def test_dump_payloads_restore_on_the_other_server(self):
        values = [b"", b"7", b"-32769", b"12345678901", b"x" * 1000, bytes(range(256)) * 40]
        for i, v in enumerate(values):
            self.r.set(f"r{i}", v)
            self.k.set(f"k{i}", v)
            # keg's payload is Redis's, byte for byte.
            self.assertEqual(self.k.dump(f"k{i}"), self.r.dump(f"r{i}"))
            self.k.restore(f"from-redis{i}", 0, self.r.dump(f"r{i}"))
            self.r.restore(f"from-keg{i}", 0, self.k.dump(f"k{i}"))
            self.assertEqual(self.k.get(f"from-redis{i}"), v)
            self.assertEqual(self.r.get(f"from-keg{i}"), v)

    def test_migrate_from_keg_to_redis_with_auth_ttl_and_keys(self):
        self.k.set("a", "1")
        self.k.set("b", "2", ex=1000)
        self.k.set("c", "3")
        port = self.redis_server.port
        with self.assertRaisesRegex(redis.ResponseError, "Target instance replied with error: .*(WRONGPASS|NOAUTH)"):
            self.k.execute_command("MIGRATE", "127.0.0.1", port, "a", 0, 5000, "AUTH", "wrong")
        self.assertTrue(self.k.exists("a"), "a failed MIGRATE keeps the key")
        self.assertEqual(self.k.execute_command("MIGRATE", "127.0.0.1", port, "", 0, 5000, "AUTH", "s3cret",
                                                "KEYS", "a", "b", "missing"), b"OK")
        self.assertEqual(self.r.mget("a", "b"), [b"1", b"2"])
        self.assertTrue(990 <= self.r.ttl("b") <= 1000)
        self.assertEqual(self.k.exists("a", "b"), 0)
        self.assertEqual(self.k.execute_command("MIGRATE", "127.0.0.1", port, "c", 0, 5000, "COPY",
                                                "AUTH", "s3cret"), b"OK")
        self.assertEqual(self.k.get("c"), b"3")
        with self.assertRaisesRegex(redis.ResponseError, "BUSYKEY"):
            self.k.execute_command("MIGRATE", "127.0.0.1", port, "c", 0, 5000, "AUTH", "s3cret")
        self.assertEqual(self.k.execute_command("MIGRATE", "127.0.0.1", port, "c", 0, 5000, "REPLACE",
                                                "AUTH", "s3cret"), b"OK")
        self.assertEqual(self.k.exists("c"), 0)
        self.assertEqual(self.k.execute_command("MIGRATE", "127.0.0.1", port, "nokey", 0, 5000), b"NOKEY")
        with self.assertRaisesRegex(redis.ResponseError, "the key argument must be set to the empty string"):
            self.k.execute_command("MIGRATE", "127.0.0.1", 1, "c2", 0, 500, "KEYS", "c2")
        self.k.set("c2", "x")
        with self.assertRaisesRegex(redis.ResponseError, "IOERR error or timeout connecting"):
            self.k.execute_command("MIGRATE", "127.0.0.1", 1, "c2", 0, 500)
        # A timeout near INT64_MAX (it meets the server's clock) is bounded, not an overflow.
        with self.assertRaisesRegex(redis.ResponseError, "IOERR error or timeout connecting"):
            self.k.execute_command("MIGRATE", "127.0.0.1", 1, "c2", 0, 9223372036854775807)
        self.assertTrue(self.k.ping())

    def test_migrate_from_redis_to_keg(self):
        self.r.set("x", "from redis", px=500000)
        self.assertEqual(self.r.execute_command("MIGRATE", "127.0.0.1", self.keg_server.port, "x", 0, 5000), b"OK")
        self.assertEqual(self.k.get("x"), b"from redis")
        self.assertTrue(490 <= self.k.ttl("x") <= 500)
        self.assertEqual(self.r.exists("x"), 0)


if __name__ == "__main__":
    unittest.main()
