"""Pub/sub against a real keg-server: redis-py's PubSub, raw RESP2/RESP3 bytes compared with
redis-server's, ordering across I/O threads, a subscriber that never reads, ACL channels."""
import os
import selectors
import socket
import subprocess
import sys
import threading
import time
import unittest

import redis

from kegtest import keg, redis as redis_server, resp, rss_kb


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_until(s, marker, seconds=10):
    """What the server sends until `marker` is in it, or it is quiet for `seconds` (always, when
    `marker` is None)."""
    out = b""
    s.settimeout(seconds)
    while marker is None or marker not in out:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            return out
        if not chunk:
            return out
        out += chunk
    return out


def read_for(s, seconds=0.3):
    """Everything the server sends until it is quiet for `seconds`."""
    return read_until(s, None, seconds)


def read_each(socks, seconds):
    """Everything the server sends on each of `socks` until all are quiet for `seconds` (one wait
    for all, not one per socket)."""
    out = {sock: b"" for sock in socks}
    with selectors.DefaultSelector() as sel:
        for sock in socks:
            sel.register(sock, selectors.EVENT_READ)
        while sel.get_map():
            ready = sel.select(seconds)
            if not ready:
                break
            for key, _ in ready:
                chunk = key.fileobj.recv(65536)
                if chunk:
                    out[key.fileobj] += chunk
                else:
                    sel.unregister(key.fileobj)
    return tuple(out[sock] for sock in socks)


class PubSubTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = keg("--io-threads", "2")

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def setUp(self):
        self.r = redis.Redis(port=self.server.port, socket_timeout=10)

    def tearDown(self):
        self.r.close()

    def wait_subscribers(self, channel, n):
        deadline = time.time() + 10
        while time.time() < deadline:
            if dict(self.r.pubsub_numsub(channel)).get(channel.encode(), 0) >= n:
                return
            time.sleep(0.01)
        self.fail(f"{channel}: fewer than {n} subscribers")

    def test_redis_py_channels_and_patterns(self):
        p = self.r.pubsub()
        p.subscribe("news", "sport")
        p.psubscribe("n*")
        for _ in range(3):
            self.assertIn(p.get_message(timeout=5)["type"], ("subscribe", "psubscribe"))
        self.assertEqual(self.r.publish("news", "hello"), 2)  # the channel and the pattern
        self.assertEqual(self.r.publish("sport", "goal"), 1)
        self.assertEqual(self.r.publish("nothing", "x"), 1)  # the pattern only
        self.assertEqual(self.r.publish("other", "x"), 0)
        got = [p.get_message(timeout=5) for _ in range(4)]
        self.assertEqual([(m["type"], m["channel"], m["data"]) for m in got],
                         [("message", b"news", b"hello"), ("pmessage", b"news", b"hello"),
                          ("message", b"sport", b"goal"), ("pmessage", b"nothing", b"x")])
        self.assertEqual(got[1]["pattern"], b"n*")
        self.assertEqual(sorted(self.r.pubsub_channels()), [b"news", b"sport"])
        self.assertEqual(self.r.pubsub_channels("n*"), [b"news"])
        self.assertEqual(self.r.pubsub_numpat(), 1)
        self.assertEqual(self.r.pubsub_numsub("news", "nope"), [(b"news", 1), (b"nope", 0)])
        info = self.r.info("stats")
        self.assertEqual((info["pubsub_channels"], info["pubsub_patterns"]), (2, 1))
        p.unsubscribe("news")
        p.punsubscribe()
        self.assertEqual(p.get_message(timeout=5)["type"], "unsubscribe")
        self.assertEqual(p.get_message(timeout=5)["type"], "punsubscribe")
        self.assertEqual(self.r.publish("news", "late"), 0)
        p.close()
        deadline = time.time() + 5
        while self.r.pubsub_channels() and time.time() < deadline:
            time.sleep(0.01)
        self.assertEqual(self.r.pubsub_channels(), [])  # a closed connection leaves its channels

    def test_client_list_kill_and_reset(self):
        s = connect(self.server.port)
        s.sendall(resp("SUBSCRIBE", "a", "b") + resp("PSUBSCRIBE", "x*") + resp("SSUBSCRIBE", "sh"))
        read_for(s)
        listing = self.r.client_list(_type="pubsub")
        self.assertEqual(len(listing), 1)
        self.assertEqual((listing[0]["sub"], listing[0]["psub"], listing[0]["ssub"]), ("2", "1", "1"))
        self.assertIn("P", listing[0]["flags"])
        normal = {c["id"] for c in self.r.client_list(_type="normal")}
        self.assertNotIn(listing[0]["id"], normal)
        self.assertIn(str(self.r.client_id()), normal)
        # RESET leaves every subscription: the connection is normal again.
        s.sendall(resp("RESET"))
        self.assertEqual(read_for(s), b"+RESET\r\n")
        self.assertEqual(self.r.publish("a", "m"), 0)
        self.assertEqual(self.r.client_list(_type="pubsub"), [])
        s.sendall(resp("SUBSCRIBE", "a"))
        read_for(s)
        self.assertEqual(self.r.execute_command("CLIENT", "KILL", "TYPE", "pubsub"), 1)
        self.assertEqual(read_for(s, 2), b"")  # closed
        s.close()

    def test_bytes_match_redis(self):
        """The same raw RESP2 and RESP3 conversations with keg and with redis-server, byte for
        byte: confirmations, messages, the subscribed context's refusals, PING, counts, nil."""
        script = [
            [resp("SUBSCRIBE", "c1", "c2", "c1")],
            [resp("PSUBSCRIBE", "c*", "c*")],
            [resp("GET", "k"), resp("PING"), resp("PING", "hi"), resp("CLIENT", "ID")],
            ["publish c1 m1", "publish c2 m2", "spublish s1 shard-only"],
            [resp("SSUBSCRIBE", "s1")],
            ["spublish s1 sm"],
            [resp("UNSUBSCRIBE")],
            [resp("UNSUBSCRIBE")],
            [resp("PUNSUBSCRIBE", "nope", "c*")],
            [resp("SUNSUBSCRIBE")],
            [resp("PUNSUBSCRIBE")],
            [resp("PING"), resp("GET", "k")],
            [resp("HELLO", "3")],
            [resp("SUBSCRIBE", "c3")],
            [resp("GET", "k"), resp("PING")],
            ["publish c3 m3"],
            [resp("CLIENT", "REPLY", "OFF")],
            ["publish c3 muted-but-pushed"],
            [resp("UNSUBSCRIBE", "c3")],
            [resp("PUNSUBSCRIBE")],
        ]

        def run(port):
            sub = connect(port)
            pub = redis.Redis(port=port, socket_timeout=10)
            out = []
            for step in script:
                if isinstance(step[0], str):
                    for cmd in step:
                        verb, channel, msg = cmd.split(" ")
                        pub.execute_command(verb.upper(), channel, msg)
                else:
                    sub.sendall(b"".join(step))
                out.append(read_for(sub, 0.2))
            sub.close()
            pub.close()
            return out

        def replies(data):
            """The (un)subscribe confirmations of one step, in a stable order: UNSUBSCRIBE without
            arguments leaves channels in the order of Redis's hash table, which is seeded at random."""
            parts = [b"*" + p for p in data.split(b"*")[1:]] if data.startswith(b"*") else [data]
            counts = [p.rsplit(b":", 1)[1] for p in parts]  # in order: one fewer each time
            return sorted(p.rsplit(b":", 1)[0] for p in parts), counts

        with redis_server() as ref:
            expected = run(ref.port)
        got = run(self.server.port)
        # HELLO's reply names the server: compare its shape only.
        hello = next(i for i, s in enumerate(script) if s[0] == resp("HELLO", "3"))
        self.assertTrue(got[hello].startswith(b"%7\r\n"))
        got[hello] = expected[hello] = b""
        for i, (g, e) in enumerate(zip(got, expected)):
            if script[i] == [resp("UNSUBSCRIBE")]:
                g, e = replies(g), replies(e)
            self.assertEqual(g, e, f"step {i}: {script[i]}")

    def test_publish_in_multi_and_script(self):
        p = self.r.pubsub()
        p.subscribe("events")
        p.get_message(timeout=5)
        pipe = self.r.pipeline(transaction=True)
        pipe.set("k", "1")
        pipe.publish("events", "from-multi")
        pipe.incr("k")
        self.assertEqual(pipe.execute(), [True, 1, 2])
        self.assertEqual(self.r.eval("return redis.call('publish', KEYS[1], ARGV[1])", 1, "events", "from-lua"), 1)
        got = [p.get_message(timeout=5)["data"] for _ in range(2)]
        self.assertEqual(got, [b"from-multi", b"from-lua"])
        p.close()

    def test_order_per_publisher_across_threads(self):
        """Publishers and subscribers spread over the I/O threads: every subscriber gets every
        message, and each publisher's in the order it published them."""
        publishers, per_publisher, subscribers = 4, 2000, 6
        subs = []
        for i in range(subscribers):
            s = connect(self.server.port)
            s.sendall(resp("SUBSCRIBE", "order") if i % 2 == 0 else resp("PSUBSCRIBE", "ord*"))
            subs.append(s)
        # Each subscriber's confirmation, before anything is published. (PUBSUB NUMPAT counts
        # patterns, not their subscribers: waiting for it to reach 1 let a loaded run publish
        # before the last PSUBSCRIBE took effect, and that subscriber missed 300 messages.)
        for s in subs:
            s.settimeout(10)
            got = b""
            while b"subscribe\r\n" not in got:
                chunk = s.recv(4096)
                self.assertTrue(chunk, "closed before its subscription was confirmed")
                got += chunk

        def publish(n):
            c = redis.Redis(port=self.server.port, socket_timeout=10)
            pipe = c.pipeline(transaction=False)
            for j in range(per_publisher):
                pipe.publish("order", f"{n}:{j}")
                if j % 100 == 99:
                    pipe.execute()
            pipe.execute()
            c.close()

        threads = [threading.Thread(target=publish, args=(n,)) for n in range(publishers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for i, s in enumerate(subs):
            data = b""
            want = publishers * per_publisher
            deadline = time.time() + 30
            while data.count(b"message\r\n") < want and time.time() < deadline:  # message and pmessage
                s.settimeout(1)
                try:
                    chunk = s.recv(1 << 20)
                except socket.timeout:
                    continue
                data += chunk
            s.close()
            bodies = [line for line in data.split(b"\r\n") if b":" in line and not line.startswith((b":", b"$", b"*"))]
            self.assertEqual(len(bodies), want, f"subscriber {i}")
            last = [-1] * publishers
            for b in bodies:
                n, j = map(int, b.split(b":"))
                self.assertEqual(j, last[n] + 1, f"subscriber {i}, publisher {n}")
                last[n] = j

    def test_acl_channels(self):
        self.r.execute_command("ACL", "SETUSER", "limited", "on", ">pw", "+@all", "~*", "resetchannels",
                               "&feed:*")
        try:
            u = redis.Redis(port=self.server.port, username="limited", password="pw", socket_timeout=10)
            self.assertEqual(u.publish("feed:1", "x"), 0)
            with self.assertRaises(redis.exceptions.NoPermissionError) as e:
                u.publish("other", "x")
            self.assertIn("no permissions to access one of the channels", str(e.exception))
            with self.assertRaises(redis.exceptions.NoPermissionError):
                u.execute_command("PSUBSCRIBE", "feed:1*")  # a pattern must be one of the user's
            u.close()
        finally:
            self.r.acl_deluser("limited")


class KeyspaceEventsTest(unittest.TestCase):
    """notify-keyspace-events: the same commands against keg and redis-server, with every class on,
    give the same events in the same order."""

    COMMANDS = [
        ["SET", "a", "1"], ["SET", "a", "2", "EX", "100"], ["SET", "a", "3", "KEEPTTL"], ["SETNX", "a", "x"],
        ["SETNX", "b", "1"], ["GETSET", "b", "2"], ["APPEND", "c", "x"], ["INCR", "n"], ["INCRBY", "n", "5"],
        ["DECR", "n"], ["DECRBY", "n", "2"], ["INCRBYFLOAT", "f", "1.5"], ["SETRANGE", "c", "3", "yy"],
        ["SETRANGE", "nokey", "0", ""], ["MSET", "m1", "1", "m2", "2"], ["MSETNX", "m1", "1", "m3", "3"],
        ["MSETNX", "m4", "4", "m5", "5"], ["SETEX", "e", "100", "v"], ["PSETEX", "e2", "100000", "v"],
        ["GETEX", "a", "PERSIST"], ["GETEX", "a", "EX", "100"], ["GETEX", "a"], ["GETDEL", "b"], ["GETDEL", "b"],
        ["EXPIRE", "c", "100"], ["EXPIRE", "c", "100", "NX"], ["PERSIST", "c"], ["PERSIST", "c"],
        ["PEXPIRE", "m5", "0"], ["EXPIRE", "nosuch", "10"], ["RENAME", "a", "a2"], ["RENAMENX", "a2", "m1"],
        ["RENAME", "m4", "m4"], ["COPY", "m1", "m6"], ["COPY", "m1", "m6"], ["DEL", "m1", "m2", "nosuch"],
        ["UNLINK", "m3"], ["SETBIT", "bits", "7", "1"], ["SETBIT", "bits", "7", "1"],
        ["BITFIELD", "bf", "SET", "u8", "0", "255"], ["BITFIELD", "bf", "GET", "u8", "0"],
        ["BITOP", "OR", "dest", "bits", "bf"], ["BITOP", "AND", "dest", "nosuch1", "nosuch2"],
        ["GET", "missing"], ["MGET", "n", "missing2"], ["EXISTS", "missing3"],
        ["RPUSH", "l", "a", "b", "c"], ["LPUSH", "l", "z"], ["LPUSHX", "nol", "x"], ["RPUSHX", "l", "y"],
        ["LPOP", "l"], ["RPOP", "l", "1"], ["LSET", "l", "0", "q"], ["LINSERT", "l", "BEFORE", "q", "p"],
        ["LREM", "l", "1", "p"], ["LTRIM", "l", "0", "1"], ["LMOVE", "l", "l2", "LEFT", "RIGHT"],
        ["RPOPLPUSH", "l2", "l3"], ["LMPOP", "2", "nol", "l3", "LEFT"], ["BLPOP", "l", "0.01"],
        ["BLPOP", "nol", "0.01"], ["RPUSH", "l4", "x"], ["BLMOVE", "l4", "l5", "LEFT", "LEFT", "0"],
        ["HSET", "h", "f", "1"], ["HSET", "h", "g", "2"], ["HSETNX", "h2", "f", "1"], ["HINCRBY", "h3", "f", "2"],
        ["HINCRBYFLOAT", "h4", "f", "1.5"], ["HDEL", "h", "f", "g"], ["SADD", "s", "a", "b"], ["SADD", "s", "a"],
        ["SREM", "s", "a", "b"], ["SADD", "s2", "x"], ["SMOVE", "s2", "s3", "x"],
        ["SUNIONSTORE", "s4", "s3"], ["SINTERSTORE", "s5", "s3", "s4"], ["SDIFFSTORE", "s6", "s3", "nosuch"],
        ["SINTERSTORE", "s7", "s3", "nosuch"], ["SPOP", "s6"],
        ["ZADD", "z", "1", "a", "2", "b", "3", "c"], ["ZADD", "z", "1", "a"], ["ZINCRBY", "z", "1", "a"],
        ["ZREM", "z", "a"], ["ZADD", "z", "5", "d"], ["ZPOPMIN", "z"], ["ZPOPMAX", "z", "1"],
        ["ZADD", "z2", "1", "x", "2", "y"], ["ZREMRANGEBYSCORE", "z2", "1", "1"], ["ZREMRANGEBYRANK", "z2", "0", "0"],
        ["ZADD", "z3", "0", "a", "0", "b"], ["ZREMRANGEBYLEX", "z3", "[a", "[a"], ["ZUNIONSTORE", "z4", "2", "z", "z3"],
        ["ZINTERSTORE", "z5", "2", "z", "z3"], ["ZRANGESTORE", "z6", "z4", "0", "-1"], ["ZDIFFSTORE", "z7", "1", "z4"],
        ["ZMPOP", "1", "z7", "MIN"], ["ZUNIONSTORE", "z8", "2", "z", "nosuch"], ["ZRANGESTORE", "z9", "nosuch", "0", "-1"],
        ["SORT", "nosuch", "STORE", "sorted2"], ["ZRANGE", "nosuch", "0", "-1"], ["SORT_RO", "nosuch"], ["BZPOPMIN", "z6", "0.01"], ["SORT", "z4", "ALPHA", "STORE", "sorted"],
        ["MULTI"], ["SET", "t1", "x"], ["INCR", "t2"], ["EXEC"],
        ["EVAL", "redis.call('set', KEYS[1], 'v'); redis.call('del', KEYS[1]); return 1", "1", "lua1"],
    ]

    @staticmethod
    def drain(p):
        """(channel, data) of every message until none comes for a second."""
        got = []
        while True:
            m = p.get_message(timeout=1)
            if m is None:
                return got
            got.append((m["channel"], m["data"]))

    def events(self, server):
        r = redis.Redis(port=server.port, socket_timeout=10)
        r.config_set("notify-keyspace-events", "KEAnm")
        p = r.pubsub()
        p.psubscribe("__key*__:*")
        p.get_message(timeout=5)
        c = redis.Redis(port=server.port, socket_timeout=10)
        dump = None
        for cmd in self.COMMANDS:
            try:
                c.execute_command(*cmd)
            except redis.exceptions.ResponseError:
                pass
        dump = c.dump("e")
        c.restore("restored", 0, dump)
        c.restore("restored", 0, dump, replace=True)
        # expired: by the active cycle, and found by a read with the cycle off.
        c.psetex("short", 30, "v")
        time.sleep(2.5)  # no read: the expire cycle drops it (keg's within a second of its time)
        c.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", "0")
        c.psetex("lazy", 30, "v")
        time.sleep(0.2)
        c.get("lazy")
        c.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", "1")
        got = self.drain(p)
        p.close()
        c.close()
        r.close()
        return got

    def test_events_match_redis(self):
        with redis_server("--enable-debug-command", "yes") as ref:
            expected = self.events(ref)
        with keg("--enable-debug-command", "yes") as server:
            got = self.events(server)
        self.assertGreater(len(expected), 80)
        # One known difference: a read that finds a key expired. Redis deletes it in the read and
        # sends `expired` before the read's `keymiss`; keg's reader leaves the delete to the writer
        # (readers never write), whose `expired` comes just after. The same events, otherwise.
        lazy = [i for i, (ch, _) in enumerate(expected) if ch == b"__keyspace@0__:lazy"][1]  # after `set`
        self.assertEqual(sorted(got[lazy + 1:]), sorted(expected[lazy + 1:]))
        got, expected = got[:lazy + 1], expected[:lazy + 1]
        for i, (g, e) in enumerate(zip(got, expected)):
            self.assertEqual(g, e, f"event {i}; keg {got[max(0, i - 3):i + 3]} redis {expected[max(0, i - 3):i + 3]}")
        self.assertEqual(len(got), len(expected))

    # Writes to keys whose TTL has just ended, the expire cycle off: each list is run after the
    # setup (key(s) with a 20 ms TTL, then 60 ms), its events compared one command at a time.
    OVER_EXPIRED = [
        [["SET", "k", "v2"]], [["PSETEX", "k", "100000", "v"]], [["INCR", "k"]], [["APPEND", "k", "x"]],
        [["SET", "k", "v", "NX"]], [["SET", "k", "v", "XX"]], [["SETRANGE", "k", "2", "x"]], [["GETDEL", "k"]],
        [["GETEX", "k", "EX", "100"]], [["HSET", "k", "f", "v"]], [["LPUSH", "k", "x"]], [["SADD", "k", "m"]],
        [["ZADD", "k", "1", "m"]], [["DEL", "k"]], [["EXPIRE", "k", "100"]], [["PERSIST", "k"]],
        [["RENAME", "k", "k2"]], [["RENAME", "src", "k"]], [["COPY", "src", "k"]], [["MSET", "k", "1", "x", "2"]],
        [["INCR", "k"], ["INCR", "k"]], [["EXPIRE", "k", "100"], ["SET", "k", "v"]],
        [["MULTI"], ["SET", "k", "1"], ["INCR", "k"], ["EXEC"]],
        [["EVAL", "redis.call('incr', KEYS[1]); return redis.call('get', KEYS[1])", "1", "k"]],
    ]

    def over_expired_events(self, server):
        r = redis.Redis(port=server.port, socket_timeout=10)
        r.config_set("notify-keyspace-events", "KEA")
        c = redis.Redis(port=server.port, socket_timeout=10)
        c.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", "0")
        p = r.pubsub()
        p.psubscribe("__keyevent@0__:*")
        p.get_message(timeout=5)
        runs = []
        for cmds in self.OVER_EXPIRED:
            c.delete("k", "k2", "x")
            c.set("src", "s")
            c.set("k", "old", px=20)
            time.sleep(0.06)
            self.drain_now(p)
            got = []
            for cmd in cmds:
                try:
                    c.execute_command(*cmd)
                except redis.exceptions.ResponseError:
                    pass
                time.sleep(0.25)  # a drop the command leaves to the writer comes within 100 ms
                got.append([(ch.split(b":", 1)[1], key) for ch, key in self.drain_now(p)])
            runs.append(got)
        c.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", "1")
        p.close()
        c.close()
        r.close()
        return runs

    @staticmethod
    def drain_now(p):
        got = []
        while (m := p.get_message(timeout=0.05)) is not None:
            got.append((m["channel"], m["data"]))
        return got

    def test_writes_over_keys_just_expired_send_expired_first_as_redis(self):
        """A write that finds its key expired before the expire cycle dropped it: Redis deletes the
        key in the write's lookup and sends `expired` before the write's own events (keg sent
        none when the write replaced the key, before 2026-12-07)."""
        with redis_server("--enable-debug-command", "yes") as ref:
            expected = self.over_expired_events(ref)
        with keg("--enable-debug-command", "yes") as server:
            got = self.over_expired_events(server)
        self.assertIn([(b"expired", b"k"), (b"set", b"k")], expected[0])  # the reference does it
        for cmds, g, e in zip(self.OVER_EXPIRED, got, expected):
            self.assertEqual(g, e, cmds)

    def script_between_writes_events(self, server):
        """The events and messages of SET, EVAL (a PUBLISH and a SET), SET: pipelined, then in
        MULTI / EXEC."""
        r = redis.Redis(port=server.port, socket_timeout=10)
        r.config_set("notify-keyspace-events", "KEA")
        p = r.pubsub()
        p.psubscribe("__keyevent@0__:*")
        p.subscribe("ch")
        p.get_message(timeout=5)
        p.get_message(timeout=5)
        script = "redis.call('publish', 'ch', KEYS[1]) return redis.call('set', KEYS[1], 'v')"
        for transaction, keys in ((False, "abc"), (True, "def")):
            pipe = r.pipeline(transaction=transaction)
            pipe.set(keys[0], "1").eval(script, 1, keys[1]).set(keys[2], "3")
            pipe.execute()
        got = self.drain(p)
        p.close()
        r.close()
        return got

    def test_a_scripts_events_and_messages_come_in_the_order_of_its_clients_commands(self):
        """Pipelined or inside EXEC, a script's keyspace events and PUBLISHed messages come after
        the events of the commands sent before it, as Redis sends each command's as it runs. keg
        sent a script's as it ran on the writer, the others' once the group was durable: the
        script's came first."""
        with redis_server() as ref:
            expected = self.script_between_writes_events(ref)
        with keg() as server:
            got = self.script_between_writes_events(server)
        self.assertEqual([key for _, key in expected], [b"a", b"b", b"b", b"c", b"d", b"e", b"e", b"f"])
        self.assertEqual(got, expected)

    def served_events(self, server):
        """Events of pops that serve blocked clients: BLPOP and BLMOVE waiting, then a push."""
        r = redis.Redis(port=server.port, socket_timeout=10)
        r.config_set("notify-keyspace-events", "KEA")
        p = r.pubsub()
        p.psubscribe("__keyspace@0__:*")
        p.get_message(timeout=5)
        for block, push in ((("BLPOP", "a", "0"), ("RPUSH", "a", "x")),
                            (("BLMOVE", "s", "d", "RIGHT", "LEFT", "0"), ("RPUSH", "s", "y", "z"))):
            waiter = redis.Redis(port=server.port, socket_timeout=10)
            t = threading.Thread(target=waiter.execute_command, args=block)
            t.start()
            for _ in range(200):  # until it waits
                if r.info("clients")["blocked_clients"] == 1:
                    break
                time.sleep(0.01)
            r.execute_command(*push)
            t.join(10)
            waiter.close()
        got = self.drain(p)
        p.close()
        r.close()
        return got

    def test_events_of_served_blocked_pops_match_redis(self):
        with redis_server() as ref:
            expected = self.served_events(ref)
        with keg() as server:
            got = self.served_events(server)
        self.assertEqual(len(expected), 6)  # rpush lpop del, rpush lpush rpop
        self.assertEqual(got, expected)

    def test_config_letters(self):
        with keg() as server:
            r = redis.Redis(port=server.port, socket_timeout=10)
            for given, shown in [("gKE", "gKE"), ("$lshzxeKE", "$lshzxeKE"), ("KA", "AK"), ("EA", "AE"),
                                 ("AKEmn", "AKEm"), ("gn", "gn"), ("", "")]:  # A hides n, as in Redis
                r.config_set("notify-keyspace-events", given)
                self.assertEqual(r.config_get("notify-keyspace-events")["notify-keyspace-events"], shown)
            with self.assertRaises(redis.exceptions.ResponseError) as e:
                r.config_set("notify-keyspace-events", "KEq")
            self.assertIn("Invalid event class character. Use 'Ag$lshzxeKEtmdn'.", str(e.exception))
            r.close()


class TrackingTest(unittest.TestCase):
    """CLIENT TRACKING: the same conversations with keg and redis-server give the same bytes —
    default mode, OPTIN, BCAST with prefixes and NOLOOP, redirection to a RESP2 subscriber of
    __redis__:invalidate, FLUSHALL's null, expiry, TRACKINGINFO."""

    def conversation(self, port):
        tracker = connect(port)
        redir = connect(port)
        writer = redis.Redis(port=port, socket_timeout=10)
        redir.sendall(resp("CLIENT", "ID"))
        redir_id = read_for(redir).split(b"\r\n")[0][1:]
        redir.sendall(resp("SUBSCRIBE", "__redis__:invalidate"))
        out = [read_for(redir)]
        steps = [
            (tracker, [resp("HELLO", "3")]),
            (tracker, [resp("CLIENT", "TRACKING", "on")]),
            # Refusals, with Redis's texts.
            (tracker, [resp("CLIENT", "TRACKING", "on", "BCAST"), resp("CLIENT", "TRACKING", "on", "OPTIN", "OPTOUT"),
                       resp("CLIENT", "TRACKING", "on", "PREFIX", "x"), resp("CLIENT", "CACHING", "yes"),
                       resp("CLIENT", "CACHING", "maybe"), resp("CLIENT", "TRACKING", "maybe"),
                       resp("CLIENT", "TRACKING", "on", "NOSUCHOPTION"),
                       resp("CLIENT", "TRACKING", "on", "REDIRECT", "notanumber"),
                       resp("PUBSUB", "NUMPAT", "extra"), resp("PUBSUB", "NOSUCH"),
                       resp("MULTI"), resp("SSUBSCRIBE", "s"), resp("EXEC")]),
            (tracker, [resp("GET", "a"), resp("MGET", "b", "c")]),
            ("write", ["SET", "a", "1"]), ("write", ["SET", "c", "1"]), ("write", ["SET", "a", "2"]),
            (tracker, [resp("GET", "a"), resp("SET", "a", "self")]),  # its own write: after the reply
            (tracker, [resp("CLIENT", "TRACKING", "off"), resp("CLIENT", "TRACKING", "on", "OPTIN")]),
            (tracker, [resp("GET", "x"), resp("CLIENT", "CACHING", "yes"), resp("GET", "y")]),
            ("write", ["MSET", "x", "1", "y", "1"]),
            (tracker, [resp("CLIENT", "TRACKINGINFO")]),
            (tracker, [resp("CLIENT", "TRACKING", "off"), resp("CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "p:",
                                                               "PREFIX", "q:", "NOLOOP")]),
            ("write", ["MSET", "p:1", "1", "p:2", "2", "q:1", "1", "r:1", "1"]),
            (tracker, [resp("SET", "p:3", "mine")]),  # NOLOOP: not told of its own write
            (tracker, [resp("CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "p")]),  # overlaps p:
            (tracker, [resp("CLIENT", "TRACKING", "off"), resp("HELLO", "2")]),
            (tracker, [resp("CLIENT", "TRACKING", "on", "REDIRECT", redir_id)]),
            (tracker, [resp("GET", "k1"), resp("GET", "k2")]),
            ("write", ["SET", "k1", "1"]),
            ("write", ["PSETEX", "k2", "50", "1"]),
            ("sleep", 2.0),  # k2 expires: its invalidation comes from the expire cycle
            (tracker, [resp("GET", "k3")]),
            ("write", ["FLUSHALL"]),
            (tracker, [resp("CLIENT", "TRACKING", "on", "REDIRECT", "999999")]),
        ]
        for who, what in steps:
            if who == "write":
                writer.execute_command(*what)
            elif who == "sleep":
                time.sleep(what)
            else:
                who.sendall(b"".join(what))
            out.append(read_each((tracker, redir), 0.2))
        tracker.close()
        redir.close()
        writer.close()
        return out, [i + 1 for i, (_, what) in enumerate(steps) if isinstance(what, list) and
                     any(isinstance(w, bytes) and b"HELLO" in w for w in what)]

    def test_matches_redis(self):
        with redis_server() as ref:
            expected, hellos = self.conversation(ref.port)
        with keg() as server:
            got, _ = self.conversation(server.port)
        self.assertEqual(len(got), len(expected))
        for i, (g, e) in enumerate(zip(got, expected)):
            if i in hellos:  # HELLO names the server and the connection's id
                self.assertEqual(g[0][:3], e[0][:3], f"step {i}")
                continue
            self.assertEqual(g, e, f"step {i}")


    def remembered_conversation(self, port):
        """One RESP3 tracking client: each step's bytes (replies and pushes) up to a PING's reply."""
        s = connect(port)
        steps = [
            [("HELLO", "3")], [("CLIENT", "TRACKING", "on")],
            # PFCOUNT reads (Redis's CMD_READONLY) though it may write its cache: remembered after
            # that write, so the first count does not invalidate what it read.
            [("PFADD", "h", "a")], [("PFCOUNT", "h")], [("PFADD", "h", "b")], [("PFCOUNT", "h", "h2")],
            [("PFADD", "h2", "x")],
            # SORT_RO and PFCOUNT inside a transaction; a read after a write that fails (WRONGTYPE).
            [("RPUSH", "l", "1")], [("MULTI",), ("SORT_RO", "s"), ("PFCOUNT", "c"), ("GETDEL", "l"), ("GET", "k"),
                                    ("EXEC",)],
            [("SADD", "s", "1")], [("PFADD", "c", "1")], [("SET", "k", "1")],
            # A blocking pop that pops at once: its own invalidation after its reply.
            [("LRANGE", "l", "0", "-1")], [("BLPOP", "l", "1")],
            [("ZADD", "z", "1", "m")], [("ZRANGE", "z", "0", "-1")], [("BZPOPMIN", "z", "1")],
            # Reads placed among a transaction's records: after a SWAPDB (a record never reported),
            # and before an LTRIM that keeps its list (reported, no record).
            [("MULTI",), ("SWAPDB", "1", "0"), ("BITPOS", "k2", "1"), ("SETBIT", "k2", "126", "0"), ("EXEC",)],
            [("RPUSH", "l2", "1", "2")],
            [("MULTI",), ("SET", "x", "1"), ("LRANGE", "l2", "0", "-1"), ("LTRIM", "l2", "0", "-1"), ("EXEC",)],
        ]
        out = []
        for step in steps:
            s.sendall(b"".join(resp(*c) for c in step) + resp("PING", "sync-mark"))
            out.append(read_until(s, b"sync-mark\r\n"))
        s.close()
        return out

    def test_reads_are_remembered_and_own_invalidations_follow_replies_as_redis(self):
        # Each part differed on 5b5eb78 (checked one by one): PFCOUNT, and SORT_RO and PFCOUNT in
        # MULTI were not remembered, a read in MULTI after a failed write was skipped with it, a
        # blocking pop served at once had its invalidation before its reply, a read placed after
        # a SWAPDB record was remembered one record late (after the write that invalidates it).
        with redis_server() as ref:
            expected = self.remembered_conversation(ref.port)
        with keg() as server:
            got = self.remembered_conversation(server.port)
        self.assertIn(b"invalidate", b"".join(expected))
        self.assertEqual(len(got), len(expected))
        for i, (g, e) in enumerate(zip(got, expected)):
            if i == 0:  # HELLO names the server and the connection's id
                continue
            self.assertEqual(g, e, f"step {i}")

    # A script that writes its key, then runs for 300 ms (on keg's writer thread under `always`).
    SLOW_WRITE = ("redis.call('set', KEYS[1], 'x') local t = redis.call('time') "
                  "local start = t[1] * 1000000 + t[2] "
                  "while true do t = redis.call('time') "
                  "if t[1] * 1000000 + t[2] - start > 300000 then break end end return 1")

    def suspended_conversation(self, port):
        tracker = connect(port)
        writer = connect(port)
        tracker.sendall(resp("HELLO", "3") + resp("CLIENT", "TRACKING", "on"))
        read_for(tracker)
        tracker.sendall(resp("GET", "k"))
        first = read_for(tracker)
        writer.sendall(resp("EVAL", self.SLOW_WRITE, "1", "k"))
        time.sleep(0.1)  # the script runs
        # DBSIZE waits for the script (in keg: queued behind it on the writer). The invalidation of
        # the script's write must come, and before DBSIZE's reply, as Redis sends it.
        tracker.sendall(resp("DBSIZE"))
        second = read_for(tracker, 1.0)
        self.assertEqual(read_for(writer, 1.0), b":1\r\n")
        tracker.close()
        writer.close()
        return first, second

    def limit_conversation(self, port):
        """tracking-table-max-keys lowered while a tracking client is idle: nothing happens while
        DEBUG PAUSE-CRON holds the cron; once unpaused, the cron alone (no command from the
        tracking client) evicts a key and sends its invalidation."""
        tracker = connect(port)
        admin = redis.Redis(port=port, socket_timeout=10)
        tracker.sendall(resp("HELLO", "3") + resp("CLIENT", "TRACKING", "on"))
        read_for(tracker)
        tracker.sendall(resp("MGET", "k1", "k2"))
        read_for(tracker)
        admin.execute_command("DEBUG", "PAUSE-CRON", "1")
        admin.config_set("tracking-table-max-keys", "1")  # this command's own check ran before it
        paused = read_for(tracker, 0.5)  # five cron ticks
        admin.execute_command("DEBUG", "PAUSE-CRON", "0")  # its check evicts one key
        unpaused = read_for(tracker, 0.5)
        admin.config_set("tracking-table-max-keys", "1000000")
        tracker.close()
        admin.close()
        return paused, unpaused

    def test_table_limit_and_pause_cron(self):
        for start in (lambda: redis_server("--enable-debug-command", "yes"),
                      lambda: keg("--enable-debug-command", "yes")):
            with start() as server:
                paused, unpaused = self.limit_conversation(server.port)
            self.assertEqual(paused, b"")
            self.assertRegex(unpaused, rb"^>2\r\n\$10\r\ninvalidate\r\n\*1\r\n\$2\r\nk[12]\r\n$")

    def test_a_redirect_target_that_quit_is_gone_at_once_across_io_threads(self):
        """Redis's "RESP3 based basic tracking-redir-broken with client reply off": the redirect
        target QUITs, its +OK read, then a write from another connection: the tracking client gets
        tracking-redir-broken, as the target is gone once its reply is read. keg's connection left
        the client table only after writing QUIT's reply, so a write on another I/O thread in
        between sent the invalidation to the closing connection and nothing to the tracking one
        (Redis's test hung, under TSan with io-threads 4; here 3 in 300 under CPU load). Two
        busy-looping processes take the CPU the closing thread needs, as that load did."""
        hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
        try:
            with keg("--io-threads", "4") as server:
                writer = connect(server.port)
                missed = 0
                for i in range(600):
                    target, tracker = connect(server.port), connect(server.port)
                    target.sendall(resp("CLIENT", "ID"))
                    target_id = int(read_until(target, b"\r\n")[1:-2])
                    tracker.sendall(resp("HELLO", "3"))
                    read_until(tracker, b"proto")
                    tracker.sendall(resp("CLIENT", "TRACKING", "on", "REDIRECT", str(target_id)) + resp("GET", f"k{i}"))
                    read_until(tracker, b"+OK\r\n_\r\n")
                    target.sendall(resp("QUIT"))
                    read_until(target, b"+OK\r\n")
                    writer.sendall(resp("SET", f"k{i}", "1"))
                    read_until(writer, b"+OK\r\n")
                    if b"tracking-redir-broken" not in read_until(tracker, b"tracking-redir-broken", 0.5):
                        missed += 1
                    target.close()
                    tracker.close()
                writer.close()
            self.assertEqual(missed, 0, f"{missed} of 600 tracking clients got no tracking-redir-broken")
        finally:
            for h in hogs:
                h.kill()
                h.wait()

    def test_invalidation_during_a_suspended_command(self):
        with redis_server() as ref:
            expected = self.suspended_conversation(ref.port)
        with keg("--appendfsync", "always") as server:  # scripts run on the writer thread
            got = self.suspended_conversation(server.port)
        self.assertEqual(expected[1], b">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n:1\r\n")
        self.assertEqual(got, expected)


class ManySubscribersTest(unittest.TestCase):
    def test_ten_thousand_subscribers_on_a_hundred_patterns(self):
        """10,000 connections, each PSUBSCRIBEd to one of 100 patterns: PUBLISH counts and
        delivers to every one of them, across two I/O threads, and the server stays responsive."""
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 30000), hard))
        if min(hard, 30000) < 10200:
            self.fail(f"RLIMIT_NOFILE hard limit {hard} is below what 10,000 connections need")
        with keg("--io-threads", "2", "--maxclients", "10100") as server:
            r = redis.Redis(port=server.port, socket_timeout=30)
            subs = []
            try:
                for j in range(10000):
                    s = socket.create_connection(("127.0.0.1", server.port), timeout=30)
                    s.sendall(resp("PSUBSCRIBE", f"news.{j % 100}.*"))
                    subs.append(s)
                for s in subs:  # every confirmation: the subscriptions are all in place
                    got = b""
                    while not got.endswith(b":1\r\n"):
                        got += s.recv(4096)
                self.assertEqual(r.pubsub_numpat(), 100)
                self.assertEqual(r.info("stats")["pubsub_patterns"], 100)
                self.assertEqual(len(r.client_list(_type="pubsub")), 10000)
                for p in range(100):
                    self.assertEqual(r.publish(f"news.{p}.today", f"m{p}"), 100)
                self.assertEqual(r.publish("sport.1.today", "x"), 0)
                t0 = time.time()
                self.assertTrue(r.ping())
                self.assertLess(time.time() - t0, 2.0)
                for j, s in enumerate(subs):
                    want = b"m%d\r\n" % (j % 100)
                    got = b""
                    while not got.endswith(want):
                        chunk = s.recv(4096)
                        self.assertTrue(chunk, f"subscriber {j} closed")
                        got += chunk
                    self.assertIn(b"pmessage", got)
            finally:
                for s in subs:
                    s.close()
                r.close()


class SlowSubscriberTest(unittest.TestCase):
    def test_subscriber_that_never_reads_is_disconnected(self):
        """1 GB published while one subscriber never reads: it is cut off at the pubsub output
        limit, keg's memory stays bounded, and a subscriber that reads gets every message."""
        with keg() as server:
            r = redis.Redis(port=server.port, socket_timeout=30)
            slow = socket.socket()
            slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            slow.connect(("127.0.0.1", server.port))
            slow.sendall(resp("SUBSCRIBE", "firehose"))
            time.sleep(0.2)
            good = r.pubsub()
            good.subscribe("firehose")
            good.get_message(timeout=5)
            received = [0]
            stop = threading.Event()

            def drain():
                while not stop.is_set():
                    m = good.get_message(timeout=0.5)
                    if m and m["type"] == "message":
                        received[0] += 1

            reader = threading.Thread(target=drain)
            reader.start()
            payload = b"x" * 65536
            sanitized = os.environ.get("KEG_SANITIZE", "") not in ("", "OFF")
            total = (1 << 30) // len(payload) if not sanitized else 2048
            base_rss = rss_kb(server.proc.pid)
            pipe = r.pipeline(transaction=False)
            counts = []
            max_rss = 0
            for i in range(total):
                pipe.publish("firehose", payload)
                if i % 64 == 63:
                    counts += pipe.execute()
                    max_rss = max(max_rss, rss_kb(server.proc.pid))
                    # The reader keeps up (as a live subscriber would): at most 64 messages (4 MB,
                    # below the pubsub class's 8 MB soft limit) behind.
                    while i + 1 - received[0] > 64:
                        time.sleep(0.001)
            counts += pipe.execute()
            deadline = time.time() + 60
            while received[0] < total and time.time() < deadline:
                time.sleep(0.05)
            stop.set()
            reader.join()
            self.assertEqual(received[0], total)
            self.assertEqual(counts[0], 2)
            self.assertEqual(counts[-1], 1)  # the slow one is gone
            self.assertEqual(len(r.client_list(_type="pubsub")), 1)
            # Bounded: far below what was published (the limit is 32 MB per subscriber). Not under a
            # sanitizer: ASan keeps freed memory in quarantine (256 MB) and TSan adds its shadow,
            # so RSS says nothing there; the cut-off itself is checked above in every build.
            if not sanitized:
                self.assertLess(max_rss - base_rss, 96 * 1024, f"RSS grew from {base_rss} to {max_rss} kB")
            slow.close()
            good.close()
            r.close()


if __name__ == "__main__":
    unittest.main()
