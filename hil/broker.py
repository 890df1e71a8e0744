"""A private Mosquitto broker for tests, the demo and benchmarks.

Every instance runs its own ``mosquitto -c <conf>`` on a free loopback port with its own
config, log and persistence file in a temporary work directory, so tests never touch the
system broker on 1883 and never see each other's retained messages or sessions.

Persistence is on and saved every second (``autosave_interval 1``) as well as on SIGTERM,
so ``restart()`` keeps persistent sessions, queued QoS-1 messages and retained topics,
and even a ``kill()`` (SIGKILL) loses at most the last second of broker state: that is
the broker's own durability, which the agent's outbox cannot improve on.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from pathlib import Path

HOST = "127.0.0.1"


def find_mosquitto() -> str:
    """The broker binary: /usr/sbin/mosquitto (Debian) or whatever is on PATH."""
    for candidate in ("/usr/sbin/mosquitto", shutil.which("mosquitto") or ""):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError("mosquitto is not installed (apt-get install mosquitto)")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class BrokerError(RuntimeError):
    """Mosquitto did not come up; the message carries the tail of its log."""


class MosquittoBroker:
    """One private Mosquitto process.

    ``conf_extra`` is appended after the ``listener`` line, so listener options in it
    (``cafile``, ``certfile``, ``require_certificate`` ...) apply to that listener, and
    global ones (``password_file``, ``acl_file``, ``allow_anonymous false``) work as usual.
    Without a ``port`` a free one is chosen once and kept across ``restart()``.
    """

    def __init__(self, conf_extra: str = "", port: int | None = None):
        self.conf_extra = conf_extra
        self.host = HOST
        self.port = port if port is not None else free_port()
        self._chosen_port = port is None
        self.workdir = Path(tempfile.mkdtemp(prefix="loadwatch-mosquitto-"))
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(self.workdir), True)
        self.conf_path = self.workdir / "mosquitto.conf"
        self.log_path = self.workdir / "mosquitto.log"
        self.proc: subprocess.Popen | None = None
        self.exe = find_mosquitto()

    # ----------------------------------------------------------------- config

    def _config(self) -> str:
        lines = [
            "# written by hil/broker.py; private to this instance",
            "per_listener_settings false",
            "persistence true",
            "persistence_location %s/" % self.workdir,
            "persistence_file mosquitto.db",
            "autosave_interval 1",
            "log_dest file %s" % self.log_path,
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            "log_timestamp true",
            "max_queued_messages 100000",
        ]
        if os.geteuid() == 0:
            # Mosquitto drops to user "mosquitto" when started as root; that user cannot
            # read the password files, keys and persistence the tests create.
            lines.append("user root")
        if "allow_anonymous" not in self.conf_extra:
            lines.append("allow_anonymous true")
        lines.append("listener %d %s" % (self.port, self.host))
        return "\n".join(lines) + "\n" + self.conf_extra.strip() + "\n"

    # ----------------------------------------------------------------- lifecycle

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def start(self, timeout: float = 10.0) -> MosquittoBroker:
        """Start the broker and return once its port accepts TCP connections.

        A port this broker chose itself can be taken between ``free_port()`` and
        Mosquitto's bind by another test process (pytest-xdist runs several): then a new
        free port is tried, a few times, instead of failing the test."""
        for attempt in range(4):
            try:
                return self._start(timeout)
            except BrokerError:
                if not self._chosen_port or attempt == 3 or not self._port_was_taken():
                    raise
                self.port = free_port()
        raise AssertionError("not reached")

    def _port_was_taken(self) -> bool:
        text = self.log_tail(50) + self._stdout_tail()
        return "Address already in use" in text

    def _start(self, timeout: float) -> MosquittoBroker:
        if self.running:
            return self
        self.conf_path.write_text(self._config())
        out = open(self.workdir / "stdout.log", "ab")
        try:
            self.proc = subprocess.Popen([self.exe, "-c", str(self.conf_path)], stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        finally:
            out.close()
        deadline = time.monotonic() + timeout
        while True:
            code = self.proc.poll()
            if code is not None:
                self.proc = None
                raise BrokerError("mosquitto exited with code %s on %s:%d; log tail:\n%s\n%s"
                                  % (code, self.host, self.port, self.log_tail(),
                                     self._stdout_tail()))
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    pass
            except OSError:
                pass
            else:
                # Another process's broker may have answered on a port we failed to bind:
                # ours must still be running a moment later.
                time.sleep(0.05)
                if self.proc.poll() is None:
                    return self
                continue
            if time.monotonic() > deadline:
                self.kill()
                raise BrokerError("mosquitto did not accept connections on %s:%d within "
                                  "%.1f s; log tail:\n%s" % (self.host, self.port, timeout,
                                                             self.log_tail()))
            time.sleep(0.02)

    def _stdout_tail(self) -> str:
        try:
            return (self.workdir / "stdout.log").read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM and wait: Mosquitto saves its persistence file on the way out."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: the broker loses whatever it had not autosaved (at most ~1 s)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc = None

    def restart(self, timeout: float = 10.0) -> MosquittoBroker:
        """Stop (if running) and start again on the same port with the same state."""
        self.stop()
        return self.start(timeout)

    def close(self) -> None:
        """Stop and remove the work directory."""
        self.stop()
        self._cleanup()

    def __enter__(self) -> MosquittoBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return "MosquittoBroker(%s:%d, %s)" % (self.host, self.port,
                                               "running" if self.running else "stopped")
