"""Byte-exact request frames for every profile, as they leave the transport.

The transport (pymodbus underneath) talks RTU framing over a TCP socket to a recorder that
keeps every byte and answers with zeros; the frames must be exactly
``unit, fc, address (big-endian), count (big-endian), CRC-16 (low byte first)`` for every
read the planner made, in order. Golden literals pin the common plans.
"""

from __future__ import annotations

import asyncio
import struct

import pytest
from tcpkit import LoopbackServer

from agent.config import DEFAULT_QUANTITIES
from agent.modbus.blocks import plan_reads
from agent.modbus.transport import Transport
from agent.profiles import available_profiles, load_profile
from hil.rs485 import with_crc

GOLDEN = {
    # profile -> frames of the default plan (DEFAULT_QUANTITIES) for unit 1, hex
    "sdm630": ["01 04 00 2a 00 20 d0 1a"],
    "sdm120": ["01 04 00 00 00 20 f1 d2", "01 04 00 46 00 04 10 1c"],
    "em24": ["01 04 00 28 00 02 f1 c3", "01 04 00 35 00 0f a0 00"],
}


class Recorder(LoopbackServer):
    """A TCP peer that records RTU requests and answers each with zero registers."""

    def __init__(self) -> None:
        super().__init__()
        self.frames: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        while True:
            frame = await reader.readexactly(8)
            self.frames.append(frame)
            unit, fc, _addr, count = struct.unpack(">BBHH", frame[:6])
            writer.write(with_crc(bytes((unit, fc, 2 * count)) + bytes(2 * count)))
            await writer.drain()


def test_known_vector() -> None:
    # The classic "read V L1 of an SDM at unit 1" frame, as published in many guides.
    assert with_crc(bytes.fromhex("010400000002")).hex(" ") == "01 04 00 00 00 02 71 cb"


@pytest.mark.parametrize("name", available_profiles("modbus"))
def test_frames_for_every_profile(arun, name: str) -> None:
    profile = load_profile(name)
    q = profile.quirks
    default = [profile.quantities[n] for n in DEFAULT_QUANTITIES if n in profile.quantities]
    plans = {"default": plan_reads(default, q.max_gap, q.max_registers),
             "all": plan_reads(profile.quantities.values(), q.max_gap, q.max_registers)}

    async def main() -> list[bytes]:
        rec = Recorder()
        await rec.start()
        tr = Transport("rtu-over-tcp", host="127.0.0.1", port=rec.port, timeout_s=1.0)
        try:
            for reqs in plans.values():
                for r in reqs:
                    regs = await tr.read(1, r.fc, r.address, r.count)
                    assert regs == [0] * r.count
        finally:
            tr.close()
            await rec.stop()
        return rec.frames

    frames = arun(main())
    expected = [with_crc(struct.pack(">BBHH", 1, r.fc, r.address, r.count))
                for reqs in plans.values() for r in reqs]
    assert frames == expected
    if name in GOLDEN:
        n = len(GOLDEN[name])
        assert [f.hex(" ") for f in frames[:n]] == GOLDEN[name]
