"""Wiring only: clock, tasks, checkpoints, shutdown.

This is the one module that knows every stage; each stage's work is elsewhere (a meter's
pipeline in agent/meters.py, the checkpoint format in agent/statefile.py, the utility's
commands in agent/commands.py, what a bus source is in agent/sources.py). Data flows one
way:

    poller --RawPoll--> decode --Reading--> signature --Score--> policy --Event-->
    codec --Message--> outbox (SQLite) --> publisher --> broker

Every event is written to the outbox before anything is sent, so the publisher, the
broker or this process can die at any point without losing an alert. Learned detector
state (with the open telemetry slot) is checkpointed to ``state_dir`` (agent/statefile.py)
periodically, on stop, and at once whenever an alert changes state, so a restart never
re-raises an alert under a new id.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from pathlib import Path
from typing import Callable

from agent.clock import Clock
from agent.clockguard import CLOCK_FLOOR, ClockGuard
from agent.commands import Commands
from agent.config import Plan
from agent.healthlog import TransitionLog
from agent.meter_health import Health
from agent.meters import MeterPipeline
from agent.model import Event, RawPoll, Reading
from agent.plausibility import HINT as PROFILE_HINT
from agent.policy import Policy
from agent.publish.codec import Codec
from agent.publish.mqtt import Publisher
from agent.publish.outbox import HELD, Outbox, OutboxFull
from agent.signature import Detector
from agent.sources import Source
from agent.statefile import StateFile
from agent.status import write_status

log = logging.getLogger("loadwatch.runtime")

# Key of a meter's alert-policy state in the outbox (written with its alert events).
POLICY_KEY = "policy:%s"
# A meter that answers but whose last this many readings were all unusable (NaN, out of
# range, frozen, ...) is not "ok": it is reachable and useless.
BAD_DATA_RUN = 5
BAD_DATA_HINT = ("the meter answers but its values are not usable: check the profile (word "
                 "order, scale), the wiring, and `loadwatch read` of this meter")


def _log_failure(fut: asyncio.Future) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.error("checkpoint failed: %s", fut.exception())


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("loadwatch")
    except Exception:  # not installed as a distribution (e.g. run from a source tree)
        return "0+unknown"


class Agent:
    """The gateway agent: runs every bus of a Plan until ``request_stop()``."""

    def __init__(self, plan: Plan, clock: Clock | None = None):
        self.plan = plan
        self.clock = clock if clock is not None else Clock()
        self.statefile = StateFile(plan.state_dir)
        # QoS is decided in one place: the codec, from [broker] telemetry_qos/score_qos.
        self.codec = Codec(plan.broker.prefix, plan.site, plan.gateway,
                           plan.broker.telemetry_qos, plan.broker.score_qos,
                           score_topic=plan.broker.score_topic,
                           telemetry_encoding=plan.broker.telemetry_encoding)
        self.outbox: Outbox | None = None
        self.publisher: Publisher | None = None
        self.pipelines: dict[str, MeterPipeline] = {}
        self.health: dict[str, Health] = {}
        self.transitions = TransitionLog()
        self._listeners: list[Callable[[Event], None]] = []
        self._poll_listeners: list[Callable[[RawPoll, Reading | None, bool], None]] = []
        self._checkpoint_hooks: list[Callable[[], None]] = []
        self._pollers: dict[str, Source] = {}
        self._stop: asyncio.Event | None = None
        self._stop_requested = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()  # guards pipelines against the command thread
        # Serialises checkpoint writers: the periodic one runs on an executor thread while
        # an alert can trigger one on the loop thread; both use the same tmp file.
        self._checkpoint_lock = threading.Lock()
        self.started_at = time.time()
        self.commands = Commands(self, _version())
        self._build_pipelines(self.statefile.load().meters)

    # ----------------------------------------------------------------- state on disk

    def _build_pipelines(self, saved: dict[str, dict]) -> None:
        bridged = {m.id for b in self.plan.buses if b.kind == "bridge" for m in b.meters}
        for m in self.plan.meters:
            dset = self.plan.detector_settings(m.meter_class)
            pset = self.plan.policy_settings(m.meter_class)
            one = saved.get(m.id, {})
            detector = policy = None
            try:
                if "detector" in one:
                    detector = Detector.from_state(dset, one["detector"])
                if "policy" in one:
                    policy = Policy.from_state(m.id, pset, one["policy"])
            except (KeyError, TypeError, ValueError, IndexError, OverflowError) as e:
                log.error("state error: %s: meter %s does not fit its settings (%s); "
                          "starting it afresh (file copied aside)", self.statefile.path,
                          m.id, e)
                self.statefile.keep_aside(m.id)
                detector = policy = None
            pipeline = MeterPipeline(
                m, detector or Detector(dset), policy or Policy(m.id, pset),
                self.plan.telemetry_every_s, decides_alerts=m.id not in bridged,
                telemetry_quantities=self.plan.telemetry_quantities(m.meter_class))
            # Only the wall clock has a floor: a simulated one may replay 2013's traces.
            floor = float("-inf") if self.clock.simulated else CLOCK_FLOOR
            pipeline.clock_guard = ClockGuard(m.id, floor)
            if "clock" in one:
                try:
                    pipeline.clock_guard = ClockGuard.from_state(m.id, one["clock"], floor)
                except (TypeError, ValueError) as e:
                    log.warning("saved clock state of meter %s not used (%s)", m.id, e)
            if one.get("slot") is not None:
                try:
                    pipeline.restore_slot(one["slot"])
                except (KeyError, TypeError, ValueError) as e:
                    log.warning("saved telemetry slot of meter %s not used (%s)", m.id, e)
            self.pipelines[m.id] = pipeline
            self.health[m.id] = Health(m.id)

    def _rebuild_detector(self, meter: str) -> None:
        """A detector whose state went non-finite would score NaN for good: continue from
        its last good saved state (or afresh) instead. Caller holds ``_lock``."""
        p = self.pipelines[meter]
        dset = self.plan.detector_settings(p.plan.meter_class)
        good = self.statefile.last_good.get(meter, {}).get("detector")
        try:
            p.detector = Detector.from_state(dset, good) if good else Detector(dset)
        except (KeyError, TypeError, ValueError, IndexError, OverflowError):
            p.detector = Detector(dset)

    def checkpoint(self) -> None:
        """Save the learned state, then refresh the status page."""
        try:
            self.save_state()
        except OSError as e:
            log.error("could not save the learned state to %s: %s", self.statefile.path, e)
        self.write_status()
        self._run_checkpoint_hooks()

    def add_checkpoint_hook(self, fn: Callable[[], None]) -> None:
        """Something else that saves its own small state when the detectors do (the web
        page's chart rings); called after every checkpoint and once on stop."""
        self._checkpoint_hooks.append(fn)

    def _run_checkpoint_hooks(self) -> None:
        for fn in self._checkpoint_hooks:
            try:
                fn()
            except OSError as e:
                log.error("checkpoint hook failed: %s", e)

    def save_state(self) -> None:
        """Write all learned state atomically (tmp file, fsync, rename).

        The snapshot is taken under the checkpoint lock too, so an older snapshot can never
        overwrite a newer one."""
        with self._checkpoint_lock:
            with self._lock:
                if self.outbox is not None and self.outbox.held() == 0:
                    for p in self.pipelines.values():
                        p.alerts_held = False  # written since (by a retry)
                meters = {mid: p.saved_entry() for mid, p in self.pipelines.items()}
            refused = self.statefile.save(meters, self.clock.now())
            if refused:
                with self._lock:
                    for mid in refused:
                        self._rebuild_detector(mid)

    def status_snapshot(self, running: bool = True) -> dict:
        """What this agent sees right now: the document ``loadwatch status`` prints and
        the web page shows (one source, so the two never disagree)."""
        publisher, outbox = self.publisher, self.outbox
        return {
            "written": time.time(), "running": running, "version": _version(),
            "started": self.started_at,
            "site": self.plan.site, "gateway": self.plan.gateway,
            "checkpoint_every_s": self.plan.checkpoint_every_s,
            "clock_t": self.clock.now(),
            "broker": {"host": self.plan.broker.host, "port": self.plan.broker.port,
                       "username": self.plan.broker.username,
                       "password": self.plan.broker.describe()["password"],
                       "connected": bool(publisher is not None
                                         and publisher.connected.is_set()),
                       "last_error": publisher.last_error if publisher is not None else "",
                       "publish_latency": publisher.latency() if publisher is not None
                       else None},
            "outbox": outbox.stats() if outbox is not None else None,
            "buses": [{"name": name, "cycles": getattr(src, "cycles", 0),
                       "cycle_s": getattr(src, "cycle_s", None)}
                      for name, src in self._pollers.items()],
            "meters": self.snapshot(),
        }

    def write_status(self, running: bool = True) -> None:
        """The technician's page (``loadwatch status``): what this agent sees right now."""
        try:
            write_status(self.plan.state_dir, self.status_snapshot(running))
        except OSError as e:
            log.warning("could not write the status page: %s", e)

    # ----------------------------------------------------------------- event flow

    def add_poll_listener(self, fn: Callable[[RawPoll, Reading | None, bool], None]) -> None:
        """Observers of the bus (the rig's judge) see every poll after it went through its
        meter's pipeline: ``fn(raw, reading, learned)``, the reading it became (None for a
        meter without a pipeline) and whether the detector learned from it."""
        self._poll_listeners.append(fn)

    def add_listener(self, fn: Callable[[Event], None]) -> None:
        """Live views (the demo table, tests) see every event as it is queued."""
        self._listeners.append(fn)

    def open_outbox(self) -> Outbox:
        """Open the outbox and continue every meter's alert policy from the state written
        with its last alert event, when that is later than state.json's (a crash between
        the outbox write and the checkpoint must not make the restart decide the same
        event again under another id)."""
        self.outbox = Outbox(self.plan.outbox.path, self.plan.outbox.max_bytes)
        saved = self.outbox.saved_state()
        with self._lock:
            for mid, p in self.pipelines.items():
                text = saved.get(POLICY_KEY % mid)
                if text is None or not p.decides_alerts:
                    continue
                try:
                    policy = Policy.from_state(mid, self.plan.policy_settings(
                        p.plan.meter_class), json.loads(text))
                except (KeyError, TypeError, ValueError, IndexError) as e:
                    log.error("alert state of meter %s in the outbox is unusable (%s); "
                              "using state.json's", mid, e)
                    continue
                if policy.seq > p.policy.seq:
                    log.warning("meter %s: continuing its alert policy from the outbox "
                                "(event %d, state.json had %d)", mid, policy.seq,
                                p.policy.seq)
                    p.policy = policy
                    p.committed_policy = policy.state()
        return self.outbox

    def _store(self, events: list[Event]) -> bool:
        """Events into the outbox, each meter's policy state with its alert events, in one
        transaction (one fsync). False when a full disk left no room even in memory:
        nothing was kept and the caller undoes the decision."""
        if self.outbox is None:
            return True
        states = {}
        for ev in events:
            p = self.pipelines.get(ev.meter)
            if ev.is_alert and p is not None and p.decides_alerts:
                states[POLICY_KEY % ev.meter] = json.dumps(p.policy.state(), allow_nan=False)
        events = [ev for ev in events if self.codec.publishes(ev)]
        try:
            results = self.outbox.put_many([self.codec.event(ev) for ev in events], states)
        except OutboxFull as e:
            log.error("%s; the decision is undone and will be made again", e)
            return False
        for ev, result in zip(events, results):
            p = self.pipelines.get(ev.meter)
            if p is None or ev.kind not in ("raised", "updated", "cleared"):
                continue
            if result == HELD:
                p.alerts_held = True
            elif not p.alerts_held:
                p.committed_policy = p.policy.state()
        return True

    def _process(self, pipeline: MeterPipeline, fn: Callable[[], list[Event]]) -> None:
        """Run one pipeline step and store its events; undo the policy's decision when
        they could not be kept (a full disk with memory full too)."""
        with self._lock:
            before = pipeline.policy.state() if self.outbox is not None and \
                self.outbox.held() else None
            events = fn()
        if not events:
            return
        if not self._store(events):
            if before is not None:
                with self._lock:
                    pipeline.policy = Policy.from_state(
                        pipeline.plan.id, self.plan.policy_settings(pipeline.plan.meter_class),
                        before)
            return
        self._notify(events)

    def _emit(self, events: list[Event]) -> None:
        if not events or not self._store(events):
            return
        self._notify(events)

    def _notify(self, events: list[Event]) -> None:
        alert_changed = False
        for ev in events:
            alert_changed = alert_changed or ev.is_alert
            for fn in self._listeners:
                try:
                    fn(ev)
                except Exception:
                    log.exception("listener failed")
        if alert_changed:
            self._checkpoint_soon()
        if self.publisher is not None:
            self.publisher.wake()

    def _checkpoint_soon(self) -> None:
        """An alert changed: save the learned state now, but off the event loop, so the
        fsyncs of state.json do not stall every bus. A crash before it lands loses
        nothing: the alert's policy state went to disk with its events (``_store``, in the
        outbox's one transaction), and ``open_outbox`` continues from it on restart.
        Without a running loop (a caller driving the agent by hand) it saves at once."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.checkpoint()
            return
        loop.run_in_executor(None, self.checkpoint).add_done_callback(_log_failure)

    def on_poll(self, raw: RawPoll) -> None:
        pipeline = self.pipelines.get(raw.meter)
        reading, learned = None, False
        if pipeline is not None:
            before = pipeline.samples
            self._process(pipeline, lambda: pipeline.process_poll(raw))
            reading, learned = pipeline.last_reading, pipeline.samples > before
        for fn in self._poll_listeners:
            try:
                fn(raw, reading, learned)
            except Exception:
                log.exception("poll listener failed")

    def on_reading(self, reading: Reading) -> None:
        """A reading decoded elsewhere (the serial bridge) enters the same pipeline."""
        pipeline = self.pipelines.get(reading.meter)
        if pipeline is None:
            return
        self._process(pipeline, lambda: pipeline.process_reading(reading))

    def _queue(self, messages: list) -> None:
        """Messages made outside the event flow (Home Assistant discovery) go through the
        outbox like everything else; callable from the publisher's thread."""
        if self.outbox is not None and messages:
            try:
                self.outbox.put_many(messages)
            except OutboxFull as e:  # discovery is sent again at the next (re)connect
                log.error("%s; Home Assistant discovery not queued", e)
            if self.publisher is not None:
                self.publisher.wake()

    def on_event(self, event: Event) -> None:
        """An event decided elsewhere (an MCU behind the bridge) is published as is."""
        self._emit([event])

    def on_health(self, health: Health) -> None:
        """Publish a meter's health when agent/health.py says one is due (the state or its
        cause changed, or an hour passed: a quiet meter is not a dead gateway)."""
        pipeline = self.pipelines.get(health.meter)
        if pipeline is not None and pipeline.mismatch and health.state == "ok":
            health.set_problem("degraded", "profile_mismatch", pipeline.mismatch,
                               PROFILE_HINT)
        elif pipeline is not None and pipeline.bad_run >= BAD_DATA_RUN and \
                health.state == "ok":
            health.set_problem("degraded", "bad_data", "the last %d readings were all "
                               "unusable (%s)" % (pipeline.bad_run,
                                                  ",".join(pipeline.bad_quality)),
                               BAD_DATA_HINT)
        self.health[health.meter] = health
        self.transitions.observe(health)
        now = self.clock.now()
        if not health.due(now):
            return
        self._emit([Event("health", health.meter, now, health.event_id(now),
                          data=health.as_dict())])

    # ----------------------------------------------------------------- commands

    def on_command(self, name: str, args: dict) -> dict:
        """Read-only commands from the utility (called on the publisher's thread)."""
        return self.commands.answer(name, args)

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the buses run on, while ``run()`` runs."""
        return self._loop

    def source_of(self, meter: str) -> Source | None:
        """The source (bus poller or serial bridge) that reads ``meter``."""
        p = self.pipelines.get(meter)
        return None if p is None else self._pollers.get(p.plan.bus)

    def snapshot(self) -> list[dict]:
        with self._lock:
            out = [p.snapshot() for p in self.pipelines.values()]
        for row in out:
            h = self.health.get(row["meter"])
            row["health"] = h.state if h else "unknown"
            # Why a meter is not ok and what to check: the health payload's own words.
            row["health_reason"] = (h.reason or h.last_error) if h and h.state != "ok" else ""
            row["cause"] = h.cause if h else ""
            row["reason"] = h.reason if h else ""
            row["hint"] = h.hint if h else ""
            row["polls"] = h.polls if h else 0
            row["poll_errors"] = dict(h.errors) if h else {}
        return out

    # ----------------------------------------------------------------- lifecycle

    def request_stop(self) -> None:
        """Stop from any thread, also before ``run()`` got going (a Ctrl-C during start-up
        must not be lost)."""
        self._stop_requested = True
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    def _status_extra(self) -> dict:
        return {"version": _version(), "meters": len(self.pipelines)}

    def _make_sources(self) -> list:
        from agent.modbus.poller import BusPoller

        sources = []
        for bus in self.plan.buses:
            if bus.kind == "bridge":
                from agent.bridge.source import BridgeSource

                src = BridgeSource(bus, self.clock, self.on_reading, self.on_event,
                                   self.on_health)
            else:
                src = BusPoller(bus, self.clock, self.on_poll, self.on_health)
            self._pollers[bus.name] = src
            sources.append(src)
        return sources

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        if self._stop_requested:
            self._stop.set()
        Path(self.plan.state_dir).mkdir(parents=True, exist_ok=True)
        self.open_outbox()
        discovery = None
        if self.plan.homeassistant is not None:
            from agent.publish.homeassistant import Discovery

            discovery = Discovery(self.plan, self.codec,
                                  self.plan.homeassistant.discovery_prefix, _version())
        self.publisher = Publisher(self.plan.broker, self.outbox, self.codec,
                                   on_command=self.on_command,
                                   status_extra=self._status_extra,
                                   watch=discovery.watch(self._queue) if discovery else None)
        if discovery is not None:
            self._queue(discovery.messages())
        self.publisher.start()
        self.write_status()
        sources = self._make_sources()
        web = None
        tasks = [asyncio.create_task(src.run(), name="source-%s" % bus.name)
                 for bus, src in zip(self.plan.buses, sources)]
        tasks.append(asyncio.create_task(self._checkpoint_loop(), name="checkpoint"))
        stop_wait = asyncio.create_task(self._stop.wait(), name="stop-wait")
        try:
            if self.plan.web is not None:
                from agent.web.service import WebService

                web = WebService(self.plan.web, self)
                await web.start()  # an OSError (port taken) stops the agent cleanly
            done, _ = await asyncio.wait(tasks + [stop_wait],
                                         return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                if t is not stop_wait and t.exception() is not None:
                    raise t.exception()
        finally:
            for src in sources:
                src.stop()  # a poll in flight may swallow the cancel (see BusPoller.stop)
            for t in [*tasks, stop_wait]:
                t.cancel()
            await asyncio.gather(*tasks, stop_wait, return_exceptions=True)
            if web is not None:
                await web.close()
            await self._shutdown()

    async def _checkpoint_loop(self) -> None:
        while True:
            await self.clock.sleep(self.plan.checkpoint_every_s)
            if self.outbox is not None and self.outbox.held():
                self.outbox.retry()
            await asyncio.get_running_loop().run_in_executor(None, self.checkpoint)

    async def _shutdown(self) -> None:
        """Flush what can be flushed; what cannot stays in the outbox for next time."""
        try:
            self.save_state()
        except OSError as e:
            log.error("could not save detector state: %s", e)
        self._run_checkpoint_hooks()
        if self.publisher is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.publisher.stop, 5.0)
        # Again after the flush, so the page tells what is really left in the outbox.
        self.write_status(running=False)
        if self.outbox is not None:
            self.outbox.close()
