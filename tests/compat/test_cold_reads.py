"""Data larger than memory: reads of keys whose records are not in the page cache (issue 14).

DEBUG DROP-PAGE-CACHE evicts the data files' pages, so every key is cold; each command's keys are
then read before it runs, through the event loop's io_uring or the read pool's threads (INFO keg:
cold_read_commands, cold_read_io_uring_commands). These tests check what
a client relies on: the values, the order of replies in a pipeline, transactions and writes on
cold keys, and that a client waiting for a cold read does not hold up the others.
"""
import os
import sys
import threading
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import redis  # noqa: E402

from kegtest import free_port, keg  # noqa: E402


def value_of(i):
    # Sizes from a few bytes to several pages, so records cross page boundaries.
    return (b"%d:" % i) * (1 + (i * 37) % (3000 if i % 50 else 30000))


class ColdReads(unittest.TestCase):
    def setUp(self):
        self.metrics = free_port()
        self.server = keg("--enable-debug-command", "yes", "--metrics-port", str(self.metrics))
        self.c = redis.Redis(port=self.server.port, socket_timeout=30)
        pipe = self.c.pipeline(transaction=False)
        for i in range(2000):
            pipe.set(f"k{i}", value_of(i))
        pipe.set("n", 41)
        pipe.execute()

    def tearDown(self):
        self.c.close()
        self.server.stop()

    def info(self, field):
        return self.c.info("keg")[field]

    def make_cold(self):
        self.c.execute_command("DEBUG", "RELOAD")  # synced: the pages are clean, so evictable
        self.c.execute_command("DEBUG", "DROP-PAGE-CACHE")
        if self.info("data_files_maybe_cold") != 1:
            self.skipTest("this file system does not evict pages on request (tmpfs?)")

    def test_cold_values_are_fetched_and_right(self):
        # Both ways of reading cold records: the event loop's io_uring (the default; records over
        # 16 KiB still go through the pool), also one read in the kernel at a time (the others
        # queued in the ring's turn), and the read pool's threads alone.
        for ring, depth in (("yes", 6), ("yes", 1), ("no", 6)):
            with self.subTest(cold_read_io_uring=ring, cold_read_depth=depth):
                self.c.config_set("cold-read-io-uring", ring)
                self.c.config_set("cold-read-depth", depth)
                self.assertEqual(self.c.config_get("cold-read-depth"), {"cold-read-depth": str(depth)})
                for bad in (0, 257):
                    with self.assertRaises(redis.ResponseError):
                        self.c.config_set("cold-read-depth", bad)
                self.make_cold()
                before = self.info("cold_read_commands")
                ring_before = self.info("cold_read_io_uring_commands")
                for i in range(0, 2000, 7):
                    self.assertEqual(self.c.get(f"k{i}"), value_of(i), i)
                fetched = self.info("cold_read_commands") - before
                through_ring = self.info("cold_read_io_uring_commands") - ring_before
                # Records that share a page with one already fetched are warm: most GETs are not.
                self.assertGreater(fetched, 100)
                if ring == "yes":
                    with open(os.path.join(self.server.dir, "server.log")) as f:
                        refused = "io_uring unavailable" in f.read()
                    if refused:
                        self.skipTest("this kernel refuses io_uring")
                    self.assertGreater(through_ring, 100)
                else:
                    self.assertEqual(through_ring, 0)
                self.assertEqual(self.c.mget("k1", "k2", "nosuch", "k1999"),
                                 [value_of(1), value_of(2), None, value_of(1999)])
                many = [f"k{i}" for i in range(1, 2000, 13)]  # cold: in no page read above
                self.assertEqual(self.c.mget(many), [value_of(int(k[1:])) for k in many])
                self.assertEqual(self.c.strlen("k50"), len(value_of(50)))
                self.assertEqual(self.c.getrange("k100", 0, 3), value_of(100)[:4])
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics}/metrics", timeout=10) as r:
            text = r.read().decode()
        samples = dict(line.split(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
        self.assertGreater(float(samples["keg_cold_read_commands_total"]), 300)
        self.assertGreaterEqual(float(samples["keg_cold_read_keys_total"]), float(samples["keg_cold_read_commands_total"]))
        self.assertGreater(float(samples["keg_cold_read_wait_seconds_total"]), 0)
        self.assertGreater(float(samples["keg_cold_read_io_uring_commands_total"]), 100)
        self.assertLess(float(samples["keg_cold_read_io_uring_commands_total"]),
                        float(samples["keg_cold_read_commands_total"]))

    def test_pipeline_replies_stay_in_order(self):
        self.make_cold()
        pipe = self.c.pipeline(transaction=False)
        pipe.set("fresh", "1")
        pipe.get("k10")
        pipe.get("fresh")
        pipe.incr("n")
        pipe.mget("k20", "k30")
        pipe.get("nosuch")
        pipe.append("k40", "!")
        pipe.get("k40")
        pipe.delete("k60")
        pipe.exists("k60", "k61")
        self.assertEqual(pipe.execute(), [True, value_of(10), b"1", 42, [value_of(20), value_of(30)], None,
                                          len(value_of(40)) + 1, value_of(40) + b"!", 1, 1])

    def test_transactions_and_conditional_writes_on_cold_keys(self):
        self.make_cold()
        pipe = self.c.pipeline(transaction=True)
        pipe.get("k70")
        pipe.set("k71", "new", nx=True)
        pipe.incrby("n", 2)
        pipe.get("k72")
        self.assertEqual(pipe.execute(), [value_of(70), None, 43, value_of(72)])
        self.make_cold()
        self.assertIsNone(self.c.set("k80", "x", nx=True))  # exists: NX refuses
        self.assertEqual(self.c.set("k81", "x", xx=True, get=True), value_of(81))
        self.assertEqual(self.c.getdel("k82"), value_of(82))
        self.assertIsNone(self.c.get("k82"))

    def test_a_slow_cold_read_does_not_hold_up_other_clients(self):
        other = redis.Redis(port=self.server.port, socket_timeout=30)
        other.set("hot", "h")
        self.make_cold()
        self.assertEqual(other.get("hot"), b"h")  # warm again (fetched once)
        self.c.execute_command("DEBUG", "COLD-READ-DELAY", "1500")
        slow = redis.Redis(port=self.server.port, socket_timeout=30)
        result = {}

        def cold_get():
            t0 = time.monotonic()
            result["value"] = slow.get("k5")
            result["seconds"] = time.monotonic() - t0

        t = threading.Thread(target=cold_get)
        t.start()
        time.sleep(0.3)  # the cold GET is waiting for the pool now
        t0 = time.monotonic()
        for _ in range(20):
            self.assertEqual(other.get("hot"), b"h")
            self.assertTrue(other.ping())
        other_seconds = time.monotonic() - t0
        t.join()
        self.assertEqual(result["value"], value_of(5))
        self.assertGreater(result["seconds"], 1.2)  # it did wait for the (slowed) fetch
        self.assertLess(other_seconds, 0.5)  # and the other client did not
        self.c.execute_command("DEBUG", "COLD-READ-DELAY", "0")
        slow.close()
        other.close()

    def test_shutdown_while_a_cold_read_waits(self):
        # The pool finishes what is queued before the store closes: the waiting client gets its
        # value (or the connection closes), and the server exits cleanly.
        self.make_cold()
        with self.assertRaises(redis.ResponseError):
            self.c.execute_command("DEBUG", "COLD-READ-DELAY", "-1")
        self.c.execute_command("DEBUG", "COLD-READ-DELAY", "800")
        slow = redis.Redis(port=self.server.port, socket_timeout=30)
        result = {}

        def cold_get():
            try:
                result["value"] = slow.get("k9")
            except redis.ConnectionError:
                result["value"] = "closed"

        t = threading.Thread(target=cold_get)
        t.start()
        time.sleep(0.3)
        self.server.proc.send_signal(15)
        self.assertEqual(self.server.proc.wait(timeout=20), 0)
        t.join()
        self.assertIn(result["value"], (value_of(9), "closed"))
        slow.close()

    def test_keyspace_walks_run_off_the_loop(self):
        self.make_cold()
        want = {f"k{i}".encode() for i in range(2000)} | {b"n"}
        self.assertEqual(set(self.c.keys("*")), want)
        self.assertEqual(set(self.c.keys("k19?")), {f"k19{i}".encode() for i in range(10)})
        self.make_cold()
        self.assertEqual(set(self.c.scan_iter(count=100)), want)
        self.assertIn(self.c.randomkey(), want)
        # A slow walk: another client goes on meanwhile, and the walk's reply keeps its place.
        self.make_cold()
        self.c.execute_command("DEBUG", "COLD-READ-DELAY", "1000")
        other = redis.Redis(port=self.server.port, socket_timeout=30)
        result = {}

        def walk():
            pipe = self.c.pipeline(transaction=False)
            pipe.keys("k1999")
            pipe.get("n")
            result["replies"] = pipe.execute()

        t = threading.Thread(target=walk)
        t.start()
        time.sleep(0.3)
        t0 = time.monotonic()
        self.assertTrue(other.ping())
        self.assertLess(time.monotonic() - t0, 0.5)
        t.join()
        self.assertEqual(result["replies"], [[b"k1999"], b"41"])
        self.c.execute_command("DEBUG", "COLD-READ-DELAY", "0")
        other.close()

    def test_flushall_of_a_cold_data_set_reads_nothing(self):
        # FLUSHALL writes one record; before, the writer read every key to write its tombstone
        # (a disk read per key when the data is not in the page cache, all writes waiting).
        self.make_cold()
        with open(f"/proc/{self.server.proc.pid}/io") as f:
            before = int(next(line for line in f if line.startswith("read_bytes:")).split()[1])
        self.assertTrue(self.c.flushall())
        with open(f"/proc/{self.server.proc.pid}/io") as f:
            after = int(next(line for line in f if line.startswith("read_bytes:")).split()[1])
        self.assertLess(after - before, 64 * 1024)  # the data files hold about 6 MB
        self.assertEqual(self.c.dbsize(), 0)
        self.assertIsNone(self.c.get("k1"))
        self.c.set("after", "1")
        self.assertEqual(self.c.keys("*"), [b"after"])

    def test_keys_stay_right_through_a_compaction_while_cold(self):
        for i in range(0, 2000, 3):
            self.c.set(f"k{i}", b"v2:" + value_of(i))  # dead bytes for compaction
        self.make_cold()
        self.c.execute_command("COMPACT")
        self.make_cold()
        for i in range(0, 2000, 11):
            want = b"v2:" + value_of(i) if i % 3 == 0 else value_of(i)
            self.assertEqual(self.c.get(f"k{i}"), want, i)


    def test_elements_of_large_collections_are_fetched_before_they_are_read(self):
        # A large hash or set keeps each element in a record of its own (docs/types.md): the
        # elements a command names (HGET, HMGET, SISMEMBER, HSET ...) or reads whole (HGETALL,
        # SMEMBERS, SINTER) are fetched off the loop like keys, through the ring and the pool.
        fields = {f"f{i}".encode(): value_of(i) for i in range(1500)}
        pipe = self.c.pipeline(transaction=False)
        for i in range(0, 1500, 100):
            pipe.hset("bigh", mapping={f"f{j}": value_of(j) for j in range(i, i + 100)})
            pipe.sadd("bigs", *[f"m{j}" + "x" * (j % 300) for j in range(i, i + 100)])
        pipe.execute()
        self.assertEqual(self.c.object("encoding", "bigh"), b"hashtable")
        for ring in ("yes", "no"):
            with self.subTest(cold_read_io_uring=ring):
                self.c.config_set("cold-read-io-uring", ring)
                self.make_cold()
                before = self.info("cold_read_commands")
                for i in range(0, 1500, 29):
                    self.assertEqual(self.c.hget("bigh", f"f{i}"), value_of(i), i)
                # The head is in after the first HGET: the others wait for their element alone.
                self.assertGreater(self.info("cold_read_commands") - before, 20)
                self.make_cold()
                before = self.info("cold_read_commands")
                self.assertEqual(self.c.hmget("bigh", "f3", "f1001", "nope"), [value_of(3), value_of(1001), None])
                self.assertTrue(self.c.sismember("bigs", "m7" + "x" * 7))
                self.assertEqual(self.c.hgetall("bigh"), fields)
                self.assertEqual(len(self.c.smembers("bigs")), 1500)
                self.assertEqual(self.c.hset("bigh", "f9", "new"), 0)
                self.assertGreaterEqual(self.info("cold_read_commands") - before, 3)
                self.c.hset("bigh", "f9", value_of(9))

    def test_scans_and_transactions_fetch_the_elements_they_read(self):
        # HSCAN / SSCAN read the slice their cursor names, and EXEC's queued commands the elements
        # they name: those are fetched off the loop too (they used to fault on it: only the keys'
        # records were looked at). The head is made resident first (HLEN reads it alone), so a
        # fetch counted here is for elements.
        pipe = self.c.pipeline(transaction=False)
        for i in range(0, 1500, 100):
            pipe.hset("bigh", mapping={f"f{j}": value_of(j) for j in range(i, i + 100)})
            pipe.sadd("bigs", *[f"m{j}" + "x" * (j % 300) for j in range(i, i + 100)])
            pipe.zadd("bigz", {f"m{j}" + "x" * (j % 300): j for j in range(i, i + 100)})
        pipe.execute()
        members = {f"m{j}".encode() + b"x" * (j % 300) for j in range(1500)}
        scored = {(f"m{j}".encode() + b"x" * (j % 300), float(j)) for j in range(1500)}
        for name, scan, length, want in (
                ("hscan", lambda cur: self.c.hscan("bigh", cur, count=200), lambda: self.c.hlen("bigh"), None),
                ("sscan", lambda cur: self.c.sscan("bigs", cur, count=200), lambda: self.c.scard("bigs"), members),
                ("zscan", lambda cur: self.c.zscan("bigz", cur, count=200), lambda: self.c.zcard("bigz"), scored)):
            with self.subTest(command=name):
                self.make_cold()
                self.assertEqual(length(), 1500)  # the head, fetched alone
                before = self.info("cold_read_commands")
                cursor, first = scan(0)
                self.assertGreater(len(first), 0)
                self.assertGreaterEqual(self.info("cold_read_commands") - before, 1)
                seen = set(first)
                while cursor != 0:  # the whole walk, cold slice after cold slice, stays right
                    cursor, more = scan(cursor)
                    seen |= set(more)
                if want is None:
                    self.assertEqual(seen, {f"f{i}".encode() for i in range(1500)})
                else:
                    self.assertEqual(seen, want)
        # LRANGE / LINDEX of a large list fetch the range they read (and the list's meta element),
        # the head made resident first (TYPE reads it alone).
        pipe = self.c.pipeline(transaction=False)
        for i in range(0, 1500, 100):
            pipe.rpush("bigl", *[value_of(j) for j in range(i, i + 100)])
        pipe.execute()
        for name, call, want in (
                ("lrange", lambda: self.c.lrange("bigl", 700, 760), [value_of(j) for j in range(700, 761)]),
                ("lrange from the end", lambda: self.c.lrange("bigl", -30, -1), [value_of(j) for j in range(1470, 1500)]),
                ("lindex", lambda: self.c.lindex("bigl", -1234), value_of(1500 - 1234))):
            with self.subTest(command=name):
                self.make_cold()
                self.assertEqual(self.c.type("bigl"), b"list")
                before = self.info("cold_read_commands")
                self.assertEqual(call(), want)
                self.assertGreaterEqual(self.info("cold_read_commands") - before, 1)
        # ZSCORE / ZMSCORE fetch the members they name (the head made resident first).
        self.make_cold()
        self.assertEqual(self.c.zcard("bigz"), 1500)
        before = self.info("cold_read_commands")
        self.assertEqual(self.c.zscore("bigz", "m1234" + "x" * 34), 1234.0)
        self.assertEqual(self.c.zmscore("bigz", ["m77" + "x" * 77, "nope"]), [77.0, None])
        self.assertGreaterEqual(self.info("cold_read_commands") - before, 1)
        # Queued while warm (queuing fetches them too), cold again by the EXEC.
        tx = redis.Connection(port=self.server.port, socket_timeout=30)  # raw replies, no callbacks

        def call(*args):
            tx.send_command(*args)
            return tx.read_response()

        self.assertEqual(call("MULTI"), b"OK")
        for queued in (("HGET", "bigh", "f3"), ("HMGET", "bigh", "f1001", "f77"), ("SISMEMBER", "bigs", "m7" + "x" * 7)):
            self.assertEqual(call(*queued), b"QUEUED")
        self.c.execute_command("DEBUG", "DROP-PAGE-CACHE")
        self.assertEqual(self.c.hlen("bigh"), 1500)
        self.assertEqual(self.c.scard("bigs"), 1500)
        before = self.info("cold_read_commands")
        self.assertEqual(call("EXEC"), [value_of(3), [value_of(1001), value_of(77)], 1])
        self.assertGreaterEqual(self.info("cold_read_commands") - before, 1)
        tx.disconnect()


if __name__ == "__main__":
    unittest.main()
