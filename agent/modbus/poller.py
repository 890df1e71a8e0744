"""One poller per bus: executes the Plan's read requests on schedule, forever.

The scheduler is protocol-neutral (DESIGN.md 10): a bus with ``protocol = "dlt645"``
gets a DL/T 645 transport (agent/dlt645/transport.py) instead of the Modbus one, and
everything below (the lock, retries, back-off, health) is the same for both; a transport
only has to offer ``fetch(meter, request, timeout)`` and raise ``TransportError``.

Rules (DESIGN.md 2):

* **One bus, one lock.** An RTU line (or an RTU-over-TCP gateway in front of one) carries
  one transaction at a time, so all its meters share one Transport and one lock. A Modbus
  TCP host serves requests in parallel: its meters poll concurrently over a small pool of
  connections (``per_host_limit``, 1 unless the config raises it).
* **A dead meter never stalls the others.** A request that times out is retried at most
  ``bus.retries`` times; a meter whose poll still fails goes into capped exponential
  back-off (agent/backoff.py) *alone*: it is skipped until its back-off expires, then
  probed with a single attempt and no retries. So a dead meter costs the bus at most one
  timeout per back-off period. Back-off is in real seconds (``clock.monotonic``), because
  it rations bus time, which does not speed up with a simulated clock.
* **The port can vanish.** An "io" failure (USB adapter unplugged, gateway rebooted) is a
  bus problem, not a meter problem: the connection is closed and re-opened with its own
  back-off, the meters report "down" meanwhile, and their own back-off is not advanced,
  so polling resumes on the first cycle after the port returns.
* Poll times come from ``clock.now()`` (possibly simulated and fast); protocol timeouts and
  ``pause_ms`` are real seconds.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import TYPE_CHECKING, Callable

from agent.backoff import Backoff
from agent.dlt645.transport import Dlt645Transport
from agent.failures import Failure
from agent.health import backs_off, retryable
from agent.link import TransportError
from agent.meter_health import Health
from agent.model import RawPoll

from .hints import failure_hint
from .transport import Transport

if TYPE_CHECKING:  # pragma: no cover
    from agent.clock import Clock
    from agent.config import BusPlan, MeterPlan

log = logging.getLogger("loadwatch.poller")

# Back-off of a failing meter starts at this many real seconds (or one bus timeout, if
# longer) and doubles up to the bus's backoff_max_s.
BACKOFF_INITIAL_S = 2.0
# The longest the scheduler sleeps in one go, so a slow clock never hides a due meter.
MAX_IDLE_S = 1.0


class MeterState:
    """What the poller remembers about one meter between polls."""

    def __init__(self, plan: MeterPlan, backoff: Backoff):
        self.plan = plan
        self.backoff = backoff
        self.next_due = 0.0  # clock time of the next scheduled poll
        self.retry_at = 0.0  # monotonic time before which a failed meter is skipped
        self.health = Health(plan.id)
        self.last_poll_s: float | None = None  # wall seconds the last poll took


def _timeout_for(bus: BusPlan, meter: MeterPlan) -> float:
    q = meter.quirks.timeout_ms
    return q / 1000.0 if q else bus.timeout_s


class BusPoller:
    """Polls every meter of one bus; ``await run()`` until cancelled."""

    def __init__(self, bus: BusPlan, clock: Clock, on_poll: Callable[[RawPoll], None],
                 on_health: Callable[[Health], None]):
        self.bus = bus
        self.clock = clock
        self.on_poll = on_poll
        self.on_health = on_health
        initial = max(BACKOFF_INITIAL_S, bus.timeout_s)
        maximum = max(initial, bus.backoff_max_s)
        self.meters: dict[str, MeterState] = {
            m.id: MeterState(m, Backoff(initial, maximum, seed=i + 1))
            for i, m in enumerate(bus.meters)}
        self.shared = bus.kind in ("rtu", "rtu-over-tcp")
        n_conn = 1 if self.shared else max(1, min(bus.per_host_limit, len(bus.meters)))
        self.transports = [self._make_transport() for _ in range(n_conn)]
        self._pool: asyncio.Queue | None = None
        self._lock: asyncio.Lock | None = None
        self._conn_backoff = Backoff(0.5, max(0.5, min(30.0, bus.backoff_max_s)), seed=99)
        self._conn_retry_at = 0.0
        self._conn_error = ""  # why the connection last failed, for the meters' health
        self.requests = 0
        self.failures = 0
        self.cycles = 0
        self._stopped = False  # set when run() ends: every loop and delivery stops
        self._last_cycle_s: float | None = None

    @property
    def cycle_s(self) -> float | None:
        """Wall seconds the last sweep of the bus took (None before the first): on a
        shared RTU bus the whole sweep; on TCP, where meters poll concurrently, the
        slowest meter's last poll."""
        if self.shared or self._last_cycle_s is not None:
            return self._last_cycle_s
        polls = [st.last_poll_s for st in self.meters.values() if st.last_poll_s is not None]
        return max(polls) if polls else None

    def _make_transport(self) -> Transport | Dlt645Transport:
        b = self.bus
        if b.protocol == "dlt645":
            return Dlt645Transport(b.kind, host=b.host, port=b.port, baud=b.baud,
                                   parity=b.parity, stopbits=b.stopbits,
                                   bytesize=b.bytesize, timeout_s=b.timeout_s)
        return Transport(b.kind, host=b.host, port=b.port, baud=b.baud, parity=b.parity,
                         stopbits=b.stopbits, bytesize=b.bytesize, timeout_s=b.timeout_s)

    def _resources(self) -> tuple[asyncio.Lock, asyncio.Queue]:
        if self._lock is None or self._pool is None:
            self._lock = asyncio.Lock()
            self._pool = asyncio.Queue()
            for t in self.transports:
                self._pool.put_nowait(t)
        return self._lock, self._pool

    @property
    def bytes_out(self) -> int:
        return sum(t.bytes_out for t in self.transports)

    @property
    def bytes_in(self) -> int:
        return sum(t.bytes_in for t in self.transports)

    def health(self, meter_id: str) -> Health:
        return self.meters[meter_id].health

    # ------------------------------------------------------------------ one poll

    async def _read_all(self, transport: Transport | Dlt645Transport, st: MeterState, retries: int,
                        t: float) -> tuple[RawPoll, int]:
        """Every request of one meter; returns the poll and how many retries it took."""
        plan = st.plan
        timeout = _timeout_for(self.bus, plan)
        pause = plan.quirks.pause_ms / 1000.0
        blocks: list = []  # RawBlock (Modbus) or RawItem (DL/T 645)
        used = 0
        loop = asyncio.get_running_loop()
        for n, req in enumerate(plan.requests):
            if n and pause:
                await asyncio.sleep(pause)
            attempt = 0
            while True:
                if not transport.connected and loop.time() < self._conn_retry_at:
                    # Keep the real reason (refused, no such host, errno) in front: it is
                    # what the health payload, the log and `status` show.
                    return RawPoll(plan.id, t, blocks, "%s (reconnecting in %.1f s)" % (
                        self._conn_error or "%s is unreachable" % transport.describe(),
                        self._conn_retry_at - loop.time()), Failure.IO), used
                self.requests += 1
                try:
                    block = await transport.fetch(plan, req, timeout)
                except TransportError as e:
                    self.failures += 1
                    if e.kind == Failure.IO:
                        self._conn_retry_at = loop.time() + self._conn_backoff.failure()
                        self._conn_error = str(e)
                        return RawPoll(plan.id, t, blocks, str(e), Failure.IO), used
                    if attempt < retries and retryable(e.kind):
                        attempt += 1
                        used += 1
                        continue
                    return RawPoll(plan.id, t, blocks, str(e), e.kind, e.exception_code), used
                self._conn_backoff.success()
                blocks.append(block)
                break
        return RawPoll(plan.id, t, blocks), used

    def _account(self, st: MeterState, raw: RawPoll, retried: int) -> None:
        """The poll in the meter's health (agent/health.py: the rules the MCU uses too),
        with what to check, and the meter's back-off when it did not answer usefully."""
        serial = self.bus.kind == "rtu"
        delay = 0.0
        hint = ""
        if raw.ok:
            st.backoff.success()
            st.retry_at = 0.0
            if retried:
                hint = failure_hint("retried", serial=serial)
        else:
            hint = failure_hint(raw.error_kind, raw.exception_code, serial, self.bus.protocol)
            if raw.error_kind == Failure.IO:
                # The port's own back-off decides when anyone on it is tried again.
                delay = max(0.0, self._conn_retry_at - asyncio.get_running_loop().time())
            elif backs_off(raw.error_kind):
                delay = st.backoff.failure()
                st.retry_at = self.clock.monotonic() + delay
        st.health.record(raw.t, raw.error_kind, raw.error, retried, delay, hint)

    async def _poll_meter(self, transport: Transport | Dlt645Transport, st: MeterState) -> RawPoll:
        t = self.clock.now()
        started = time.monotonic()
        # A meter in back-off gets one probe, without retries.
        retries = 0 if st.backoff.failures else self.bus.retries
        raw, retried = await self._read_all(transport, st, retries, t)
        st.last_poll_s = time.monotonic() - started
        self._account(st, raw, retried)
        return raw

    def _deliver(self, st: MeterState, raw: RawPoll) -> None:
        if self._stopped:
            return  # a read that finished after stop: its receivers may be closed
        try:
            self.on_poll(raw)
        except Exception:
            log.exception("on_poll failed for meter %s", st.plan.id)
        try:
            self.on_health(st.health)
        except Exception:
            log.exception("on_health failed for meter %s", st.plan.id)

    async def poll_now(self, meter_id: str) -> RawPoll:
        """Read one meter at once (the ``read`` command); not fed to on_poll."""
        st = self.meters[meter_id]
        lock, pool = self._resources()
        if self.shared:
            async with lock:
                raw, _ = await self._read_all(self.transports[0], st, self.bus.retries,
                                              self.clock.now())
                return raw
        transport = await pool.get()
        try:
            raw, _ = await self._read_all(transport, st, self.bus.retries, self.clock.now())
            return raw
        finally:
            pool.put_nowait(transport)

    # ------------------------------------------------------------------ schedules

    @staticmethod
    def _due(st: MeterState, now: float) -> bool:
        """Due now. A due time more than one interval ahead means the clock was stepped
        back (NTP, an RTC reset): poll now rather than wait for the old time to come."""
        return st.next_due <= now or st.next_due - now > st.plan.poll_s

    def _advance(self, st: MeterState, now: float) -> None:
        poll_s = st.plan.poll_s
        if st.next_due - now > poll_s:  # the clock went back: schedule from now
            st.next_due = now
        if st.next_due <= now:
            st.next_due += poll_s * (math.floor((now - st.next_due) / poll_s) + 1)

    def _sleep_s(self, states: list[MeterState]) -> float:
        now = self.clock.now()
        mono = self.clock.monotonic()
        waits = []
        for st in states:
            real = 0.0 if self._due(st, now) else self.clock.real_seconds(st.next_due - now)
            waits.append(max(real, st.retry_at - mono))
        return max(0.0, min(min(waits, default=MAX_IDLE_S), MAX_IDLE_S))

    async def run_cycle(self) -> list[RawPoll]:
        """Poll every meter that is due now (and not backing off), in bus order, once.

        On a shared bus this is one sweep under the bus lock; on TCP the meters run
        concurrently within the per-host limit. Used by ``run()`` and by benchmarks.
        """
        now = self.clock.now()
        mono = self.clock.monotonic()
        started = time.monotonic()
        due = [st for st in self.meters.values()
               if self._due(st, now) and st.retry_at <= mono]
        lock, pool = self._resources()
        out: list[RawPoll] = []
        if self.shared:
            transport = self.transports[0]
            for st in due:
                if self._stopped:
                    break
                async with lock:
                    raw = await self._poll_meter(transport, st)
                self._advance(st, now)
                self._deliver(st, raw)
                out.append(raw)
        else:
            out = list(await asyncio.gather(*(self._poll_pooled(pool, st, now)
                                              for st in due)))
        self.cycles += 1
        if due:
            self._last_cycle_s = time.monotonic() - started
        return out

    def stop(self) -> None:
        """End ``run()`` at the next turn of every loop, whatever a read in flight does.

        The owner calls this before cancelling the task: on CPython 3.10/3.11
        ``asyncio.wait_for`` (inside pymodbus) loses a cancellation that lands as the reply
        arrives (cpython issue #86296, fixed in 3.12), and a busy RTU bus always has a reply
        arriving, so a cancel alone can leave the bus loop polling forever and its owner
        waiting for it.
        """
        self._stopped = True

    async def run(self) -> None:
        """Poll forever, each meter on its own interval, until cancelled or stopped."""
        states = list(self.meters.values())
        now = self.clock.now()
        for st in states:
            st.next_due = now
        self._stopped = False
        tasks: list[asyncio.Task] = []
        try:
            if self.shared:
                while not self._stopped:
                    await self.run_cycle()
                    await asyncio.sleep(self._sleep_s(states))
            else:
                tasks = [asyncio.create_task(self._meter_loop(st), name="poll-%s" % st.plan.id)
                         for st in states]
                await asyncio.gather(*tasks)
        finally:
            # pymodbus can turn a cancellation inside a read into an I/O error, so a loop
            # may not see its CancelledError: the flag stops every loop at its next turn,
            # and the tasks are awaited so none outlives the poller.
            self._stopped = True
            for t in tasks:
                t.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            self.close()

    async def _meter_loop(self, st: MeterState) -> None:
        """TCP: each meter on its own schedule; the pool bounds concurrency per host."""
        _, pool = self._resources()
        while not self._stopped:
            now = self.clock.now()
            if self._due(st, now) and st.retry_at <= self.clock.monotonic():
                await self._poll_pooled(pool, st, now)
            await asyncio.sleep(self._sleep_s([st]))

    async def _poll_pooled(self, pool: asyncio.Queue, st: MeterState, now: float) -> RawPoll:
        """One TCP poll on a connection borrowed from the host's pool (its size is the
        per-host limit), then schedule the meter's next poll and hand the result on."""
        transport = await pool.get()
        try:
            raw = await self._poll_meter(transport, st)
        finally:
            pool.put_nowait(transport)
        self._advance(st, now)
        self._deliver(st, raw)
        return raw

    def close(self) -> None:
        for t in self.transports:
            t.close()
