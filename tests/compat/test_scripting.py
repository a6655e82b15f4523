"""Applications' Lua against keg-server, unmodified: redis-py's Lock and script helpers, and
Debian's python3-limits (fixed-window and moving-window rate limiting through its Lua scripts; the
moving window keeps its hits in a list: LPUSH, LTRIM, LINDEX, LRANGE). Each test also runs
against redis-server 7.0, so a wrong expectation cannot pass for keg alone."""
import threading
import time
import unittest

import limits
import limits.storage
import limits.strategies
import redis
from redis.exceptions import LockError, LockNotOwnedError, NoScriptError

import kegtest


class ScriptingCases:
    """Mixed into one TestCase per server."""

    start = None  # kegtest.keg or kegtest.redis

    @classmethod
    def setUpClass(cls):
        cls.server = cls.start()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def setUp(self):
        self.r = redis.Redis(port=self.server.port)
        self.r.flushall()
        self.r.script_flush()

    def tearDown(self):
        self.r.close()

    def test_lock_acquire_extend_release_and_contention(self):
        lock = self.r.lock("res", timeout=5, blocking=False)
        self.assertTrue(lock.acquire())
        other = redis.Redis(port=self.server.port).lock("res", timeout=5, blocking=False)
        self.assertFalse(other.acquire())  # held
        self.assertTrue(lock.owned())
        self.assertTrue(lock.extend(10))  # LUA_EXTEND: adds to the TTL
        self.assertGreater(self.r.pttl("res"), 10000)
        self.assertTrue(lock.reacquire())  # LUA_REACQUIRE: TTL back to the timeout
        self.assertLessEqual(self.r.pttl("res"), 5000)
        other.local.token = b"intruder"
        with self.assertRaises(LockNotOwnedError):
            other.release()  # LUA_RELEASE with a token that is not the owner's changes nothing
        other.local.token = None
        self.assertTrue(lock.locked())
        lock.release()  # LUA_RELEASE
        self.assertFalse(self.r.exists("res"))
        self.assertTrue(other.acquire())
        with self.assertRaises(LockError):
            lock.release()  # no longer its own

    def test_lock_serializes_concurrent_increments(self):
        # Read-modify-write under the lock from 4 threads: no increment is lost.
        def worker():
            c = redis.Redis(port=self.server.port)
            for _ in range(25):
                with c.lock("counter-lock", timeout=5, blocking_timeout=10, sleep=0.001):
                    v = int(c.get("counter") or 0)
                    c.set("counter", v + 1)
            c.close()

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(self.r.get("counter"), b"100")

    def test_register_script_and_evalsha_fallback(self):
        incr_by = self.r.register_script("return redis.call('incrby', KEYS[1], ARGV[1])")
        self.assertEqual(incr_by(keys=["n"], args=[5]), 5)  # EVALSHA, NOSCRIPT, then EVAL
        self.assertEqual(self.r.script_exists(incr_by.sha), [True])
        self.assertEqual(incr_by(keys=["n"], args=[2]), 7)
        self.r.script_flush()
        with self.assertRaises(NoScriptError):
            self.r.evalsha(incr_by.sha, 1, "n", 1)
        self.assertEqual(incr_by(keys=["n"], args=[1]), 8)
        with self.r.pipeline() as p:  # scripts in a pipeline: loaded first, then EVALSHA
            incr_by(keys=["n"], args=[10], client=p)
            p.get("n")
            self.assertEqual(p.execute(), [18, b"18"])

    def test_limits_fixed_window(self):
        storage = limits.storage.RedisStorage(f"redis://127.0.0.1:{self.server.port}")
        limiter = limits.strategies.FixedWindowRateLimiter(storage)
        five = limits.parse("5/second")
        self.assertTrue(storage.check())
        results = [limiter.hit(five, "user", "login") for _ in range(7)]
        self.assertEqual(results, [True] * 5 + [False] * 2)
        self.assertFalse(limiter.test(five, "user", "login"))
        self.assertTrue(limiter.hit(five, "other", "login"))  # its own window
        reset, remaining = limiter.get_window_stats(five, "user", "login")
        self.assertEqual(remaining, 0)
        self.assertGreater(reset, time.time() - 1)
        time.sleep(1.1)  # the window expired with its key
        self.assertTrue(limiter.hit(five, "user", "login"))

    def test_limits_moving_window(self):
        storage = limits.storage.RedisStorage(f"redis://127.0.0.1:{self.server.port}")
        limiter = limits.strategies.MovingWindowRateLimiter(storage)
        three = limits.parse("3/2 seconds")
        start = time.time()
        self.assertEqual([limiter.hit(three, "api", "k") for _ in range(4)], [True, True, True, False])
        self.assertEqual(self.r.type("LIMITER/api/k/3/2/second"), b"list")
        self.assertEqual(self.r.llen("LIMITER/api/k/3/2/second"), 3)
        reset, remaining = limiter.get_window_stats(three, "api", "k")
        self.assertEqual(remaining, 0)
        # The oldest hit leaves the window at about start + 2 (limits' script returns it as a Lua
        # number: truncated to whole seconds by the reply conversion, in Redis as in keg).
        self.assertGreaterEqual(reset, int(start) + 1)
        self.assertLessEqual(reset, start + 3)
        self.assertTrue(limiter.hit(three, "api", "other"))  # its own window
        time.sleep(max(0, start + 2.2 - time.time()))  # every hit slid out of the window
        self.assertTrue(limiter.test(three, "api", "k"))
        self.assertEqual([limiter.hit(three, "api", "k") for _ in range(4)], [True, True, True, False])


class KegScripting(ScriptingCases, unittest.TestCase):
    start = staticmethod(kegtest.keg)


class RedisScripting(ScriptingCases, unittest.TestCase):
    start = staticmethod(kegtest.redis)


if __name__ == "__main__":
    unittest.main()
