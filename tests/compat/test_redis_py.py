"""redis-py (Debian python3-redis) against keg-server; each test also runs against redis-server
7.0 so a wrong expectation here cannot pass for keg alone."""
import time
import unittest

import redis

import kegtest


class RedisPyCases:
    """Mixed into one TestCase per server."""

    start = None  # kegtest.keg or kegtest.redis

    @classmethod
    def setUpClass(cls):
        cls.server = cls.start()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def setUp(self):
        self.r = redis.Redis(port=self.server.port, client_name="compat-test",
                             health_check_interval=1)
        self.r.flushall()

    def tearDown(self):
        self.r.close()

    def test_connect_with_client_name_and_health_checks(self):
        self.assertEqual(self.r.client_getname(), "compat-test")
        self.assertTrue(self.r.ping())
        time.sleep(1.2)  # the next command is preceded by a health-check PING
        self.assertTrue(self.r.set("a", "1"))
        self.assertEqual(self.r.get("a"), b"1")
        names = [c["name"] for c in self.r.client_list()]
        self.assertIn("compat-test", names)
        info = self.r.info()
        self.assertEqual(info["loading"], 0)
        self.assertIn("redis_version", info)
        self.assertEqual(info["db0"]["keys"], 1)

    def test_pipelines_with_and_without_transactions(self):
        with self.r.pipeline(transaction=True) as p:
            p.set("k", "v").incr("n").incr("n").get("k").mget("k", "n")
            self.assertEqual(p.execute(), [True, 1, 2, b"v", [b"v", b"2"]])
        with self.r.pipeline(transaction=False) as p:
            for i in range(1000):
                p.set(f"p{i}", i)
            p.get("p999")
            results = p.execute()
        self.assertEqual(len(results), 1001)
        self.assertEqual(results[-1], b"999")
        # WATCH: a write by another client aborts the transaction.
        other = redis.Redis(port=self.server.port)
        with self.r.pipeline() as p:
            p.watch("k")
            other.set("k", "changed")
            p.multi()
            p.set("k", "mine")
            with self.assertRaises(redis.WatchError):
                p.execute()
        self.assertEqual(self.r.get("k"), b"changed")
        other.close()

    def test_expiry(self):
        self.r.set("t", "v", ex=100)
        self.assertIn(self.r.ttl("t"), (99, 100))
        self.assertTrue(self.r.expire("t", 200))
        self.assertGreater(self.r.pttl("t"), 199000)
        self.assertTrue(self.r.persist("t"))
        self.assertEqual(self.r.ttl("t"), -1)
        self.r.set("soon", "v", px=50)
        time.sleep(0.2)
        self.assertIsNone(self.r.get("soon"))
        self.assertEqual(self.r.ttl("soon"), -2)
        self.assertEqual(self.r.getex("t", ex=50), b"v")
        self.assertIn(self.r.ttl("t"), (49, 50))

    def test_scan_iter(self):
        for i in range(500):
            self.r.set(f"user:{i}", "x")
        self.r.set("other", "y")
        found = set(self.r.scan_iter(match="user:*", count=50))
        self.assertEqual(found, {f"user:{i}".encode() for i in range(500)})
        self.assertEqual(self.r.dbsize(), 501)
        self.assertEqual(sorted(self.r.keys("oth*")), [b"other"])

    def test_binary_values(self):
        value = bytes(range(256)) * 100 + b"\r\n\x00"
        self.r.set(b"bin\x00key", value)
        self.assertEqual(self.r.get(b"bin\x00key"), value)
        self.assertEqual(self.r.strlen(b"bin\x00key"), len(value))
        self.assertEqual(self.r.getrange(b"bin\x00key", 0, 3), b"\x00\x01\x02\x03")

    def test_errors_map_to_exception_classes(self):
        with self.assertRaises(redis.ResponseError) as e:
            self.r.execute_command("NOSUCHCOMMAND", "x")
        self.assertIn("unknown command", str(e.exception))
        self.r.set("s", "abc")
        with self.assertRaises(redis.ResponseError) as e:
            self.r.incr("s")
        self.assertEqual(str(e.exception), "value is not an integer or out of range")
        with self.assertRaises(redis.ResponseError):
            self.r.execute_command("SELECT", "x")
        with self.assertRaises(redis.ResponseError) as e:  # no requirepass configured
            self.r.execute_command("AUTH", "wrong")
        self.assertTrue(str(e.exception).startswith("AUTH <password> called without any password"))
        with self.assertRaises(redis.ResponseError) as e:
            self.r.rename("missing", "x")
        self.assertEqual(str(e.exception), "no such key")
        with self.assertRaises(redis.ResponseError) as e:  # EXECABORT, reported per command
            with self.r.pipeline() as p:
                p.set("x", "1")
                p.execute_command("SET")  # arity error inside MULTI
                p.execute()
        self.assertIn("wrong number of arguments for 'set' command", str(e.exception))
        self.assertIsNone(self.r.get("x"))


class KegRedisPyTest(RedisPyCases, unittest.TestCase):
    start = staticmethod(kegtest.keg)


class RedisServerRedisPyTest(RedisPyCases, unittest.TestCase):
    start = staticmethod(kegtest.redis)


class KegLimitsTest(unittest.TestCase):
    def test_auth_at_connect(self):
        with kegtest.keg("--requirepass", "pw") as server:
            with self.assertRaises(redis.AuthenticationError):  # -NOAUTH
                redis.Redis(port=server.port).ping()
            with self.assertRaises(redis.ResponseError) as e:
                redis.Redis(port=server.port, password="wrong").ping()
            self.assertTrue(str(e.exception).startswith("WRONGPASS"))
            r = redis.Redis(port=server.port, password="pw", client_name="n")
            self.assertTrue(r.ping())
            r.close()

    def test_max_clients_is_a_connection_error(self):
        with kegtest.keg("--maxclients", "1") as server:
            first = redis.Redis(port=server.port)
            self.assertTrue(first.ping())
            with self.assertRaises(redis.ConnectionError):
                redis.Redis(port=server.port).ping()
            first.close()


if __name__ == "__main__":
    unittest.main()
