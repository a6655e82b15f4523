"""A keg-server child process for the reliability tests (Debian's /usr/bin/python3).

The binary comes from KEG_SERVER (ctest sets it). The child gets SIGKILL if the test process dies.
"""
import ctypes
import os
import signal
import socket
import subprocess
import time

import resp


def die_with_parent():
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Keg:
    """keg-server on a free port with its data in `data_dir`; extra arguments and environment."""

    def __init__(self, data_dir, *args, env=None, log=None):
        self.dir = data_dir
        self.port = free_port()
        self.args = list(args)
        self.env = dict(os.environ, **(env or {}))
        self.log_path = log or os.path.join(os.path.dirname(data_dir.rstrip("/")) or ".",
                                            f"keg-{self.port}.log")
        self.proc = None

    def start(self, timeout=120):
        """Starts the server and waits for +PONG; returns the seconds that took."""
        t0 = time.monotonic()
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [os.environ.get("KEG_SERVER", "keg-server"), "--port", str(self.port), "--dir",
             self.dir, *self.args], stdout=self.log, stderr=subprocess.STDOUT, env=self.env,
            preexec_fn=die_with_parent)
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                self.log.close()
                raise RuntimeError(f"keg-server exited with {self.proc.returncode}: "
                                   f"{self.log_text()[-2000:]}")
            try:
                c = self.conn(timeout=5)
                try:
                    if c.call("PING") == b"PONG":
                        return time.monotonic() - t0
                finally:
                    c.close()
            except resp.ReplyError as e:
                if str(e).startswith("NOAUTH"):  # requirepass: up, and asking for AUTH
                    return time.monotonic() - t0
                time.sleep(0.01)
            except (OSError, ConnectionError):
                time.sleep(0.01)
        raise RuntimeError("keg-server never answered PING")

    def conn(self, timeout=30.0):
        return resp.Conn(self.port, timeout=timeout)

    def call(self, *args):
        c = self.conn()
        try:
            return c.call(*args)
        finally:
            c.close()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def rss_kb(self):
        return self._status_kb("VmRSS:")

    def vm_kb(self):
        """Address space reserved (VmSize), in KiB."""
        return self._status_kb("VmSize:")

    def _status_kb(self, field):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
        return 0

    def stop(self):
        """SIGTERM; returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
            self.log.close()

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")
