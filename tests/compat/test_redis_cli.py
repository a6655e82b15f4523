"""redis-cli 7.0 (Debian redis-tools), unmodified, against keg-server."""
import fcntl
import os
import pty
import struct
import termios
import random
import select
import subprocess
import time
import unittest

import kegtest


def cli(port, *args, stdin=None, timeout=60):
    return subprocess.run(["redis-cli", "-p", str(port), *args], input=stdin,
                          capture_output=True, timeout=timeout)


def read_pty(fd, seconds):
    """Everything a pseudo-terminal produced within `seconds`."""
    out = b""
    deadline = time.time() + seconds
    while time.time() < deadline:
        r, _, _ = select.select([fd], [], [], 0.05)
        if r:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    return out


def open_terminal():
    """A pseudo-terminal pair with an 80x24 window (linenoise asks for the width)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    return master, slave


def run_on_pty(argv, seconds):
    """Runs argv with its output on a pseudo-terminal for `seconds`, then SIGINT; the output."""
    master, slave = open_terminal()
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    out = read_pty(master, seconds)
    proc.send_signal(2)
    out += read_pty(master, 0.5)
    proc.wait(timeout=10)
    os.close(master)
    return out.decode(errors="replace")


class RedisCliTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = kegtest.keg()
        cls.port = cls.server.port

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def test_one_shot_commands_and_no_raw_formatting(self):
        p = self.port
        self.assertEqual(cli(p, "set", "greeting", "hello world").stdout, b"OK\n")
        self.assertEqual(cli(p, "get", "greeting").stdout, b"hello world\n")
        self.assertEqual(cli(p, "--no-raw", "get", "missing-key").stdout, b"(nil)\n")
        self.assertEqual(cli(p, "--no-raw", "incr", "cli-counter").stdout, b"(integer) 1\n")
        self.assertEqual(cli(p, "--no-raw", "get", "greeting").stdout, b'"hello world"\n')
        r = cli(p, "--no-raw", "nosuchcommand", "a")
        self.assertEqual(r.stdout,
                         b"(error) ERR unknown command 'nosuchcommand', with args beginning with: 'a' \n")
        self.assertEqual(r.returncode, 0)
        r = cli(p, "-e", "nosuchcommand")
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"ERR unknown command", r.stdout + r.stderr)
        self.assertEqual(cli(p, "--no-raw", "mget", "greeting", "missing-key").stdout,
                         b'1) "hello world"\n2) (nil)\n')

    def test_resp3_with_dash_3(self):
        r = cli(self.port, "-3", "--no-raw", "get", "missing-key")
        self.assertEqual(r.stdout, b"(nil)\n")
        self.assertNotIn(b"HELLO 3 failed", r.stderr + r.stdout)
        r = cli(self.port, "-3", "--no-raw", "hello", "3")
        self.assertIn(b'"proto"', r.stdout)
        self.assertIn(b"(integer) 3", r.stdout)

    def test_pipe_with_100000_commands(self):
        rng = random.Random(5)
        parts = []
        for i in range(100000):
            value = "v%d-%d" % (i, rng.randrange(1 << 30))
            key = "pipe:%d" % i
            parts.append("*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(key), key, len(value), value))
        r = cli(self.port, "--pipe", stdin="".join(parts).encode(), timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn(b"errors: 0, replies: 100000", r.stdout)
        self.assertEqual(cli(self.port, "get", "pipe:99999").stdout[:7], b"v99999-")

    def test_scan_with_pattern_and_bigkeys(self):
        for i in range(300):
            cli(self.port, "set", "scan:%d" % i, "x" * (i + 1))
        r = cli(self.port, "--scan", "--pattern", "scan:*")
        self.assertEqual(r.returncode, 0)
        keys = set(r.stdout.decode().split())
        self.assertEqual(keys, {"scan:%d" % i for i in range(300)})
        r = cli(self.port, "--bigkeys")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"Biggest string found", r.stdout)
        self.assertIn(b"has 300 bytes", r.stdout)

    def test_stat_and_latency_samples(self):
        out = run_on_pty(["redis-cli", "-p", str(self.port), "--stat", "-i", "0.2"], 1.5)
        self.assertIn("keys", out)
        self.assertIn("clients", out)
        lines = [l for l in out.splitlines() if l.strip() and l.strip()[0].isdigit()]
        self.assertGreaterEqual(len(lines), 3, out)
        out = run_on_pty(["redis-cli", "-p", str(self.port), "--latency"], 1.5)
        self.assertIn("min:", out)
        self.assertIn("samples", out)

    def test_interactive_session_on_a_terminal(self):
        master, slave = open_terminal()
        proc = subprocess.Popen(["redis-cli", "-p", str(self.port)], stdin=slave, stdout=slave,
                                stderr=slave, close_fds=True)
        os.close(slave)
        prompt = read_pty(master, 1.0).decode(errors="replace")
        self.assertIn("127.0.0.1:%d>" % self.port, prompt)

        def type_line(line, seconds=0.7):
            os.write(master, line.encode() + b"\r")
            return read_pty(master, seconds).decode(errors="replace")

        self.assertIn("OK", type_line("set repl-key 42"))
        self.assertIn('"42"', type_line("get repl-key"))
        self.assertIn("(integer) 43", type_line("incr repl-key"))
        out = type_line("help set")  # redis-cli's built-in help (keg answers COMMAND DOCS with an error)
        self.assertIn("Set the string value of a key", out)
        self.assertIn("key value [NX|XX]", out)
        out = type_line("nosuch")
        self.assertIn("(error) ERR unknown command", out)
        type_line("quit", 0.5)
        proc.wait(timeout=10)
        os.close(master)
        self.assertEqual(proc.returncode, 0)


if __name__ == "__main__":
    unittest.main()
