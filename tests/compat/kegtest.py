"""Test support for the compatibility suite: keg-server and redis-server child processes.

Runs under Debian's /usr/bin/python3 (python3-redis is installed for it). The keg-server binary
comes from the KEG_SERVER environment variable (ctest sets it).
"""
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import unittest


def _die_with_parent():
    """In the child: SIGKILL when the test process dies (PR_SET_PDEATHSIG), so a killed test never
    leaves a server holding ctest's output pipe."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, proc, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


# Every live Server, for the watchdog's report. Guarded by the GIL (appends and removes only).
_live_servers = []


def _watchdog_fire(test_id, seconds):
    """Runs on the watchdog's timer thread when one test outlived its budget: a hung test otherwise
    ends only at ctest's timeout, and CI shows nothing of where it stood. Prints every thread's
    stack and the end of each live server's log, then ends the process (its servers die with it)."""
    out = [f"\n=== watchdog: {test_id} still running after {seconds} s; every thread's stack:"]
    for ident, frame in sys._current_frames().items():
        if ident == threading.get_ident():
            continue
        out.append(f"--- thread {ident}:\n" + "".join(traceback.format_stack(frame)))
    for server in list(_live_servers):
        out.append(f"--- {server.dir}/server.log (pid {server.proc.pid}), last lines:\n"
                   + server.log_tail(60))
        if server.proc.poll() is None and shutil.which("gdb"):
            try:  # where a hung server's threads stand
                stacks = subprocess.run(["gdb", "-p", str(server.proc.pid), "-batch", "-ex",
                                         "thread apply all bt 30"], capture_output=True, text=True,
                                        timeout=60).stdout
                out.append(f"--- pid {server.proc.pid}'s threads:\n{stacks}")
            except (OSError, subprocess.SubprocessError) as e:
                out.append(f"--- gdb on pid {server.proc.pid}: {e}")
    print("\n".join(out), file=sys.stderr, flush=True)
    os._exit(3)


def _run_with_watchdog(self, result=None, _run=unittest.TestCase.run):
    """unittest.TestCase.run under a per-test budget: KEG_TEST_WATCHDOG seconds (default 300,
    0 = none; tools/soak.sh turns it off for its long runs)."""
    seconds = float(os.environ.get("KEG_TEST_WATCHDOG", "300"))
    if seconds <= 0:
        return _run(self, result)
    timer = threading.Timer(seconds, _watchdog_fire, (self.id(), seconds))
    timer.daemon = True
    timer.start()
    try:
        return _run(self, result)
    finally:
        timer.cancel()


unittest.TestCase.run = _run_with_watchdog


class Server:
    """A server process on a free port, in its own temporary directory."""

    def __init__(self, argv_for_port, name, port=None):
        self.dir = tempfile.mkdtemp(prefix=f"keg_compat_{name}_")
        self.port = port or free_port()
        self.log = open(os.path.join(self.dir, "server.log"), "wb")
        self.proc = subprocess.Popen(argv_for_port(self.port, self.dir), stdout=self.log,
                                     stderr=subprocess.STDOUT, cwd=self.dir,
                                     preexec_fn=_die_with_parent)
        _live_servers.append(self)
        wait_for_port(self.port, self.proc)

    def stop(self):
        """SIGTERM (SIGKILL after 20 s), then the directory goes. Returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        if self in _live_servers:
            _live_servers.remove(self)
        self._show_log_if_failed()
        shutil.rmtree(self.dir, ignore_errors=True)
        return self.proc.returncode

    def log_tail(self, lines=None):
        """The last `lines` lines of the server's log (all of it for None; "" when it cannot be
        read)."""
        try:
            with open(os.path.join(self.dir, "server.log"), "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return text if lines is None else "\n".join(text.splitlines()[-lines:])

    def _show_log_if_failed(self):
        """The end of the server's log on stderr when it crashed or a sanitizer reported: the
        directory is removed next, and a CI run keeps only the test's output."""
        text = self.log_tail()
        crashed = self.proc.returncode not in (0, -signal.SIGKILL)
        if crashed or "Sanitizer" in text:
            lines = text.splitlines()
            # A sanitizer's report whole from its first line (its two stacks are what tell the
            # race), with the 20 log lines before it; else the log's last 80 lines.
            first = next((i for i, l in enumerate(lines) if "Sanitizer" in l and
                          ("WARNING" in l or "ERROR" in l)), None)
            shown = lines[max(0, first - 20):first + 200] if first is not None else lines[-80:]
            what = "from the sanitizer's report" if first is not None else "last lines"
            print(f"\n--- {self.dir}/server.log (exit {self.proc.returncode}), {what}:\n"
                  + "\n".join(shown) + "\n---", file=sys.stderr)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class Proxy:
    """A TCP proxy on loopback in front of a server's port, to partition it: cut() drops every byte
    either way on the open connections and leaves new ones hanging unanswered, as behind a dead link
    (nobody sees a connection close); heal() closes what the cut left behind, as the peers' timeouts
    would, and forwards new connections again. Each connection has two daemon threads, one per
    direction; the state is guarded by `_mu`."""

    class _Pair:
        def __init__(self, a, b):
            self.socks = (a, b)
            self.cut = False

        def close(self):
            for s in self.socks:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def __init__(self, target_port):
        self.target = target_port
        self._mu = threading.Lock()
        self._cut = False
        self._pairs = set()
        self._held = []  # connections accepted during a cut: never answered
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            with self._mu:
                if self._cut:
                    self._held.append(client)
                    continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            for s in (client, upstream):  # as transparent as it can be: no Nagle delay added
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pair = Proxy._Pair(client, upstream)
            with self._mu:
                self._pairs.add(pair)
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(pair, src, dst), daemon=True).start()

    def _pump(self, pair, src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if not pair.cut:
                    dst.sendall(data)
        except OSError:
            pass
        with self._mu:
            if pair.cut:
                return  # heal() closes it
            self._pairs.discard(pair)
        pair.close()

    def cut(self):
        with self._mu:
            self._cut = True
            for pair in self._pairs:
                pair.cut = True

    def heal(self):
        with self._mu:
            self._cut = False
            dead = [p for p in self._pairs if p.cut]
            self._pairs.difference_update(dead)
            held, self._held = self._held, []
        for pair in dead:
            pair.close()
        for s in held:
            s.close()

    def stop(self):
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept() (close alone does not)
        except OSError:
            pass
        self._listener.close()
        self.heal()
        with self._mu:
            pairs, self._pairs = list(self._pairs), set()
        for pair in pairs:
            pair.close()


def resp(*args):
    """A command in RESP, as clients send it (arguments: bytes, or anything str() spells)."""
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


def read_commands(f):
    """The commands a client sends on the binary file `f`, each a list of bytes, until it closes
    (lines that are not arrays — a replica's keepalive newlines — skipped)."""
    while True:
        line = f.readline()
        if not line:
            return
        if not line.startswith(b"*"):
            continue
        args = []
        for _ in range(int(line[1:])):
            n = int(f.readline()[1:])
            args.append(f.read(n + 2)[:-2])
        yield args


def slow(seconds):
    """Marks a test that takes about `seconds` in a Release build, so shard.py can balance a
    module's shards (unmarked tests weigh 1 s)."""
    def mark(test):
        test.keg_seconds = seconds
        return test
    return mark


def rss_kb(pid, field="VmRSS"):
    """A process's resident memory (VmRSS; RssAnon: its heap, not the files it maps) in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def keg(*extra):
    binary = os.environ.get("KEG_SERVER", "keg-server")
    return Server(lambda port, d: [binary, "--port", str(port), "--dir", os.path.join(d, "data"),
                                   *extra], "keg")


def server_kinds():
    """The servers a side-by-side test checks alike: ("keg", "redis"); keg alone in a sanitizer
    build, where the redis-server half would check nothing new (it is the same binary in every
    build: the Release run has checked it)."""
    return ("keg",) if os.environ.get("KEG_SANITIZE") else ("keg", "redis")


def redis(*extra, port=None):
    """A redis-server with no persistence. A full sync it serves to a replica that reads the
    diskless framing (redis-server's replicas, keg's) starts at once, not after Redis's default
    5-second wait for more replicas (repl-diskless-sync-delay 0)."""
    return Server(lambda port, d: ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                                   "--save", "", "--appendonly", "no", "--dir", d,
                                   "--repl-diskless-sync-delay", "0", *extra],
                  "redis", port=port)
