"""Public seams only: no module reaches into another package's private names, and the two
library internals we cannot avoid each live in one adapter that fails here, loudly, when
the library changes them (issue 14 item 4)."""

from __future__ import annotations

import ast
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from pymodbus.client import AsyncModbusTcpClient

from agent.failures import Failure
from agent.link import TransportError
from agent.modbus.transport import limit_one_request
from agent.publish.paho import close_socket_now
from agent.quality import ERROR_FLAGS
from hil.broker import MosquittoBroker

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("agent", "firmware_bridge", "hil")


def _module_name(path: Path, root: Path) -> str:
    """The dotted name a file is imported as."""
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _package_of(module: str, is_package: bool) -> str:
    return module if is_package else module.rpartition(".")[0]


def _is_package(module: str, root: Path) -> bool:
    return (root / module.replace(".", "/")).is_dir()


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _inside(importer: str, package: str) -> bool:
    return importer == package or importer.startswith(package + ".")


def private_imports(root: Path = ROOT) -> list[str]:
    """Every place a module imports, or reads through a module it imported, a ``_name``
    of a package it is not part of. (The MCU's app files are top-level modules on the
    board; they count as firmware_bridge.device.)"""
    found = []
    device = root / "firmware_bridge" / "device"
    for top in PACKAGES:
        for path in sorted((root / top).rglob("*.py")):
            me = _module_name(path, root)
            tree = ast.parse(path.read_text(), str(path))
            modules: dict[str, str] = {}  # local name -> module it stands for
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    source = node.module
                    if path.parent == device and not source.startswith(PACKAGES):
                        source = "firmware_bridge.device." + source
                    owner = _package_of(source, _is_package(source, root))
                    for alias in node.names:
                        if _private(alias.name) and not _inside(me, owner):
                            found.append("%s:%d imports %s.%s" % (
                                path.relative_to(root), node.lineno, source, alias.name))
                        if _is_package(source + "." + alias.name, root) or \
                                (root / (source.replace(".", "/") + "/" + alias.name
                                         + ".py")).exists():
                            modules[alias.asname or alias.name] = source + "." + alias.name
                elif isinstance(node, ast.Import):
                    for alias in node.names:
                        if alias.asname:
                            modules[alias.asname] = alias.name
                        elif alias.name.startswith(PACKAGES):
                            modules[alias.name] = alias.name
            for node in ast.walk(tree):
                if isinstance(node, ast.Attribute) and _private(node.attr):
                    target = _dotted(node.value)
                    if target in modules:
                        source = modules[target]
                        owner = _package_of(source, _is_package(source, root))
                        if not _inside(me, owner):
                            found.append("%s:%d reads %s.%s" % (
                                path.relative_to(root), node.lineno, source, node.attr))
    return found


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return None if head is None else head + "." + node.attr
    return None


def test_no_module_imports_another_packages_private_names() -> None:
    assert private_imports() == []


def test_the_walk_finds_a_private_import(tmp_path) -> None:
    """The check above can fail: a module outside agent.signature importing one of its
    private names, or reading one through the module, is reported."""
    pkg = tmp_path / "agent"
    (pkg / "signature").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "signature" / "__init__.py").write_text("_civil = 1\n")
    (pkg / "codec.py").write_text("from agent.signature import _civil\n"
                                  "import agent.signature as sig\nx = sig._civil\n"
                                  "from agent.signature import civil_date\n")
    (pkg / "signature" / "inner.py").write_text("from agent.signature import _civil\n")
    found = private_imports(tmp_path)
    assert found == ["agent/codec.py:1 imports agent.signature._civil",
                     "agent/codec.py:3 reads agent.signature._civil"]


def test_pymodbus_transaction_manager_still_has_what_the_adapter_writes(arun) -> None:
    """If pymodbus renames these, the transport's timeouts silently stop working: fail
    here instead (and see setup.cfg: the minor version is pinned)."""

    async def check() -> None:
        client = AsyncModbusTcpClient("127.0.0.1", port=1, timeout=1.0)
        try:
            ctx = client.ctx
            for name in ("count_until_disconnect", "max_until_disconnect", "comm_params"):
                assert hasattr(ctx, name), "pymodbus changed: client.ctx.%s is gone" % name
            assert hasattr(ctx.comm_params, "timeout_connect")
            ctx.count_until_disconnect = 0
            limit_one_request(client, 0.25)
            assert ctx.comm_params.timeout_connect == 0.25
            assert ctx.count_until_disconnect == ctx.max_until_disconnect > 0
        finally:
            client.close()

    arun(check())


def test_paho_can_still_drop_a_socket_at_once() -> None:
    """``close_socket_now`` is the one use of paho's ``_reset_sockets``: on a connected
    client it must leave no socket, without a DISCONNECT round trip."""
    assert callable(getattr(mqtt.Client, "_reset_sockets", None)), \
        "paho changed: Client._reset_sockets is gone"
    with MosquittoBroker() as broker:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="seam-test")
        client.connect(broker.host, broker.port, keepalive=10)
        try:
            assert client.socket() is not None
            close_socket_now(client)
            assert client.socket() is None
        finally:
            try:
                client.disconnect()
            except Exception:
                pass


def test_failure_kinds_are_one_enumeration() -> None:
    """Every failure a transport raises is a member of agent/failures.py; a misspelt kind
    is refused where it is made, not counted under a new name in a health payload."""
    assert set(ERROR_FLAGS) == set(Failure.ALL)
    assert TransportError(Failure.CRC, "x").kind == "crc"
    with pytest.raises(ValueError, match="not a failure kind"):
        TransportError("time-out", "x")


def test_pollers_and_the_serial_bridge_are_sources() -> None:
    """The runtime runs both through one protocol (agent/sources.py)."""
    from agent.bridge.source import BridgeSource
    from agent.modbus.poller import BusPoller
    from agent.sources import OnDemand, Source

    for cls in (BusPoller, BridgeSource):
        assert all(callable(getattr(cls, name, None)) for name in ("run", "stop")), cls
    assert issubclass(BusPoller, Source) and issubclass(BridgeSource, Source)
    assert issubclass(BusPoller, OnDemand) and not issubclass(BridgeSource, OnDemand)


def test_each_library_has_one_import_site_in_agent() -> None:
    """paho only in agent/publish/paho.py, pymodbus only in agent/modbus/transport.py,
    cbor2 only in agent/publish/codec.py."""
    sites: dict[str, set[str]] = {"paho": set(), "pymodbus": set(), "cbor2": set()}
    for path in sorted((ROOT / "agent").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in sites:
                    sites[top].add(path.relative_to(ROOT).as_posix())
    assert sites == {"paho": {"agent/publish/paho.py"},
                     "pymodbus": {"agent/modbus/transport.py"},
                     "cbor2": {"agent/publish/codec.py"}}
