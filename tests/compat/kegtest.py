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
import time


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


class Server:
    """A server process on a free port, in its own temporary directory."""

    def __init__(self, argv_for_port, name, port=None):
        self.dir = tempfile.mkdtemp(prefix=f"keg_compat_{name}_")
        self.port = port or free_port()
        self.log = open(os.path.join(self.dir, "server.log"), "wb")
        self.proc = subprocess.Popen(argv_for_port(self.port, self.dir), stdout=self.log,
                                     stderr=subprocess.STDOUT, cwd=self.dir,
                                     preexec_fn=_die_with_parent)
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
        self._show_log_if_failed()
        shutil.rmtree(self.dir, ignore_errors=True)
        return self.proc.returncode

    def _show_log_if_failed(self):
        """The end of the server's log on stderr when it crashed or a sanitizer reported: the
        directory is removed next, and a CI run keeps only the test's output."""
        try:
            with open(os.path.join(self.dir, "server.log"), "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return
        crashed = self.proc.returncode not in (0, -signal.SIGKILL)
        if crashed or "Sanitizer" in text:
            tail = "\n".join(text.splitlines()[-80:])
            print(f"\n--- {self.dir}/server.log (exit {self.proc.returncode}), last lines:\n{tail}\n---",
                  file=sys.stderr)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def rss_kb(pid):
    """A process's resident memory (VmRSS) in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def keg(*extra):
    binary = os.environ.get("KEG_SERVER", "keg-server")
    return Server(lambda port, d: [binary, "--port", str(port), "--dir", os.path.join(d, "data"),
                                   *extra], "keg")


def redis(*extra):
    return Server(lambda port, d: ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                                   "--save", "", "--appendonly", "no", "--dir", d, *extra],
                  "redis")
