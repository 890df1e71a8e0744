"""The RS-485 link emulator: timing against baud arithmetic, half-duplex, faults, stats.

Both ends are real ptys opened the way a master and a device open them; the test talks
raw bytes so that it checks the emulator, not pymodbus.
"""

from __future__ import annotations

import asyncio
import os
import struct
import time

import pytest

from hil.rs485 import LinkEmulator, bits_per_char, crc16, with_crc


def test_crc16_known_vector() -> None:
    # "01 04 00 00 00 02" -> CRC 0xCB71, sent 71 CB (the classic SDM read of V L1).
    assert crc16(bytes.fromhex("010400000002")) == 0xCB71
    assert with_crc(bytes.fromhex("010400000002")).hex() == "01040000000271cb"
    assert bits_per_char(8, "N", 1) == 10 and bits_per_char(8, "E", 1) == 11


class Port:
    """A raw non-blocking pty end with an async exact read."""

    def __init__(self, path: str):
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        import tty

        tty.setraw(self.fd)
        self.buf = b""

    def write(self, data: bytes) -> None:
        os.write(self.fd, data)

    async def read(self, n: int, timeout: float = 2.0) -> bytes:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.buf) < n:
            fut = loop.create_future()
            loop.add_reader(self.fd, lambda f=fut: f.done() or f.set_result(None))
            try:
                await asyncio.wait_for(fut, max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                break
            finally:
                loop.remove_reader(self.fd)
            try:
                self.buf += os.read(self.fd, 4096)
            except (BlockingIOError, OSError):
                pass
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def close(self) -> None:
        os.close(self.fd)


REQUEST = with_crc(struct.pack(">BBHH", 1, 4, 0, 120))
REPLY = with_crc(bytes((1, 4, 240)) + bytes(range(240)))


@pytest.mark.serial  # wall-clock timing: run alone, after the parallel part
@pytest.mark.parametrize("baud,parity", [(9600, "N"), (19200, "E")])
def test_transaction_timing_matches_baud_arithmetic(arun, baud: int, parity: str) -> None:
    async def main() -> None:
        link = LinkEmulator(baud=baud, parity=parity)
        await link.start()
        master, device = Port(link.master_port), Port(link.device_port)
        try:
            # Warm up (first wake-ups of the loop and the ptys), then leave the wire idle.
            master.write(REQUEST)
            await device.read(len(REQUEST))
            device.write(REPLY)
            await master.read(len(REPLY))
            char = link.char_time
            assert char == pytest.approx(bits_per_char(8, parity, 1) / baud)
            want_req = len(REQUEST) * char
            want_all = want_req + link.turnaround + len(REPLY) * char
            # Best of seven, so that a loaded machine's scheduling hiccup is not blamed on
            # the emulator; within 10% of the arithmetic (plus 2 ms of scheduling slack).
            best = None
            for _ in range(7):
                await asyncio.sleep(0.02)
                link.reset_stats()
                t0 = time.monotonic()
                master.write(REQUEST)
                got = await device.read(len(REQUEST))
                t_req = time.monotonic() - t0
                assert got == REQUEST
                device.write(REPLY)
                got = await master.read(len(REPLY))
                t_all = time.monotonic() - t0
                assert got == REPLY
                err = max(abs(t_req - want_req) / want_req, abs(t_all - want_all) / want_all)
                if best is None or err < best[0]:
                    best = (err, t_req, t_all, link.stats())
            assert best is not None
            _, t_req, t_all, st = best
            assert abs(t_req - want_req) <= 0.1 * want_req + 0.002, (t_req, want_req)
            assert abs(t_all - want_all) <= 0.1 * want_all + 0.002, (t_all, want_all)
            assert st["frames"] == 2 and st["bytes"] == len(REQUEST) + len(REPLY)
            assert st["busy_s"] == pytest.approx((len(REQUEST) + len(REPLY)) * char)
            assert 0.5 < st["utilisation"] <= 1.0
        finally:
            master.close()
            device.close()
            await link.stop()

    arun(main())


@pytest.mark.serial  # wall-clock timing: run alone, after the parallel part
def test_half_duplex_and_three_and_a_half_char_gap(arun) -> None:
    """Two requests written back to back leave the wire 3.5 characters apart."""

    async def main() -> None:
        link = LinkEmulator(baud=9600)
        await link.start()
        master, device = Port(link.master_port), Port(link.device_port)
        try:
            master.write(REQUEST)  # warm up
            await device.read(len(REQUEST))
            want = 2 * len(REQUEST) * link.char_time + link.gap_time
            took = []
            for _ in range(7):  # best of seven on a loaded machine
                await asyncio.sleep(0.02)
                t0 = time.monotonic()
                master.write(REQUEST + REQUEST)
                assert await device.read(2 * len(REQUEST)) == REQUEST + REQUEST
                took.append(time.monotonic() - t0)
            best = min(took, key=lambda x: abs(x - want))
            assert abs(best - want) <= 0.1 * want + 0.002, (took, want)
        finally:
            master.close()
            device.close()
            await link.stop()

    arun(main())


def test_faults_silent_exception_crc_drop_slow(arun) -> None:
    async def main() -> None:
        link = LinkEmulator(baud=38400, seed=3)
        await link.start()
        master, device = Port(link.master_port), Port(link.device_port)
        try:
            # Silent unit: the device never sees the request.
            link.set_fault("silent", unit=1, on=True)
            master.write(REQUEST)
            assert await device.read(1, timeout=0.1) == b""
            link.set_fault("silent", unit=1, on=False)
            # Exception made by the link on the unit's behalf, with a valid CRC.
            link.set_fault("exception", unit=1, code=2, rate=1.0)
            master.write(REQUEST)
            reply = await master.read(5)
            assert reply == with_crc(bytes((1, 0x84, 2)))
            assert await device.read(1, timeout=0.05) == b""
            link.set_fault("exception", unit=1, on=False)
            # Corrupted CRC on replies.
            link.set_fault("crc", rate=1.0)
            master.write(REQUEST)
            assert await device.read(len(REQUEST)) == REQUEST
            device.write(REPLY)
            bad = await master.read(len(REPLY))
            assert len(bad) == len(REPLY) and bad != REPLY and bad[:-2] == REPLY[:-2]
            link.set_fault("crc", on=False)
            # Dropped frames.
            link.set_fault("drop", rate=1.0)
            master.write(REQUEST)
            assert await device.read(1, timeout=0.1) == b""
            link.set_fault("drop", on=False)
            # Slow unit: the reply starts delay_ms after the request.
            link.set_fault("slow", unit=1, delay_ms=80)
            t0 = time.monotonic()
            master.write(REQUEST)
            await device.read(len(REQUEST))
            device.write(with_crc(bytes((1, 4, 2, 0, 1))))
            assert len(await master.read(7)) == 7
            assert time.monotonic() - t0 >= 0.08
            st = link.stats()
            assert st["corrupted"] == 1 and st["dropped"] == 1 and st["exceptions"] == 1
        finally:
            master.close()
            device.close()
            await link.stop()

    arun(main())


def test_bus_vanishes_and_returns_at_the_same_path(arun) -> None:
    async def main() -> None:
        link = LinkEmulator(baud=38400)
        await link.start()
        device = Port(link.device_port)
        try:
            assert os.path.exists(link.master_port)
            link.schedule(0.05, "gone", on=True)
            await asyncio.sleep(0.1)
            assert not os.path.exists(link.master_port)
            link.set_fault("gone", on=False)
            assert os.path.exists(link.master_port)
            master = Port(link.master_port)
            master.write(REQUEST)
            assert await device.read(len(REQUEST)) == REQUEST
            master.close()
        finally:
            device.close()
            await link.stop()
        assert not os.path.exists(link.master_port)

    arun(main())
