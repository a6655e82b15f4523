"""Replication (issue 19), its first part: the full snapshot SYNC sends in Redis's RDB format.

`redis-cli --rdb FILE` (REPLCONF capa eof, REPLCONF rdb-only 1, SYNC) against keg writes a file
that redis-check-rdb accepts and redis-server 7.0.15 loads into the same data set (DEBUG DIGEST,
which covers every key, value and expiry of every database, equal on both sides) — every type,
small and large encodings, expiries, several databases — and the snapshot is one moment of the
data set while writes go on.
"""
import os
import shutil
import subprocess
import tempfile
import threading
import unittest

import redis

import kegtest


def fill(c):
    """Every type keg has, small (stored whole) and large (stored per element), with expiries,
    in databases 0, 3 and 15."""
    c.set("s", "hello")
    c.set("n", "12345")
    c.set("long", "x" * 5000)
    c.set("bin\x00key", b"\x00\xff\r\n")
    c.set("ttl", "v", px=3_600_000)
    c.hset("h", mapping={"a": "1", "b": "2"})
    c.sadd("set", "x", "y")
    c.sadd("intset", 1, 2, 3)
    c.rpush("l", "a", "b", "c")
    c.zadd("z", {"a": 1, "b": 2.5, "c": float("-inf")})
    pipe = c.pipeline(transaction=False)
    for i in range(2000):
        pipe.hset("bigh", f"f{i}", "v" * (i % 100))
        pipe.sadd("bigs", f"m{i}")
        pipe.rpush("bigl", f"e{i}")
        pipe.lpush("bigl", f"front{i}")
        pipe.zadd("bigz", {f"m{i}": i * 0.5})
    pipe.execute()
    c.expire("bigh", 3600)
    c.lpop("bigl", 10)
    c.rpop("bigl", 10)
    c.zrem("bigz", "m7")
    for db in (3, 15):
        other = redis.Redis(port=c.connection_pool.connection_kwargs["port"], db=db)
        other.set(f"in{db}", str(db))
        other.rpush(f"list{db}", *[str(i) for i in range(200)])
        other.close()


class SnapshotTest(unittest.TestCase):
    def setUp(self):
        self.keg = kegtest.keg("--enable-debug-command", "yes")
        self.c = redis.Redis(port=self.keg.port)
        self.dir = tempfile.mkdtemp(prefix="keg_rdb_")

    def tearDown(self):
        self.c.close()
        self.keg.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def take(self):
        path = os.path.join(self.dir, "dump.rdb")
        if os.path.exists(path):
            os.unlink(path)
        r = subprocess.run(["redis-cli", "-p", str(self.keg.port), "--rdb", path],
                           capture_output=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"Transfer finished with success", r.stderr)
        check = subprocess.run(["redis-check-rdb", path], capture_output=True, timeout=120)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        self.assertIn(b"RDB looks OK", check.stdout)
        return path

    def load_in_redis(self, path):
        return kegtest.redis("--dir", os.path.dirname(path), "--dbfilename", os.path.basename(path),
                             "--enable-debug-command", "yes")

    def test_redis_loads_the_same_data_set(self):
        fill(self.c)
        lib = "#!lua name=snaplib\nredis.register_function('echo1', function(keys, args) return args[1] end)"
        self.c.execute_command("FUNCTION", "LOAD", lib)
        self.assertEqual(self.c.object("encoding", "bigl"), b"quicklist")
        self.assertEqual(self.c.object("encoding", "bigz"), b"skiplist")
        path = self.take()
        server = self.load_in_redis(path)
        try:
            r = redis.Redis(port=server.port)
            self.assertEqual(r.execute_command("DEBUG", "DIGEST"), self.c.execute_command("DEBUG", "DIGEST"))
            for db in (0, 3, 15):
                mine = redis.Redis(port=self.keg.port, db=db)
                theirs = redis.Redis(port=server.port, db=db)
                self.assertEqual(theirs.dbsize(), mine.dbsize(), db)
                mine.close()
                theirs.close()
            self.assertEqual(r.lrange("bigl", 0, 4), self.c.lrange("bigl", 0, 4))
            self.assertGreater(r.pttl("ttl"), 3_000_000)
            self.assertEqual(r.zscore("z", "c"), float("-inf"))
            # The function libraries travel with the data, as in Redis's RDB.
            self.assertEqual(r.execute_command("FCALL", "echo1", 0, "hi"), b"hi")
            r.close()
        finally:
            server.stop()

    def test_an_empty_store_and_refusals(self):
        path = self.take()
        server = self.load_in_redis(path)
        try:
            self.assertEqual(redis.Redis(port=server.port).dbsize(), 0)
        finally:
            server.stop()
        # A replica that would wait for the command stream after the snapshot is refused, not
        # left with a snapshot it never hears more of.
        with self.assertRaises(redis.ResponseError) as e:
            self.c.execute_command("SYNC")
        self.assertIn("rdb-only", str(e.exception))
        # ROLE as redis-server answers it for a primary without replicas.
        server = kegtest.redis()
        try:
            self.assertEqual(self.c.execute_command("ROLE"),
                             redis.Redis(port=server.port).execute_command("ROLE"))
            # REPLCONF's errors, as redis-server words them.
            for args, text in ((("nonsense", "1"), "Unrecognized REPLCONF option: nonsense"),
                               (("rdb-only",), "syntax error"),
                               (("rdb-only", "2"), "value is out of range, value must between 0 and 1"),
                               (("rdb-only", "x"), "value is not an integer or out of range"),
                               (("listening-port", "x"), "value is not an integer or out of range")):
                with self.subTest(args=args):
                    with self.assertRaises(redis.ResponseError) as e:
                        self.c.execute_command("REPLCONF", *args)
                    self.assertEqual(str(e.exception), text)
                    with self.assertRaises(redis.ResponseError) as theirs:
                        redis.Redis(port=server.port).execute_command("REPLCONF", *args)
                    self.assertEqual(str(theirs.exception), text)
        finally:
            server.stop()

    def test_the_snapshot_is_one_moment_while_writes_go_on(self):
        # Writers move value between two keys in transactions (their sum stays 0) and grow a list
        # whose length they record beside it: any snapshot holds a whole number of transactions.
        self.c.set("a", 0)
        self.c.set("b", 0)
        stop = threading.Event()

        def writer():
            w = redis.Redis(port=self.keg.port)
            i = 0
            while not stop.is_set():
                p = w.pipeline(transaction=True)
                p.incrby("a", 3)
                p.decrby("b", 3)
                p.rpush("grow", "x" * 50)
                p.incr("grown")
                p.execute()
                i += 1
            w.close()

        threads = [threading.Thread(target=writer) for _ in range(2)]
        for t in threads:
            t.start()
        try:
            for _ in range(3):
                path = self.take()
                server = self.load_in_redis(path)
                try:
                    r = redis.Redis(port=server.port)
                    self.assertEqual(int(r.get("a")) + int(r.get("b")), 0)
                    self.assertEqual(r.llen("grow"), int(r.get("grown") or 0))
                    r.close()
                finally:
                    server.stop()
        finally:
            stop.set()
            for t in threads:
                t.join()


if __name__ == "__main__":
    unittest.main()
