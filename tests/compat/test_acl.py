"""ACL users against redis-server 7.0.15: the same commands give the same replies on both servers
(ACL SETUSER / GETUSER / LIST / DRYRUN / DELUSER / WHOAMI / CAT, AUTH, NOPERM errors, the ACL LOG),
redis-py logs in with a username, users come from the config file and survive a restart, and ACL
DELUSER closes the deleted user's connections."""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import redis  # noqa: E402

from kegtest import keg, redis as redis_server  # noqa: E402

SCRIPT = [
    ["ACL", "WHOAMI"],
    ["ACL", "SETUSER", "u1", "on", ">secret", "~k*", "%R~r*", "&ch*", "+get", "-@all", "+set", "+client|id",
     "+select|0", "+@string", "-incr"],
    ["ACL", "GETUSER", "u1"],
    ["ACL", "SETUSER", "u2"],
    ["ACL", "SETUSER", "u3", "on", "nopass", "allkeys", "allchannels", "+@all", "-debug"],
    ["ACL", "SETUSER", "u4", "reset", "on", "#" + "a" * 64, "!" + "a" * 64, ">x", "<x", "resetpass", "nopass"],
    ["ACL", "LIST"],
    ["ACL", "USERS"],
    ["ACL", "GETUSER", "nobody"],
    ["ACL", "SETUSER", "u5", "allkeys", "~x"],
    ["ACL", "SETUSER", "u5", "allchannels", "&x"],
    ["ACL", "SETUSER", "u5", "+nosuchcommand"],
    ["ACL", "SETUSER", "u5", "+@nosuchcategory"],
    ["ACL", "SETUSER", "u5", "bogus"],
    ["ACL", "SETUSER", "u5", "<notapassword"],
    ["ACL", "SETUSER", "u5", "#tooshort"],
    ["ACL", "SETUSER", "u5", "%X~k"],
    ["ACL", "SETUSER", "u5", "+client|id|x"],
    ["ACL", "SETUSER", "bad name"],
    ["ACL", "USERS"],
    ["ACL", "DRYRUN", "u1", "get", "k1"],
    ["ACL", "DRYRUN", "u1", "get", "zz"],
    ["ACL", "DRYRUN", "u1", "set", "r1", "v"],
    ["ACL", "DRYRUN", "u1", "get", "r1"],
    ["ACL", "DRYRUN", "u1", "incr", "k1"],
    ["ACL", "DRYRUN", "u1", "select", "0"],
    ["ACL", "DRYRUN", "u1", "select", "1"],
    ["ACL", "DRYRUN", "u1", "client", "id"],
    ["ACL", "DRYRUN", "u1", "client", "list"],
    ["ACL", "DRYRUN", "u1", "get"],
    ["ACL", "DRYRUN", "u1", "nosuch"],
    ["ACL", "DRYRUN", "nobody", "get", "k"],
    ["ACL", "DRYRUN", "u3", "debug", "object", "k"],
    ["ACL", "CAT"],
    ["ACL", "CAT", "nosuch"],
    ["ACL", "LOG", "notanumber"],
    ["ACL", "LOG", "1", "2"],
    ["ACL", "GENPASS", "x"],
    ["ACL", "GENPASS", "0"],
    ["ACL", "GENPASS", "4097"],
    ["ACL", "DELUSER", "default"],
    ["ACL", "DELUSER", "u2", "u4", "nobody"],
    ["ACL", "USERS"],
    ["ACL", "LOAD"],
    ["ACL", "SAVE"],
    ["ACL", "NOSUCH"],
    ["AUTH", "x"],
    ["COMMAND", "GETKEYSANDFLAGS", "set", "k", "v"],
    ["COMMAND", "GETKEYSANDFLAGS", "set", "k", "v", "GET"],
    ["COMMAND", "GETKEYSANDFLAGS", "rename", "a", "b"],
    ["COMMAND", "GETKEYSANDFLAGS", "bitfield", "k", "GET", "u8", "0"],
    ["COMMAND", "GETKEYSANDFLAGS", "copy", "a", "b"],
]

# As u1 (after AUTH): what a confined user sees.
AS_U1 = [
    ["AUTH", "u1", "wrong"],
    ["AUTH", "u1", "secret"],
    ["ACL", "WHOAMI"],
    ["SET", "k1", "v"],
    ["GET", "k1"],
    ["GET", "x"],
    ["SET", "r1", "v"],
    ["GET", "r1"],
    ["INCR", "k1"],
    ["CLIENT", "GETNAME"],
    ["CLIENT", "LIST"],
    ["MGET", "k1", "x"],
    ["SELECT", "0"],
    ["MULTI"],
    ["GET", "x"],
]


def normalize(reply):
    """Redis lists single-command rules in its hash table's order: compare rule lists as sets."""
    if isinstance(reply, list):
        return [normalize(x) for x in reply]
    if isinstance(reply, bytes) and (b" +" in reply or b" -" in reply):
        return sorted(reply.split(b" "))
    return reply


def replies(client, script):
    out = []
    for cmd in script:
        try:
            out.append(normalize(client.execute_command(*cmd)))
        except redis.ResponseError as e:
            out.append("error: " + str(e))
    return out


class Acl(unittest.TestCase):
    def setUp(self):
        self.keg_server = keg()
        self.redis_server = redis_server()

    def tearDown(self):
        self.keg_server.stop()
        self.redis_server.stop()

    def both(self, **kw):
        # Raw replies: no response callbacks.
        clients = (redis.Redis(port=self.keg_server.port, socket_timeout=10, **kw),
                   redis.Redis(port=self.redis_server.port, socket_timeout=10, **kw))
        for c in clients:
            c.response_callbacks.clear()
        return clients

    def test_same_replies_as_redis(self):
        k, r = self.both()
        got, want = replies(k, SCRIPT), replies(r, SCRIPT)
        for cmd, g, w in zip(SCRIPT, got, want):
            if cmd[:2] == ["ACL", "CAT"] and len(cmd) == 2:
                self.assertEqual(g, w)
                continue
            self.assertEqual(g, w, f"{cmd}")
        ku1, ru1 = self.both()
        got, want = replies(ku1, AS_U1), replies(ru1, AS_U1)
        for cmd, g, w in zip(AS_U1, got, want):
            self.assertEqual(g, w, f"{cmd}")
        # The ACL LOG: the same entries (client-info and age aside), newest first.
        def entries(c):
            return [{kk: v for kk, v in zip(e[::2], e[1::2]) if kk not in (b"client-info", b"age-seconds")}
                    for e in c.execute_command("ACL", "LOG")]
        self.assertEqual(entries(k), entries(r))
        self.assertEqual(k.execute_command("ACL", "LOG", "RESET"), b"OK")
        self.assertEqual(k.execute_command("ACL", "LOG"), [])
        self.assertEqual(len(k.execute_command("ACL", "GENPASS")), 64)
        self.assertEqual(len(k.execute_command("ACL", "GENPASS", "5")), 2)

    def test_commands_a_script_is_denied_are_logged(self):
        """A redis.call that the caller's ACL rules refuse is an ACL LOG entry with context "lua"
        (in a transaction too), as Redis's scriptCall; keg logged none (Redis's unit/acl "ACL can
        log errors in the context of Lua scripting")."""
        seen = []
        for c in self.both():
            c.execute_command("ACL", "SETUSER", "scripter", "on", ">pw", "+@all", "-incr", "~k:*", "resetchannels", "&ch")
            c.execute_command("AUTH", "scripter", "pw")
            for script in ("redis.call('incr', 'k:1')", "redis.call('get', 'other')", "redis.call('publish', 'no', 'x')"):
                with self.assertRaises(redis.ResponseError):
                    c.execute_command("EVAL", script, "0")
            p = c.pipeline(transaction=True)
            p.execute_command("EVAL", "redis.call('incr', 'k:2')", "0")
            p.execute_command("FCALL_RO", "missing", "0")
            try:
                p.execute()
            except redis.ResponseError:
                pass
            c.execute_command("AUTH", "default", "")
            seen.append([{kk: v for kk, v in zip(e[::2], e[1::2]) if kk not in (b"client-info", b"age-seconds")}
                         for e in c.execute_command("ACL", "LOG")])
        self.assertEqual(seen[0], seen[1])
        self.assertEqual([(e[b"reason"], e[b"context"], e[b"object"]) for e in seen[0]],
                         [(b"command", b"lua", b"incr"), (b"channel", b"lua", b"no"), (b"key", b"lua", b"other")])
        self.assertEqual(seen[0][0][b"count"], 2)

    def test_aclfile_load_save_and_their_errors(self):
        """aclfile as Redis 7.0's: loaded at start (a missing or bad file, or user lines beside it,
        stop the start with Redis's words), ACL SAVE writes the users and ACL LOAD brings them
        back, closing the connections of every user but default; a bad file changes nothing, and
        a file that cannot be written is an error."""
        import socket
        import subprocess
        import tempfile
        work = tempfile.mkdtemp(prefix="keg_aclfile_")
        self.addCleanup(__import__("shutil").rmtree, work, True)
        acl = os.path.join(work, "users.acl")
        binary = os.environ.get("KEG_SERVER", "keg-server")

        def start_fails(*extra):
            run = subprocess.run([binary, "--port", "0", "--dir", os.path.join(work, "data"), "--aclfile", acl, *extra],
                                 capture_output=True, text=True, timeout=60, cwd=work)
            return run.returncode, run.stdout + run.stderr
        code, out = start_fails()
        self.assertEqual(code, 1)
        self.assertIn(f"Aborting Redis startup because of ACL errors: Error loading ACLs, opening file '{acl}'", out)
        with open(acl, "w") as f:
            f.write("user alice on >apw ~* &* +@all\n")
        code, out = start_fails("--user", "bob on >bpw")
        self.assertEqual(code, 1)
        self.assertIn("users defined in redis.conf and at the same setting an ACL file path is invalid", out)

        server = keg("--aclfile", acl)
        self.addCleanup(server.stop)
        admin = redis.Redis(port=server.port, socket_timeout=10)
        self.assertEqual(sorted(admin.acl_users()), ["alice", "default"])
        admin.execute_command("ACL", "SETUSER", "eve", "on", ">epw", "+get", "~*")
        self.assertEqual(admin.execute_command("ACL", "SAVE"), b"OK")
        with open(acl) as f:
            self.assertIn("user eve on ", f.read())
        eve = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        self.addCleanup(eve.close)
        eve.sendall(b"AUTH eve epw\r\nGET k\r\n")
        got = b""
        while got.count(b"\r\n") < 2:
            got += eve.recv(100)
        self.assertEqual(got, b"+OK\r\n$-1\r\n")
        # A bad line: nothing changes, and Redis's error names the line.
        with open(acl, "a") as f:
            f.write("user mallory on +nosuchcommand\n")
        with self.assertRaisesRegex(redis.ResponseError, r"users.acl:4: Error in applying operation '\+nosuchcommand'.*"
                                    "no change to the previously active ACL rules was performed"):
            admin.execute_command("ACL", "LOAD")
        self.assertEqual(sorted(admin.acl_users()), ["alice", "default", "eve"])
        eve.sendall(b"GET k\r\n")
        self.assertEqual(eve.recv(100), b"$-1\r\n")  # (its connection stays)
        # A good file: its users replace all, eve's connection is closed, default's is not.
        with open(acl, "w") as f:
            f.write("user alice on >apw ~* &* +@all\n")
        self.assertEqual(admin.execute_command("ACL", "LOAD"), b"OK")
        self.assertEqual(sorted(admin.acl_users()), ["alice", "default"])
        self.assertEqual(eve.recv(100), b"")  # closed
        self.assertTrue(admin.ping())
        # A file that cannot be replaced (a directory with a file in it, even for root): the
        # error, and the reason in the log.
        os.remove(acl)
        os.mkdir(acl)
        open(os.path.join(acl, "x"), "w").close()
        with self.assertRaisesRegex(redis.ResponseError, "There was an error trying to save the ACLs"):
            admin.execute_command("ACL", "SAVE")
        with open(os.path.join(server.dir, "server.log")) as f:
            self.assertIn("ACL SAVE: ", f.read())

    def test_redis_py_logs_in_with_a_username(self):
        k = redis.Redis(port=self.keg_server.port, socket_timeout=10)
        k.acl_setuser("app", enabled=True, passwords=["+apppw"], keys=["app:*"], commands=["+@all"])
        app = redis.Redis(port=self.keg_server.port, username="app", password="apppw", socket_timeout=10)
        self.assertEqual(app.acl_whoami(), "app")
        app.set("app:1", "x")
        self.assertEqual(app.get("app:1"), b"x")
        with self.assertRaises(redis.exceptions.NoPermissionError):
            app.get("other")
        with self.assertRaisesRegex(redis.exceptions.RedisError, "WRONGPASS"):
            redis.Redis(port=self.keg_server.port, username="app", password="wrong", socket_timeout=10).ping()
        self.assertEqual(k.acl_getuser("app")["keys"], ["~app:*"])

    def test_users_from_the_config_file_and_deluser_closes_connections(self):
        # A "user default" line starts from `reset`, as Redis's ACLLoadConfiguredUsers: here
        # "default on >dpw" alone would leave default without a command (keg kept its +@all).
        bare = keg("--user", "default on >dpw")
        try:
            with self.assertRaisesRegex(redis.exceptions.NoPermissionError, "no permissions to run the 'ping'"):
                redis.Redis(port=bare.port, password="dpw", socket_timeout=10).ping()
        finally:
            bare.stop()
        server = keg("--user", "alice on >apw ~* &* +@all", "--user", "default on >dpw ~* &* +@all")
        try:
            with self.assertRaisesRegex(redis.exceptions.RedisError, "NOAUTH|Authentication required"):
                redis.Redis(port=server.port, socket_timeout=10).ping()
            admin = redis.Redis(port=server.port, password="dpw", socket_timeout=10)
            alice = redis.Redis(port=server.port, username="alice", password="apw", socket_timeout=10,
                                retry_on_timeout=False)
            self.assertTrue(alice.ping())
            self.assertIn("user=alice", admin.execute_command("CLIENT", "LIST").decode())
            with self.assertRaisesRegex(redis.ResponseError, "No such user 'nobody'"):
                admin.execute_command("CLIENT", "KILL", "USER", "nobody")
            self.assertEqual(admin.acl_deluser("alice"), 1)
            # The connection is closed; redis-py reconnects and its AUTH as alice is refused.
            with self.assertRaisesRegex(redis.exceptions.RedisError, "WRONGPASS|closed"):
                alice.ping()
        finally:
            server.stop()

    def test_subscribers_are_closed_when_their_channels_are_revoked(self):
        """As Redis's ACLKillPubsubClientsIfNeeded (its unit/acl "Subscribers are killed when
        revoked of ... permission"): ACL SETUSER that takes a channel, shard channel or pattern
        away from a user closes that user's clients subscribed to it before it replies (CLIENT LIST
        no longer lists them); subscribers the new rules still allow stay. keg kept them all."""
        import socket
        import time
        seen = {}
        for kind, server in (("keg", self.keg_server), ("redis", self.redis_server)):
            admin = redis.Redis(port=server.port, socket_timeout=10)
            cases = (("SUBSCRIBE foo:1", "&foo:1"), ("SSUBSCRIBE foo:1", "&foo:1"),
                     ("PSUBSCRIBE bar:*", "&bar:*"), ("SUBSCRIBE foo:1", "allchannels"),
                     ("SUBSCRIBE baz:1", "&baz:*"))
            for cmd, grant in cases:
                admin.execute_command("ACL", "SETUSER", "psuser", "on", ">pspass", "+@all", "resetchannels", grant)
                s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
                self.addCleanup(s.close)
                s.sendall(b"AUTH psuser pspass\r\nCLIENT SETNAME deathrow\r\n" + cmd.encode() + b"\r\n")
                got = b""
                while got.count(b"\r\n") < 2 + 4:  # +OK +OK and the subscription's 3-element reply
                    got += s.recv(1000)
                # Revoke everything but baz:* (the last case keeps its subscription).
                admin.execute_command("ACL", "SETUSER", "psuser", "resetchannels", "&baz:*")
                listed = "name=deathrow" in admin.execute_command("CLIENT", "LIST").decode()
                s.settimeout(2)
                try:
                    closed = s.recv(100) == b""
                except socket.timeout:
                    closed = False
                seen[(kind, cmd, grant)] = (listed, closed)
                s.close()
                deadline = time.time() + 5
                while "name=deathrow" in admin.execute_command("CLIENT", "LIST").decode():
                    self.assertLess(time.time(), deadline)
                    time.sleep(0.01)
        for key, value in seen.items():
            if key[0] == "keg":
                self.assertEqual(value, seen[("redis",) + key[1:]], key)
        self.assertEqual(seen[("keg", "SUBSCRIBE foo:1", "&foo:1")], (False, True))
        self.assertEqual(seen[("keg", "PSUBSCRIBE bar:*", "&bar:*")], (False, True))
        self.assertEqual(seen[("keg", "SUBSCRIBE baz:1", "&baz:*")], (True, False))

    def test_a_subscribe_racing_the_revocation_of_its_channel_does_not_stay(self):
        """A SUBSCRIBE and the ACL SETUSER that takes its channel away, sent at the same moment on
        two connections: either the SUBSCRIBE comes first and the revocation closes the client
        (as Redis's ACLKillPubsubClientsIfNeeded), or it comes after and is refused (NOPERM).
        keg's SETUSER looked for subscribers from its own thread: a client whose SUBSCRIBE had
        passed the old rules but not yet subscribed was skipped, and stayed subscribed to the
        revoked channel (and that look read the client's subscriptions while their thread wrote
        them)."""
        import socket
        admin = socket.create_connection(("127.0.0.1", self.keg_server.port), timeout=5)
        self.addCleanup(admin.close)

        def reply(s):
            got = b""
            while not got.endswith(b"\r\n"):
                got += s.recv(1000)
            return got
        for i in range(300):
            admin.sendall(b"ACL SETUSER racer on >pw +@all resetchannels &ch\r\n")
            self.assertEqual(reply(admin), b"+OK\r\n")
            s = socket.create_connection(("127.0.0.1", self.keg_server.port), timeout=5)
            s.sendall(b"AUTH racer pw\r\n")
            self.assertEqual(reply(s), b"+OK\r\n")
            s.sendall(b"SUBSCRIBE ch\r\n")
            admin.sendall(b"ACL SETUSER racer resetchannels &other\r\n")
            self.assertEqual(reply(admin), b"+OK\r\n")
            s.settimeout(2)
            got = b""
            try:
                while not got.startswith(b"-NOPERM"):  # refused: nothing more to wait for
                    chunk = s.recv(1000)
                    if not chunk:
                        got += b"<closed>"
                        break
                    got += chunk
            except socket.timeout:
                pass
            s.close()
            self.assertTrue(got.startswith(b"-NOPERM") or got.endswith(b"<closed>"), f"round {i}: {got!r}")


if __name__ == "__main__":
    unittest.main()
