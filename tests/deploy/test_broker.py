"""The example broker config (deploy/mosquitto/) on a real Mosquitto, certificates from
deploy/mkcert.sh, real paho clients and the real agent.

The example is used as shipped except for what a test must change: the listener's port
and address, the certificate and ACL paths, the persistence folder, and ``user root``
(Mosquitto drops to the mosquitto user otherwise and could not read the test's keys).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from hil.broker import find_mosquitto, free_port

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
NOT_AUTHORIZED = 0x87
GW = "gateways/north-depot/gw-0001"
OTHER_SITE_GW = "gateways/south-yard/gw-0001"
UTILITY = "utilities/utility-ops"
PREFIX = "loadwatch/v1/north-depot/gw-0001"

UNIT = DEPLOY / "systemd" / "loadwatch.service"

# Deploy tests (bundles, install into a throw-away root, brokers): `make test` only.
pytestmark = pytest.mark.slow

# Run a program the way the unit's sandbox would, with the kernel's own mechanisms:
#  - PR_SET_MDWE(PR_MDWE_REFUSE_EXEC_GAIN): writable+executable mappings are refused, as
#    systemd's MemoryDenyWriteExecute=yes does;
#  - a seccomp filter (libseccomp, which systemd itself uses) that allows exactly the
#    unit's SystemCallFilter= set and fails everything else with EPERM, as
#    SystemCallErrorNumber=EPERM does.
# Both survive execve. argv: <file with allowed syscall names> <program> <args...>
SANDBOX_EXEC = """
import ctypes, os, sys

libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS, as NoNewPrivileges=yes
    sys.exit("PR_SET_NO_NEW_PRIVS failed")
if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
    sys.exit("PR_SET_MDWE failed: errno %d" % ctypes.get_errno())
sc = ctypes.CDLL("libseccomp.so.2")
sc.seccomp_init.restype = ctypes.c_void_p
sc.seccomp_init.argtypes = [ctypes.c_uint32]
sc.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
sc.seccomp_rule_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint]
sc.seccomp_load.argtypes = [ctypes.c_void_p]
ctx = sc.seccomp_init(0x00050000 | 1)  # SCMP_ACT_ERRNO(EPERM)
allowed = 0
for name in open(sys.argv[1]).read().split():
    nr = sc.seccomp_syscall_resolve_name(name.encode())
    if nr >= 0:  # negative: not a system call on this architecture
        if sc.seccomp_rule_add(ctx, 0x7FFF0000, nr, 0) != 0:  # SCMP_ACT_ALLOW
            sys.exit("seccomp_rule_add(%s) failed" % name)
        allowed += 1
if allowed < 100 or sc.seccomp_load(ctx) != 0:
    sys.exit("seccomp filter not loaded (%d system calls)" % allowed)
os.execv(sys.argv[2], sys.argv[2:])
"""


def _syscall_group(name: str, seen: set[str] | None = None) -> set[str]:
    """The system calls of a systemd group (@name), nested groups expanded."""
    seen = set() if seen is None else seen
    if name in seen:
        return set()
    seen.add(name)
    out = subprocess.run(["systemd-analyze", "syscall-filter", name], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    calls: set[str] = set()
    for line in out.splitlines()[1:]:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        calls |= _syscall_group(line, seen) if line.startswith("@") else {line}
    return calls


def unit_syscalls() -> set[str]:
    """The unit's SystemCallFilter=: the first line allows, lines with ~ take away."""
    allowed: set[str] | None = None
    for line in UNIT.read_text().splitlines():
        if not line.startswith("SystemCallFilter="):
            continue
        value = line.partition("=")[2]
        deny = value.startswith("~")
        names: set[str] = set()
        for item in value.lstrip("~").split():
            names |= _syscall_group(item) if item.startswith("@") else {item}
        if deny:
            assert allowed is not None, "a deny list before any allow list"
            allowed -= names
        else:
            allowed = names if allowed is None else allowed | names
    assert allowed, "no SystemCallFilter= in the unit"
    return allowed


def _rewrite(text: str, old: str, new: str) -> str:
    assert old in text, "deploy/mosquitto/loadwatch.conf no longer has %r" % old
    return text.replace(old, new)


@pytest.fixture
def broker(pki, tmp_path):
    """The example broker on a free loopback port; yields (port, log path)."""
    port = free_port()
    conf = (DEPLOY / "mosquitto" / "loadwatch.conf").read_text()
    conf = _rewrite(conf, "\nlistener 8883\n", "\nlistener %d 127.0.0.1\n" % port)
    conf = _rewrite(conf, "/etc/mosquitto/loadwatch/", "%s/" % pki)
    conf = _rewrite(conf, "acl_file /etc/mosquitto/loadwatch.acl",
                    "acl_file %s" % (DEPLOY / "mosquitto" / "acl"))
    conf += "persistence_location %s/\nlog_type all\n" % tmp_path
    if os.geteuid() == 0:
        conf += "user root\n"
    (tmp_path / "mosquitto.conf").write_text(conf)
    log = tmp_path / "mosquitto.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([find_mosquitto(), "-c", str(tmp_path / "mosquitto.conf")],
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            assert proc.poll() is None, "mosquitto exited:\n" + log.read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "mosquitto did not listen:\n" + log.read_text()
                time.sleep(0.05)
        yield port, log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Client:
    """A paho MQTT 5 client with a client certificate; records acks and messages."""

    def __init__(self, pki: Path, who: str, port: int):
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=who.replace("/", "-"),
                             protocol=mqtt.MQTTv5)
        self.c.tls_set(ca_certs=str(pki / "ca.crt"), certfile=str(pki / (who + ".crt")),
                       keyfile=str(pki / (who + ".key")))
        self.port = port
        self.cond = threading.Condition()
        self.connected = False
        self.pubacks: dict[int, int] = {}
        self.subacks: dict[int, list[int]] = {}
        self.messages: list[mqtt.MQTTMessage] = []
        self.c.on_connect = self._on_connect
        self.c.on_publish = self._on_publish
        self.c.on_subscribe = self._on_subscribe
        self.c.on_message = self._on_message

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        with self.cond:
            self.connected = not reason_code.is_failure
            self.cond.notify_all()

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        with self.cond:
            self.pubacks[mid] = reason_code.value
            self.cond.notify_all()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        with self.cond:
            self.subacks[mid] = [rc.value for rc in reason_codes]
            self.cond.notify_all()

    def _on_message(self, client, userdata, msg):
        with self.cond:
            self.messages.append(msg)
            self.cond.notify_all()

    def wait_for(self, pred, timeout: float = 10.0):
        with self.cond:
            assert self.cond.wait_for(pred, timeout), "timed out"

    def __enter__(self) -> Client:
        self.c.connect("127.0.0.1", self.port)
        self.c.loop_start()
        self.wait_for(lambda: self.connected)
        return self

    def __exit__(self, *exc) -> None:
        self.c.disconnect()
        self.c.loop_stop()

    def publish(self, topic: str) -> int:
        """Publish with QoS 1 and return the broker's PUBACK reason code."""
        info = self.c.publish(topic, b"{}", qos=1)
        self.wait_for(lambda: info.mid in self.pubacks)
        return self.pubacks[info.mid]

    def subscribe(self, topic: str) -> int:
        _, mid = self.c.subscribe(topic, qos=1)
        self.wait_for(lambda: mid in self.subacks)
        return self.subacks[mid][0]

    def topics(self) -> list[str]:
        with self.cond:
            return [m.topic for m in self.messages]


def test_gateway_writes_only_under_its_own_prefix(broker, pki):
    port, _ = broker
    with Client(pki, UTILITY, port) as utility, Client(pki, GW, port) as gw, \
            Client(pki, OTHER_SITE_GW, port) as other:
        assert utility.subscribe("loadwatch/#") == 1
        assert gw.publish(PREFIX + "/status") == 0
        assert gw.publish(PREFIX + "/meter/flat-1/alert") == 0
        # Same site, another gateway; same gateway id at another site; outside the tree.
        assert gw.publish("loadwatch/v1/north-depot/gw-0002/status") == NOT_AUTHORIZED
        assert gw.publish("loadwatch/v1/south-yard/gw-0001/status") == NOT_AUTHORIZED
        assert gw.publish("loadwatch/v1/north-depot/status") == NOT_AUTHORIZED
        assert gw.publish("other/topic") == NOT_AUTHORIZED
        # The south-yard gateway with the same gateway id cannot write into north-depot.
        assert other.publish(PREFIX + "/status") == NOT_AUTHORIZED
        assert other.publish("loadwatch/v1/south-yard/gw-0001/status") == 0
        utility.wait_for(lambda: len(utility.messages) >= 3)
        time.sleep(0.2)  # anything wrongly let through would have arrived by now
        assert sorted(utility.topics()) == sorted([
            PREFIX + "/status", PREFIX + "/meter/flat-1/alert",
            "loadwatch/v1/south-yard/gw-0001/status"])


def test_gateway_reads_only_its_own_commands(broker, pki):
    # Mosquitto grants a wildcard subscription and applies the read ACL to each message
    # it would deliver, so the proof is in what arrives.
    port, _ = broker
    with Client(pki, UTILITY, port) as utility, Client(pki, GW, port) as gw, \
            Client(pki, OTHER_SITE_GW, port) as other:
        gw.subscribe("loadwatch/#")
        other.subscribe("loadwatch/#")
        assert other.publish("loadwatch/v1/south-yard/gw-0001/status") == 0
        assert utility.publish("loadwatch/v1/south-yard/gw-0001/cmd/ping") == 0
        assert utility.publish(PREFIX + "/cmd/ping") == 0
        gw.wait_for(lambda: PREFIX + "/cmd/ping" in gw.topics())
        other.wait_for(lambda: "loadwatch/v1/south-yard/gw-0001/cmd/ping" in other.topics())
        time.sleep(0.2)  # anything wrongly let through would have arrived by now
        assert set(gw.topics()) == {PREFIX + "/cmd/ping"}
        assert PREFIX + "/cmd/ping" not in other.topics()


def test_utility_reads_everything_and_may_only_send_commands(broker, pki):
    port, _ = broker
    with Client(pki, UTILITY, port) as utility, Client(pki, GW, port) as gw:
        assert utility.subscribe("loadwatch/v1/#") == 1
        assert gw.subscribe(PREFIX + "/cmd/+") == 1
        assert utility.publish(PREFIX + "/cmd/ping") == 0
        gw.wait_for(lambda: PREFIX + "/cmd/ping" in gw.topics())
        assert utility.publish(PREFIX + "/status") == NOT_AUTHORIZED
        assert utility.publish(PREFIX + "/meter/flat-1/alert") == NOT_AUTHORIZED


def test_client_without_certificate_is_refused(broker, pki):
    port, _ = broker
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    # MQTT 3.1.1 CONNECT, empty client id, clean session, keepalive 60.
    connect = b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00"
    reply = b""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        try:
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                s.sendall(connect)
                reply = s.recv(4)
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
            reply = b""
    assert reply == b"", "a client without a certificate got %r" % reply


def test_real_agent_publishes_with_the_minted_certificate(broker, pki, tmp_path):
    """`loadwatch run` with the gateway certificate, inside the unit's MDWE and system call
    filter: it comes online under its prefix, is never denied, and goes offline cleanly on
    SIGTERM (as systemd stops it)."""
    port, log = broker
    cfg = tmp_path / "loadwatch.toml"
    # A serial bus on a pseudo-terminal nobody answers on: the agent opens and configures
    # the port (termios ioctls) inside the filter, times out and reports the meter's health.
    master, slave = os.openpty()
    cfg.write_text(
        'site = "north-depot"\ngateway = "gw-0001"\nstate_dir = "%s"\n'
        '[broker]\nhost = "127.0.0.1"\nport = %d\ntls = true\nca_file = "%s"\n'
        'cert_file = "%s"\nkey_file = "%s"\n'
        '[[buses]]\nname = "lan"\nkind = "tcp"\nhost = "127.0.0.1"\nport = %d\n'
        '[[buses]]\nname = "rs485"\nkind = "rtu"\nport = "%s"\ntimeout_ms = 100\n'
        'retries = 0\n'
        '[[meters]]\nid = "flat-1"\nbus = "lan"\nunit = 1\nprofile = "sdm630"\n'
        '[[meters]]\nid = "flat-2"\nbus = "rs485"\nunit = 1\nprofile = "sdm120"\n'
        'poll_s = 1\n'
        % (tmp_path / "state", port, pki / "ca.crt", pki / (GW + ".crt"),
           pki / (GW + ".key"), free_port(), os.ttyname(slave)))
    loadwatch = str(Path(sys.executable).with_name("loadwatch"))
    allowed = tmp_path / "syscalls.txt"
    allowed.write_text("\n".join(sorted(unit_syscalls())))
    with Client(pki, UTILITY, port) as utility:
        assert utility.subscribe(PREFIX + "/status") == 1
        assert utility.subscribe(PREFIX + "/meter/+/health") == 1
        agent = subprocess.Popen([sys.executable, "-c", SANDBOX_EXEC, str(allowed), loadwatch,
                                  "run", "--config", str(cfg)], stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, cwd=tmp_path)
        try:
            def status(state: str):
                return any(json.loads(m.payload).get("state") == state
                           for m in utility.messages if m.payload)

            utility.wait_for(lambda: status("online") or agent.poll() is not None, 30)
            assert agent.poll() is None, agent.communicate()[0].decode()
            utility.wait_for(lambda: PREFIX + "/meter/flat-2/health" in utility.topics()
                             or agent.poll() is not None, 30)
            assert agent.poll() is None, agent.communicate()[0].decode()
            os.set_blocking(master, False)
            wire = os.read(master, 4096)
            assert wire.startswith(b"\x01\x04"), wire  # unit 1, read input registers
            agent.send_signal(signal.SIGTERM)
            out = agent.communicate(timeout=30)[0].decode()
        finally:
            if agent.poll() is None:
                agent.kill()
                agent.communicate()
            os.close(master)
            os.close(slave)
        assert agent.returncode == 0, out
        utility.wait_for(lambda: status("offline"), 10)
    assert (tmp_path / "state" / "state.json").is_file(), "no checkpoint on SIGTERM"
    broker_log = log.read_text()
    assert "u'north-depot/gw-0001'" in broker_log  # the CN became the username
    assert "Denied" not in broker_log, broker_log
    assert "not permitted" not in out, out  # nothing ran into the system call filter


def test_sandbox_emulation_refuses_what_the_unit_refuses(tmp_path):
    """The harness above is not a no-op: setpriority (@resources, taken away by the unit)
    fails with EPERM, a writable+executable mapping is refused, and ordinary work runs."""
    allowed = tmp_path / "syscalls.txt"
    calls = unit_syscalls()
    assert "setpriority" not in calls and "openat" in calls
    allowed.write_text("\n".join(sorted(calls)))
    probe = (
        "import errno, mmap, os\n"
        "try:\n"
        "    os.setpriority(os.PRIO_PROCESS, 0, 1)\n"
        "    print('setpriority allowed')\n"
        "except PermissionError:\n"
        "    print('setpriority EPERM')\n"
        "try:\n"
        "    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)\n"
        "    print('wx allowed')\n"
        "except PermissionError:\n"
        "    print('wx refused')\n"
        "print(len(os.listdir('/')) > 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", SANDBOX_EXEC, str(allowed), sys.executable,
                           "-c", probe], capture_output=True, text=True, timeout=60)
    assert proc.stdout.split() == ["setpriority", "EPERM", "wx", "refused", "True"], \
        proc.stdout + proc.stderr
