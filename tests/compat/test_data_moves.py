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

    def test_hyperloglogs_move_between_keg_and_redis_and_count_alike(self):
        """A HyperLogLog is a string in Redis's format: the same elements give the same registers,
        estimate and (dense) bytes on both servers, and a sketch built on either counts and grows
        on the other (DUMP / RESTORE, GET / SET)."""
        for n in (3, 500, 5000):  # sparse, sparse, dense
            items = [f"item:{i}" for i in range(n)]
            for c in (self.k, self.r):
                c.delete(f"h{n}")
                for at in range(0, n, 1000):
                    self.assertEqual(c.pfadd(f"h{n}", *items[at:at + 1000]), 1)
            count = self.r.pfcount(f"h{n}")
            self.assertEqual(self.k.pfcount(f"h{n}"), count)
            self.assertEqual(self.k.execute_command("PFDEBUG", "ENCODING", f"h{n}"),
                             self.r.execute_command("PFDEBUG", "ENCODING", f"h{n}"))
            self.assertEqual(self.k.execute_command("PFDEBUG", "GETREG", f"h{n}"),
                             self.r.execute_command("PFDEBUG", "GETREG", f"h{n}"))  # both dense now
            self.assertEqual(self.k.get(f"h{n}"), self.r.get(f"h{n}"))  # dense, cache written: byte for byte
            # Each server's sketch on the other: the same count, and no register grows for the
            # elements it holds already.
            self.k.restore(f"from-redis{n}", 0, self.r.dump(f"h{n}"))
            self.r.restore(f"from-keg{n}", 0, self.k.dump(f"h{n}"))
            self.assertEqual(self.k.pfcount(f"from-redis{n}"), count)
            self.assertEqual(self.r.pfcount(f"from-keg{n}"), count)
            self.assertEqual(self.k.pfadd(f"from-redis{n}", *items[:1000]), 0)
            self.assertEqual(self.r.pfadd(f"from-keg{n}", *items[:1000]), 0)
        # A sparse sketch Redis wrote, set as a plain string on keg, grows and merges there as on Redis.
        self.r.delete("s1", "s2")
        self.r.pfadd("s1", "a", "b", "c")
        self.r.pfadd("s2", "c", "d", "e")
        for name in ("s1", "s2"):
            self.k.set(name, self.r.get(name))
        for c in (self.k, self.r):
            self.assertEqual(c.pfmerge("u", "s1", "s2"), True)
            self.assertEqual(c.pfcount("u"), 5)
            self.assertEqual(c.pfcount("s1", "s2", "h3"), 8)
            self.assertEqual(c.pfadd("s1", "f"), 1)
        self.assertEqual(self.k.pfcount("s1"), self.r.pfcount("s1"))
        self.assertEqual(self.k.execute_command("PFDEBUG", "DECODE", "s1"),
                         self.r.execute_command("PFDEBUG", "DECODE", "s1"))

    def test_hyperloglog_errors_are_redis_s(self):
        after = []
        for c in (self.k, self.r):
            c.delete("str", "list", "hll")
            c.set("str", "not a sketch")
            c.rpush("list", "x")
            c.pfadd("hll", "a")
            for args, want in ((("PFADD", "str", "x"), "WRONGTYPE Key is not a valid HyperLogLog string value."),
                               (("PFCOUNT", "str"), "WRONGTYPE Key is not a valid HyperLogLog string value."),
                               (("PFCOUNT", "hll", "str"), "WRONGTYPE Key is not a valid HyperLogLog string value."),
                               (("PFMERGE", "hll", "str"), "WRONGTYPE Key is not a valid HyperLogLog string value."),
                               (("PFADD", "list", "x"), "WRONGTYPE Operation against a key holding the wrong kind of value"),
                               (("PFDEBUG", "ENCODING", "nokey"), "The specified key does not exist"),
                               (("PFDEBUG", "NOSUCH", "hll"), "Unknown PFDEBUG subcommand 'NOSUCH'"),
                               (("PFDEBUG", "ENCODING"), "wrong number of arguments for 'pfdebug' command")):
                with self.subTest(server=c.connection_pool.connection_kwargs["port"], args=args):
                    with self.assertRaises(redis.ResponseError) as e:
                        c.execute_command(*args)
                    self.assertEqual(str(e.exception), want)
            self.assertEqual(c.get("str"), b"not a sketch")  # a failed PFADD / PFMERGE writes nothing
            # A sparse sketch whose runs pass the last register: INVALIDOBJ for a count, nothing
            # written; PFADD reads the runs only up to the register it sets (as Redis's), and
            # both servers leave the same bytes.
            c.append("hll", "hello")
            before = c.get("hll")
            with self.assertRaises(redis.ResponseError) as e:
                c.pfcount("hll")
            self.assertEqual(str(e.exception), "INVALIDOBJ Corrupted HLL object detected")
            self.assertEqual(c.get("hll"), before)
            self.assertEqual(c.pfadd("hll", "zzz"), 1)
            after.append(c.get("hll"))
        self.assertEqual(after[0], after[1])
        # PFCOUNT is a read to COMMAND and ACL (its cache write aside), PFADD a write, as Redis's
        # (keg shows no denyoom flag on any command: it never evicts).
        answers = []
        for c in (self.k, self.r):
            c.execute_command("ACL", "SETUSER", "u", "on", "nopass", "+@all", "%R~read*", "%W~write*", "%RW~rw*")
            answers.append([c.execute_command("ACL", "DRYRUN", "u", cmd, key, *extra)
                            for cmd, extra in (("PFCOUNT", ()), ("PFADD", ("a",)), ("PFMERGE", ("rw",)))
                            for key in ("read", "write", "rw")] +
                           [c.execute_command("COMMAND", "INFO", "pfcount")["pfcount"]["flags"]])
        self.assertEqual(answers[0], answers[1])

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
