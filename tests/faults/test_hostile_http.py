"""Fault campaign: hostile HTTP against the status page, while the agent polls real meters.

Each attack (slowloris, huge headers, path traversal, other methods, bad credentials)
must be refused, and polling must not notice: every meter keeps its poll schedule during
the attack (measured by the poller's own poll counts; a late poll is skipped, not
caught up, so a stalled loop shows as missing polls).
"""

from __future__ import annotations

import base64
import socket
import sys
import threading
import time
from pathlib import Path

import pytest
from campaign import record

from agent.clock import Clock
from agent.config import ConfigError, load_text
from hil.loads import demo_households
from hil.meters import SimUnit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the web rig
from web.rig import AgentRig, get

# Fault campaigns (tests/faults): `make test` and `make faults` only.
pytestmark = pytest.mark.slow

POLL_S = 0.5
ATTACK_S = 3.0  # slowloris keeps coming back this long
PASSWORD = "s3cret-Pw"
AUTH = {"Authorization": "Basic " + base64.b64encode(
    ("tech:" + PASSWORD).encode()).decode()}


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    (tmp / "web.pw").write_text(PASSWORD + "\n")
    households = demo_households(3, seed=3)

    def units(clock: Clock) -> list[SimUnit]:
        return [SimUnit(i + 1, h.profile, h.load, clock, name=h.meter)
                for i, h in enumerate(households.meters)]

    r = AgentRig(tmp, units, Clock(), poll_s=POLL_S, telemetry_every_s=60.0,
                 web_extra='username = "tech"\npassword_file = %r\nmax_clients = 4'
                 % str(tmp / "web.pw")).start()
    try:
        time.sleep(1.5)  # the first polls are in
        yield r
    finally:
        r.stop()


class PollWatch:
    """Polls per meter across an attack, against the schedule's count."""

    def __init__(self, rig: AgentRig):
        self.rig = rig

    def __enter__(self) -> PollWatch:
        self.before = self.rig.polls()
        self.t0 = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self.elapsed = time.monotonic() - self.t0
        after = self.rig.polls()
        self.made = {m: after[m] - self.before[m] for m in after}

    def missed(self) -> dict[str, int]:
        """Meters that made fewer polls than their schedule allowed (one of slack for
        where the window cuts a poll interval)."""
        due = int(self.elapsed / POLL_S)
        return {m: due - n for m, n in self.made.items() if n < due - 1}

    def report(self, attack: str, runs: int, refused: int) -> None:
        """The campaign row, then the guarantees: every attack refused, no poll missed."""
        missed = self.missed()
        record("hostile HTTP: %s" % attack, runs=runs, crash_loops=0,
               note="%d/%d refused; polls missed %d (%d meters, %.1f s)" % (
                   refused, runs, sum(missed.values()), len(self.made), self.elapsed))
        assert refused == runs, "%d of %d %s attacks were not refused" % (
            runs - refused, runs, attack)
        assert not missed, "polls missed during the attack (%.1f s): %s" % (
            self.elapsed, missed)


def _raw(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
        return out


def _status(resp: bytes) -> int:
    """The response's status code; 0 when there was no response at all."""
    return int(resp.split(b" ", 2)[1]) if resp.startswith(b"HTTP/1.1 ") else 0


def test_slowloris_is_cut_off_and_polling_goes_on(rig) -> None:
    port = rig.web_port
    results: list[int] = []
    lock = threading.Lock()

    def slow_client() -> None:
        """Hold a connection with a header that never ends; when cut off, come back, for
        ATTACK_S in all (the pressure lasts several poll intervals)."""
        end = time.monotonic() + ATTACK_S
        while time.monotonic() < end:
            out = b""
            reset = False  # the server dropped us (an RST can discard its 503 unread)
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
                    s.settimeout(0.1)
                    while time.monotonic() < end + 2.0:
                        try:
                            s.sendall(b"X")
                            chunk = s.recv(4096)
                        except socket.timeout:
                            continue
                        except (ConnectionResetError, BrokenPipeError):
                            reset = True
                            break
                        if not chunk:
                            break
                        out += chunk
            except (ConnectionResetError, BrokenPipeError):
                reset = True
            with lock:
                results.append(_status(out) or (-1 if reset else 0))
            time.sleep(0.1)  # then straight back (a flood, but a bounded one)

    with PollWatch(rig) as w:
        threads = [threading.Thread(target=slow_client) for _ in range(12)]
        for t in threads:
            t.start()
        time.sleep(0.3)
        # While the slots are held, a real client is told to come back, not left hanging.
        busy_status, _ = get(rig.url + "/", headers=AUTH)
        for t in threads:
            t.join(15)
        time.sleep(0.5)
    w.report("slowloris (12 clients for 3 s, a header byte every 0.1 s)", len(results),
             sum(1 for r in results if r in (408, 503, -1)))
    assert results.count(408) >= 4, results  # the held slots were cut off by the timeout
    assert busy_status in (200, 503)
    status, body = get(rig.url + "/", headers=AUTH)
    assert status == 200 and "Gateway" in body


def test_huge_headers_are_refused(rig) -> None:
    sizes = (9000, 200_000, 2_000_000)
    statuses = []
    with PollWatch(rig) as w:
        for size in sizes:
            try:
                resp = _raw(rig.web_port, b"GET / HTTP/1.1\r\nX-Big: " + b"a" * size +
                            b"\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                resp = b"HTTP/1.1 431 (reset while sending)"
            statuses.append(_status(resp))
        time.sleep(2.0)
    w.report("huge request heads (9 kB to 2 MB)", len(sizes), statuses.count(431))


TRAVERSALS = [
    "/../../../../etc/passwd", "/meter/../../etc/passwd", "/meter/..%2f..%2fetc%2fpasswd",
    "/%2e%2e/%2e%2e/etc/passwd", "/meter/%00", "/static/..\\..\\etc\\passwd",
    "//etc/passwd", "/meter/home-01/../../../etc/shadow", "/%ff%fe"]


def test_path_traversal_finds_nothing(rig) -> None:
    refused = 0
    with PollWatch(rig) as w:
        for target in TRAVERSALS:
            resp = _raw(rig.web_port, ("GET %s HTTP/1.1\r\nHost: x\r\nAuthorization: %s"
                                       "\r\n\r\n" % (target, AUTH["Authorization"])).encode())
            assert b"root:" not in resp
            refused += _status(resp) in (400, 404)
        time.sleep(1.0)
    w.report("path traversal", len(TRAVERSALS), refused)


def test_methods_other_than_get_are_refused(rig) -> None:
    methods = ("POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT", "PROPFIND")
    refused = 0
    with PollWatch(rig) as w:
        for method in methods:
            resp = _raw(rig.web_port, ("%s /api/status HTTP/1.1\r\nHost: x\r\n"
                                       "Authorization: %s\r\nContent-Length: 5\r\n\r\nhello"
                                       % (method, AUTH["Authorization"])).encode())
            refused += _status(resp) == 405 and b"Allow: GET, HEAD" in resp
        head = _raw(rig.web_port, ("HEAD / HTTP/1.1\r\nAuthorization: %s\r\n\r\n"
                                   % AUTH["Authorization"]).encode())
        assert _status(head) == 200 and head.endswith(b"\r\n\r\n")  # no body
        time.sleep(2.0)
    w.report("methods other than GET/HEAD", len(methods), refused)


def test_bad_credentials_are_refused(rig) -> None:
    wrong = [{}, {"Authorization": "Basic " + base64.b64encode(b"tech:wrong").decode()},
             {"Authorization": "Basic " + base64.b64encode(b"root:" + PASSWORD.encode())
              .decode()}, {"Authorization": "Bearer " + PASSWORD},
             {"Authorization": "Basic !!!not-base64"}]
    runs = refused = 0
    with PollWatch(rig) as w:
        for _ in range(20):
            for headers in wrong:
                for path in ("/", "/metrics", "/api/status"):
                    status, body = get(rig.url + path, headers=headers)
                    runs += 1
                    refused += status == 401 and "home-" not in body
        time.sleep(1.0)
    w.report("bad credentials", runs, refused)
    assert get(rig.url + "/metrics", headers=AUTH)[0] == 200


def test_web_config_happy_paths(tmp_path) -> None:
    (tmp_path / "pw").write_text("x\n")
    base = ('site = "s"\ngateway = "g"\n[[buses]]\nname = "b"\nkind = "tcp"\n'
            'host = "127.0.0.1"\n[[meters]]\nid = "m"\nbus = "b"\nprofile = "sdm120"\n')
    assert load_text(base, "t").web is None
    assert load_text(base + "[web]\nenabled = false\n", "t").web is None
    web = load_text(base + '[web]\nlisten = "0.0.0.0:8443"\npassword_file = "pw"\n', "t",
                    tmp_path).web
    assert web is not None and web.host == "0.0.0.0" and web.auth and "x" not in repr(web)
    assert load_text(base + '[web]\nlisten = "[::1]:8080"\n', "t").web.host == "::1"
    with pytest.raises(ConfigError, match="reachable beyond this machine"):
        load_text(base + '[web]\nlisten = "192.0.2.1:80"\n', "t")
