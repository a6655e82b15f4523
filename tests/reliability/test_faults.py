"""Disk full and I/O errors, injected for real, against keg-server.

- ENOSPC: the data directory is a 24 MiB tmpfs (mounted by the test; it needs root, as CI has).
  Writes get -MISCONF naming the cause, reads keep working, nothing acknowledged is lost, keg does
  not die (no SIGBUS: it never writes through a mapping), and writes resume once space is freed.
- EIO from fdatasync (appendfsync always) and from pwrite, through the LD_PRELOAD fault shim's
  control file (KEG_FAULT_CONTROL): no write is acknowledged after a failed sync; a failed pwrite
  fails only its own group.
"""
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

import resp
from server import Keg, free_port

SHIM = os.environ.get("KEG_FAULT_SHIM")
MISCONF = "MISCONF Errors writing to the AOF file:"


def ready(metrics_port):
    """GET /health/ready: (status, body)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/health/ready", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


class Base(unittest.TestCase):
    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="keg_faults_")
        self.servers = []

    def tearDown(self):
        for k in self.servers:
            k.kill()
        shutil.rmtree(self.work, ignore_errors=True)

    def keg(self, data_dir, *args, env=None):
        k = Keg(data_dir, *args, env=env, log=os.path.join(self.work, "keg.log"))
        self.servers.append(k)
        return k


class DiskFull(Base):
    def setUp(self):
        super().setUp()
        self.mnt = os.path.join(self.work, "small")
        os.makedirs(self.mnt)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", self.mnt],
                           capture_output=True, text=True)
        if r.returncode != 0:
            self.fail(f"cannot mount a tmpfs for the disk-full test (needs root): {r.stderr}")

    def tearDown(self):
        for k in self.servers:
            k.kill()
        subprocess.run(["umount", self.mnt], capture_output=True)
        super().tearDown()

    def fill_until_full(self, k, prefix, value):
        """SETs until one fails; returns (acknowledged keys, the error text)."""
        acked = []
        c = k.conn()
        try:
            for i in range(100000):
                key = f"{prefix}{i}"
                try:
                    c.call("SET", key, value)
                    acked.append(key)
                except resp.ReplyError as e:
                    return acked, str(e)
        finally:
            c.close()
        self.fail("the disk never filled up")

    def check_policy(self, policy):
        ballast = os.path.join(self.mnt, "ballast")
        with open(ballast, "wb") as f:
            f.write(b"\0" * (6 << 20))
        metrics = free_port()
        k = self.keg(os.path.join(self.mnt, "data"), "--appendfsync", policy,
                     "--data-file-size", "4mb", "--metrics-port", str(metrics))
        k.start()
        self.assertEqual(ready(metrics)[0], 200)
        value = b"v" * 8000
        acked, error = self.fill_until_full(k, "k", value)
        self.assertGreater(len(acked), 500)
        self.assertTrue(error.startswith(MISCONF), error)
        self.assertIn("No space left on device", error)
        # Still full: more writes fail the same way, reads of everything acknowledged work.
        c = k.conn()
        for i in range(20):
            with self.assertRaises(resp.ReplyError) as e:
                c.call("SET", f"more{i}", value)
            self.assertTrue(str(e.exception).startswith(MISCONF))
        for key in acked:
            self.assertEqual(c.call("GET", key), value, key)
        c.close()
        self.assertTrue(k.alive(), "keg died on a full disk")
        # The readiness probe says why writes fail.
        status, body = ready(metrics)
        self.assertEqual(status, 503, body)
        self.assertIn("No space left on device", body)
        # Space back: writes resume.
        os.unlink(ballast)
        t0 = time.monotonic()
        c = k.conn()
        self.assertEqual(c.call("SET", "after", b"space is back"), b"OK")
        resumed = time.monotonic() - t0
        c.close()
        self.assertEqual(ready(metrics)[0], 200)
        self.assertLess(resumed, 5)
        # Nothing acknowledged was lost, and no refused write appeared.
        self.assertEqual(k.stop(), 0)
        k.start()
        c = k.conn()
        for key in acked:
            self.assertEqual(c.call("GET", key), value, key)
        self.assertEqual(c.call("GET", "after"), b"space is back")
        self.assertEqual(c.call("EXISTS", *[f"more{i}" for i in range(20)]), 0)
        c.close()
        k.stop()
        print(f"\n  {policy}: full after {len(acked)} writes; writes resumed "
              f"{resumed * 1000:.0f} ms after space came back", flush=True)

    def test_enospc_always(self):
        self.check_policy("always")

    def test_enospc_everysec(self):
        self.check_policy("everysec")


@unittest.skipUnless(SHIM, "KEG_FAULT_SHIM is not set")
class InjectedErrors(Base):
    def start(self, policy):
        self.control = os.path.join(self.work, "fault.control")
        data = os.path.join(self.work, "data")
        env = {"LD_PRELOAD": SHIM, "KEG_FAULT_DIR": data, "KEG_FAULT_CONTROL": self.control}
        self.metrics = free_port()
        k = self.keg(data, "--appendfsync", policy, "--metrics-port", str(self.metrics), env=env)
        k.start()
        return k

    def inject(self, op, errno):
        with open(self.control, "w") as f:
            f.write(f"{op} {errno}\n")

    def heal(self):
        os.unlink(self.control)

    def test_fdatasync_eio_is_never_acknowledged_and_stops_writes(self):
        k = self.start("always")
        c = k.conn()
        for i in range(100):
            c.call("SET", f"before{i}", f"v{i}")
        self.inject("fdatasync", 5)  # EIO
        with self.assertRaises(resp.ReplyError) as e:
            c.call("SET", "during", "x")
        self.assertTrue(str(e.exception).startswith(MISCONF), str(e.exception))
        self.assertIn("Input/output error", str(e.exception))
        self.heal()
        # The sync failed: the pages it covered may be lost whatever a retry says, so keg refuses
        # every later write (fail-stop) instead of acknowledging on the strength of a new fsync.
        for i in range(10):
            with self.assertRaises(resp.ReplyError):
                c.call("SET", f"after{i}", "y")
        self.assertEqual(c.call("GET", "before7"), b"v7")  # reads keep working
        info = c.call("INFO", "persistence").decode()
        self.assertIn("aof_last_write_status:err", info)
        c.close()
        status, body = ready(self.metrics)
        self.assertEqual(status, 503, body)
        self.assertIn("writes failing", body)
        self.assertIn("Input/output error", body)
        self.assertRegex(k.log_text(), r"fdatasync .*\.data.*Input/output error \(errno 5\)")
        # Shutting down says the store could not make everything durable (exit 1); a restart
        # recovers from the log, and everything acknowledged is there.
        self.assertEqual(k.stop(), 1)
        k.env.pop("KEG_FAULT_CONTROL")
        k.start()
        c = k.conn()
        for i in range(100):
            self.assertEqual(c.call("GET", f"before{i}"), f"v{i}".encode())
        self.assertEqual(c.call("EXISTS", *[f"after{i}" for i in range(10)]), 0)
        self.assertEqual(c.call("SET", "again", "z"), b"OK")
        c.close()
        self.assertEqual(ready(self.metrics)[0], 200)

    def test_no_reply_before_its_fdatasync_returns(self):
        """The group-commit barrier under `always`: with every fdatasync slowed to 150 ms, no SET
        is acknowledged sooner, and writes from many clients share a sync."""
        k = self.start("always")
        delay = 0.15
        self.inject("fdatasync-delay-ms", int(delay * 1000))
        latencies = []
        lock = threading.Lock()

        def client(n):
            c = k.conn()
            for i in range(5):
                t = time.monotonic()
                c.call("SET", f"slow{n}:{i}", "v")
                with lock:
                    latencies.append(time.monotonic() - t)
            c.close()

        t0 = time.monotonic()
        threads = [threading.Thread(target=client, args=(n,)) for n in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - t0
        self.heal()
        self.assertEqual(len(latencies), 100)
        self.assertGreaterEqual(min(latencies), delay)  # no reply before its sync returned
        # 100 writes one sync each would take 15 s; group commit shares the syncs.
        self.assertLess(elapsed, 100 * delay / 4)
        print(f"\n  fdatasync slowed to {delay * 1000:.0f} ms: 100 SETs from 20 clients, fastest "
              f"reply {min(latencies) * 1000:.0f} ms, all in {elapsed:.2f} s", flush=True)

    def test_power_cut_after_compaction_keeps_the_newest_value(self):
        """Under `no`, a key's new value sits unsynced in the active file while an automatic
        compaction drops its old value and unlinks the old file. A power cut right after must not
        leave the key with neither: compaction makes the active file durable before it retires its
        inputs. (COMPACT itself first seals the active file, so it cannot show this.)"""
        import powerloss

        class DropAllUnsynced:  # the worst power cut: nothing unsynced survives
            def random(self):
                return 0.0

            def randint(self, a, b):
                return b if a == 0 else a

        data = os.path.join(self.work, "data")
        journal = os.path.join(self.work, "journal")
        stash = os.path.join(self.work, "stash")
        os.makedirs(stash)
        powerloss.baseline(data, journal)
        env = {"LD_PRELOAD": SHIM, "KEG_FAULT_DIR": data, "KEG_FAULT_JOURNAL": journal,
               "KEG_FAULT_STASH": stash}
        k = self.keg(data, "--appendfsync", "no", "--data-file-size", "1mb",
                     "--compaction-frag-trigger", "1", env=env)
        k.start()
        c = k.conn()
        c.call("SET", "key", b"o" * 30000)
        for i in range(300):  # past 1 MB: the file holding the old value is sealed (and synced)
            c.call("SET", f"filler{i}", b"f" * 4000)
        c.call("SET", "key", "new")  # unsynced, in the active file; the old value is now dead
        deadline = time.monotonic() + 30  # the background thread compacts the sealed file
        while b"compactions:0" in c.call("INFO", "keg") and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertNotIn(b"compactions:0", c.call("INFO", "keg"))
        c.close()
        k.kill()
        powerloss.power_cut(data, journal, stash, DropAllUnsynced())
        k.env = dict(os.environ)
        k.start()
        self.assertEqual(k.call("GET", "key"), b"new")

    def test_pwrite_error_fails_its_group_only(self):
        k = self.start("everysec")
        c = k.conn()
        c.call("SET", "a", "1")
        self.inject("pwrite", 5)
        with self.assertRaises(resp.ReplyError) as e:
            c.call("SET", "b", "2")
        self.assertTrue(str(e.exception).startswith(MISCONF), str(e.exception))
        self.assertRegex(k.log_text(), r"write .*\.data at offset \d+: Input/output error \(errno 5\)")
        self.assertEqual(c.call("GET", "a"), b"1")
        self.heal()
        self.assertEqual(c.call("SET", "c", "3"), b"OK")  # nothing was half-written: go on
        c.close()
        k.kill()  # SIGKILL: what was acknowledged is in the page cache
        k.env.pop("KEG_FAULT_CONTROL")
        k.start()
        c = k.conn()
        self.assertEqual(c.call("MGET", "a", "b", "c"), [b"1", None, b"3"])
        c.close()

    def test_clients_served_by_a_failed_group_get_its_error(self):
        """A push, an EXEC, a script and a RENAME whose group fails to write serve nobody: each client
        blocked on their list gets the write's error instead of waiting for a reply that never
        comes (keg claimed the waiter for the failed group and dropped its reply)."""
        k = self.start("everysec")
        c = k.conn()
        ways = {
            "push": [("LPUSH", "q", "x")],
            "exec": [("MULTI",), ("LPUSH", "q", "x"), ("EXEC",)],
            "script": [("EVAL", "return redis.call('lpush', KEYS[1], 'x')", "1", "q")],
            "rename": [("RENAME", "src", "q")],  # a kWakes command: its own serve op
        }
        for way, commands in ways.items():
            with self.subTest(way=way):
                if way == "rename":
                    self.assertEqual(c.call("RPUSH", "src", "x"), 1)
                waiter = k.conn(timeout=10)
                waiter.send([("BLPOP", "q", "0")])
                deadline = time.monotonic() + 10
                while b"blocked_clients:1" not in c.call("INFO", "clients") and time.monotonic() < deadline:
                    time.sleep(0.01)
                self.inject("pwrite", 5)
                c.send(commands)
                replies = [c.read() for _ in commands]
                self.heal()
                self.assertTrue(any(isinstance(r, resp.ReplyError) or
                                    (isinstance(r, list) and any(isinstance(x, resp.ReplyError) for x in r))
                                    for r in replies), replies)
                got = waiter.read()  # (a hang here times out: socket.timeout)
                self.assertIsInstance(got, resp.ReplyError, got)
                self.assertTrue(str(got).startswith(MISCONF), str(got))
                self.assertEqual(c.call("LLEN", "q"), 0)  # nothing was pushed, nothing popped
                self.assertEqual(waiter.call("PING"), b"PONG")
                waiter.close()
        c.close()

    def test_a_script_whose_group_fails_publishes_nothing(self):
        """A script's PUBLISHes and keyspace events wait for its group (PubSub::Hold): when the
        group fails to write, its client gets the error and subscribers get nothing of it; the
        next script's message and event arrive, in its order."""
        k = self.start("everysec")
        c = k.conn()
        self.assertEqual(c.call("CONFIG", "SET", "notify-keyspace-events", "KEA"), b"OK")
        sub = k.conn(timeout=5)
        sub.send([("SUBSCRIBE", "ch"), ("SUBSCRIBE", "__keyevent@0__:set")])
        sub.read()
        sub.read()
        script = "redis.call('publish', 'ch', ARGV[1]) return redis.call('set', KEYS[1], ARGV[1])"
        self.inject("pwrite", 5)
        with self.assertRaises(resp.ReplyError) as e:
            c.call("EVAL", script, "1", "k", "lost")
        self.heal()
        self.assertTrue(str(e.exception).startswith(MISCONF), str(e.exception))
        self.assertEqual(c.call("EVAL", script, "1", "k", "kept"), b"OK")
        self.assertEqual(sub.read(), [b"message", b"ch", b"kept"])
        self.assertEqual(sub.read(), [b"message", b"__keyevent@0__:set", b"k"])
        sub.close()
        c.close()

    def test_a_failed_snapshot_file_fails_its_sync_only(self):
        """A full sync that is not diskless writes its snapshot to a file in the data directory
        first: a failed write of it (ENOSPC) is the replica's error reply, logged with the file,
        offset and errno; no file is left, the data set is untouched, and the next sync works."""
        k = self.start("everysec")
        c = k.conn()
        for i in range(100):
            c.call("SET", f"k{i}", "v" * 100)
        self.assertEqual(c.call("CONFIG", "SET", "repl-diskless-sync", "no"), b"OK")
        data = os.path.join(self.work, "data")

        def sync():
            s = socket.create_connection(("127.0.0.1", k.port), timeout=30)
            try:
                s.sendall(b"SYNC\r\n")
                f = s.makefile("rb")
                line = f.readline()
                while line == b"\n":  # keepalives
                    line = f.readline()
                return line, (f.read(int(line[1:])) if line.startswith(b"$") else b"")
            finally:
                s.close()

        self.inject("pwrite", 28)  # ENOSPC
        line, _ = sync()
        self.heal()
        self.assertTrue(line.startswith(b"-"), line)
        self.assertIn(b"No space left on device", line)
        self.assertRegex(k.log_text(), r"temp-sync-\d+\.rdb\.tmp at offset \d+: No space left on device \(errno 28\)")
        self.assertEqual([n for n in os.listdir(data) if n.startswith("temp-sync-")], [])
        self.assertEqual(c.call("GET", "k7"), b"v" * 100)
        line, rdb = sync()
        self.assertTrue(line.startswith(b"$"), line)
        self.assertTrue(rdb.startswith(b"REDIS"), rdb[:10])
        self.assertEqual([n for n in os.listdir(data) if n.startswith("temp-sync-")], [])
        c.close()

    def test_failed_function_save_is_not_acknowledged(self):
        """FUNCTION LOAD answers OK only once functions.rdb is durable: a failed write or fdatasync
        of it is an error reply, the library is not loaded, and a restart finds only the libraries
        that were acknowledged."""
        k = self.start("everysec")
        c = k.conn()
        lib = "#!lua name={}\nredis.register_function('{}', function() return '{}' end)"
        self.assertEqual(c.call("FUNCTION", "LOAD", lib.format("kept", "f1", "one")), b"kept")
        for op, errno, text in (("pwrite", 28, "No space left on device"), ("fdatasync", 5, "Input/output error")):
            self.inject(op, errno)
            with self.assertRaises(resp.ReplyError) as e:
                c.call("FUNCTION", "LOAD", lib.format("lost", "f2", "two"))
            self.assertIn("Error saving the functions", str(e.exception))
            self.assertIn(text, str(e.exception))
            self.heal()
            with self.assertRaises(resp.ReplyError):
                c.call("FCALL", "f2", "0")  # not loaded
            self.assertEqual(c.call("FCALL", "f1", "0"), b"one")
        self.assertRegex(k.log_text(), r"functions: saving .*functions\.rdb: .*write .*functions\.rdb\.tmp at offset 0: "
                                       r"No space left")
        self.assertRegex(k.log_text(), r"fdatasync .*functions\.rdb\.tmp: Input/output error")
        # The store itself was never touched: writes go on.
        self.assertEqual(c.call("SET", "a", "1"), b"OK")
        self.assertEqual(c.call("FUNCTION", "LOAD", lib.format("later", "f3", "three")), b"later")
        c.close()
        k.kill()
        k.env.pop("KEG_FAULT_CONTROL")
        k.start()
        c = k.conn()
        self.assertEqual(c.call("FCALL", "f1", "0"), b"one")
        self.assertEqual(c.call("FCALL", "f3", "0"), b"three")
        with self.assertRaises(resp.ReplyError):
            c.call("FCALL", "f2", "0")
        c.close()


if __name__ == "__main__":
    unittest.main()
