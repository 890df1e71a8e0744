"""The agent's end of the serial bridge: a gateway MCU as a source, like a bus poller.

``loadwatch run`` creates one ``BridgeSource`` per ``kind = "bridge"`` bus (runtime.py).
It reads frames (agent/bridge/framing.py) from the serial port and, per record:

* a reading (``{"k": "r"}``) -> ``Reading`` -> ``on_reading``: the agent's own pipeline
  (telemetry, score, detector, policy) as if it had polled the meter itself;
* an alert event the MCU decided (``{"k": "e"}``) -> ``Event`` -> ``on_event``: published
  as is. The MCU runs the same core and policy on the same readings, so its event ids
  match the agent's and subscribers drop the second copy by ``id`` (DESIGN.md 6);
* an MCU health record -> ``Health`` -> ``on_health``.

A frame is acknowledged only after its records went through the callbacks, which write
to the outbox before returning: an ack means "durable on the host", the same guarantee
the outbox gives the agent's own events. A corrupt frame is answered with a NAK (the MCU
retransmits at once); a duplicate (our ack was lost) is acked again and not delivered.
The ack of the MCU's hello carries the host's clock (``{"t": ...}``): a board has no
calendar time at power-up. If the port disappears (USB unplugged, MCU reset) the source
reopens it with back-off.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Callable

import serial

from agent.backoff import Backoff
from agent.bridge.framing import T_ACK, T_HELLO, T_NAK, FrameReader, Receiver, encode
from agent.meter_health import Health
from agent.model import ALERT_KINDS, Event, Reading

log = logging.getLogger("loadwatch.bridge")


class BridgeSource:
    """Frames from one MCU on one serial port -> readings, events, health."""

    def __init__(self, bus: object, clock: object, on_reading: Callable[[Reading], None],
                 on_event: Callable[[Event], None], on_health: Callable[[Health], None]):
        self.bus = bus
        self.clock = clock
        self.on_reading = on_reading
        self.on_event = on_event
        self.on_health = on_health
        self.meters = {m.id for m in getattr(bus, "meters", [])}
        self.health: dict[str, Health] = {}
        self.reader = FrameReader()
        self.receiver = Receiver()
        self.stats = {"frames": 0, "corrupt": 0, "naks": 0, "duplicates": 0, "readings": 0,
                      "events": 0, "health": 0, "hellos": 0, "unknown_meter": 0,
                      "bad_records": 0, "opens": 0}
        self.last_hello: dict | None = None
        self._serial: serial.Serial | None = None

    # ------------------------------------------------------------------ the port

    def _open(self) -> serial.Serial:
        b = self.bus
        return serial.Serial(b.port, baudrate=b.baud, parity=b.parity, stopbits=b.stopbits,
                             bytesize=b.bytesize, timeout=0, write_timeout=1.0)

    def stop(self) -> None:
        """Nothing to do: the link's loop is pure asyncio, so cancelling ``run()`` ends it
        (BusPoller needs a flag here; the agent stops every source the same way)."""

    async def run(self) -> None:
        """Serve the link until cancelled, reopening the port after errors."""
        backoff = Backoff(0.5, max(1.0, float(getattr(self.bus, "backoff_max_s", 30.0))))
        while True:
            try:
                ser = self._open()
            except (serial.SerialException, OSError) as e:
                delay = backoff.failure()
                log.warning("bridge %s: cannot open %s (%s); retry in %.1fs",
                            self.bus.name, self.bus.port, e, delay)
                await asyncio.sleep(delay)
                continue
            backoff.success()
            self.stats["opens"] += 1
            self._serial = ser
            try:
                await self._serve(ser)
            except (serial.SerialException, OSError) as e:
                log.warning("bridge %s: link error (%s); reopening", self.bus.name, e)
            finally:
                self._serial = None
                with contextlib.suppress(Exception):
                    ser.close()
            await asyncio.sleep(backoff.failure())

    async def _serve(self, ser: serial.Serial) -> None:
        loop = asyncio.get_running_loop()
        readable = asyncio.Event()
        fd = ser.fileno()
        loop.add_reader(fd, readable.set)
        try:
            while True:
                await readable.wait()
                readable.clear()
                data = ser.read(65536)
                if data:
                    self.feed(data, ser.write)
        finally:
            loop.remove_reader(fd)

    # ------------------------------------------------------------------ frames

    def feed(self, data: bytes, write: Callable[[bytes], object]) -> None:
        """Decode ``data``; deliver new records; ack/nak through ``write``."""
        frames = self.reader.feed(data)
        if self.reader.corrupt_seen:
            self.reader.corrupt_seen = False
            self.stats["corrupt"] = self.reader.corrupt
            self.stats["naks"] += 1
            log.info("bridge %s: corrupt frame rejected (NAK)", self.bus.name)
            write(encode(T_NAK, max(self.receiver.last_seq, 0)))
        for ftype, seq, payload in frames:
            self.stats["frames"] += 1
            deliver, reply = self.receiver.accept(ftype, seq)
            if ftype == T_HELLO:
                # The hello's ack carries our clock: the MCU has no calendar time at boot.
                reply = encode(T_ACK, seq, json.dumps({"t": self.clock.now()}).encode())
            if deliver:
                self._deliver(ftype, payload)
            elif reply:
                self.stats["duplicates"] += 1
            if reply:
                write(reply)

    def _deliver(self, ftype: int, payload: bytes) -> None:
        try:
            body = json.loads(payload)
        except ValueError:
            # The CRC was good, so retransmitting would send the same bytes: count it,
            # ack it, and let the log say the firmware is broken.
            self.stats["bad_records"] += 1
            log.error("bridge %s: frame with a valid CRC but no JSON: %r", self.bus.name,
                      payload[:80])
            return
        if ftype == T_HELLO:
            self.stats["hellos"] += 1
            self.last_hello = body if isinstance(body, dict) else {"raw": body}
            log.info("bridge %s: MCU hello %s", self.bus.name, self.last_hello)
            if self.last_hello.get("float_bits") == 32:
                log.warning("bridge %s: the MCU runs MicroPython with 32-bit floats; its "
                            "alerts will not match this agent's (see README, firmware)",
                            self.bus.name)
            return
        for rec in body if isinstance(body, list) else [body]:
            try:
                self._record(rec)
            except (KeyError, TypeError, ValueError) as e:
                self.stats["bad_records"] += 1
                log.error("bridge %s: bad record %r (%s)", self.bus.name, rec, e)

    def _record(self, rec: dict) -> None:
        kind = rec["k"]
        meter = str(rec["m"])
        if self.meters and meter not in self.meters:
            self.stats["unknown_meter"] += 1
            return
        if kind == "r":
            values = {str(k): float(v) for k, v in rec["v"].items()}
            self.stats["readings"] += 1
            self.on_reading(Reading(meter, float(rec["t"]), values, int(rec["q"])))
        elif kind == "e" and rec["kind"] == "health":
            self.stats["health"] += 1
            h = self.health.get(meter)
            if h is None:
                h = self.health[meter] = Health(meter)
            self.on_health(_health(h, float(rec["t"]), rec.get("d") or {}))
        elif kind == "e" and rec["kind"] in ALERT_KINDS:
            self.stats["events"] += 1
            self.on_event(Event(rec["kind"], meter, float(rec["t"]), str(rec["id"]),
                                score=float(rec.get("s", 0.0)), evidence=rec.get("ev") or {},
                                alert_id=str(rec.get("a", "")), data=rec.get("d") or {}))
        else:
            raise ValueError("unknown record kind %r" % (kind,))


def _health(h: Health, t: float, d: dict) -> Health:
    """The device's health report into the meter's Health (kept per meter, so the
    agent's refresh rule sees what it last published)."""
    h.t = t
    h.state = str(d.get("state", "ok"))
    h.last_success = float(d.get("last_success", 0.0))
    h.last_error = str(d.get("last_error", ""))
    h.polls = int(d.get("polls", 0))
    h.errors = {str(k): int(v) for k, v in (d.get("errors") or {}).items()}
    h.consecutive_failures = int(d.get("consecutive_failures", 0))
    h.backoff_s = float(d.get("backoff_s", 0.0))
    if h.state != "ok":  # the MCU reports the failure's text; that is the reason
        h.cause = str(d.get("cause", ""))
        h.reason = str(d.get("reason", "")) or h.last_error
        h.hint = str(d.get("hint", ""))
    else:
        h.set_ok()
    return h
