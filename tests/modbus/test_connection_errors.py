"""Connection errors say why (issue 13 item 3): refused, no such host, timed out
connecting, the serial errno, not a serial port; never "lost" for a connection that
never opened. Real sockets, a real pty, real device files."""

from __future__ import annotations

import os
import pty
import socket

import pytest

from agent.link import TransportError, serial_open_error
from agent.modbus.transport import Transport


async def _error(tr: Transport) -> str:
    with pytest.raises(TransportError) as info:
        await tr.read(1, 3, 0, 2)
    assert info.value.kind == "io"
    return str(info.value)


def test_serial_open_error_names_the_errno() -> None:
    assert "errno 2" in serial_open_error("/dev/ttyNOPE9")
    assert "is not a serial port (errno 25" in serial_open_error("/dev/null")
    master, slave = pty.openpty()
    try:
        assert serial_open_error(os.ttyname(slave)) == ""
    finally:
        os.close(master)
        os.close(slave)


def test_tcp_errors_say_refused_no_such_host_or_timed_out(arun) -> None:
    async def main() -> None:
        free = socket.socket()
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
        free.close()
        msg = await _error(Transport("tcp", host="127.0.0.1", port=port, timeout_s=0.5))
        assert "connection refused" in msg and "lost" not in msg, msg
        msg = await _error(Transport("tcp", host="no-such-host.invalid", port=502,
                                     timeout_s=0.5))
        assert "no such host 'no-such-host.invalid'" in msg, msg
        msg = await _error(Transport("rtu", port="/dev/null", timeout_s=0.2))
        assert "not a serial port" in msg, msg

    arun(main())


def test_a_listener_that_never_accepts_reads_as_timed_out_connecting(arun,
                                                                     black_hole) -> None:
    """A full accept queue drops SYNs, as a host that is powered off or firewalled
    does: the connect times out. Never reported as a lost connection."""

    async def main() -> None:
        msg = await _error(Transport("tcp", host="127.0.0.1", port=black_hole, timeout_s=0.5))
        assert "timed out connecting after 0.5 s" in msg and "lost" not in msg, msg

    arun(main())
