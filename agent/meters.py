"""The agent's per-meter pipelines: the shared pipeline (agent/pipeline.py, which the MCU
runs too) with what only the agent has: the meter's plan and decoder (Modbus or DL/T 645),
RawPolls and Readings as values, the gateway clock's guard, the profile check, the
checkpoint entry and the status row.
"""

from __future__ import annotations

import agent.pipeline
from agent.clockguard import ACCEPTED, HOLD, ClockGuard
from agent.config import MeterPlan
from agent.decode import Decoder
from agent.model import Event, RawPoll, Reading, quality_names
from agent.plausibility import ProfileCheck
from agent.policy import Policy
from agent.signature import Detector


class MeterPipeline(agent.pipeline.MeterPipeline):
    """The shared per-meter pipeline (agent/pipeline.py, the MCU runs the same), plus what
    only the agent needs: the meter's plan and decoder (Modbus or DL/T 645), RawPolls and
    Readings as values, the profile check, the checkpoint entry and the status row."""

    def __init__(self, plan: MeterPlan, detector: Detector, policy: Policy,
                 telemetry_s: float, decides_alerts: bool = True,
                 telemetry_quantities: tuple[str, ...] | None = None):
        self.decoder = Decoder(plan)
        super().__init__(self.decoder.fields, detector, policy, telemetry_s,
                         frozen_s=self.decoder.frozen_s, decides_alerts=decides_alerts,
                         poll_s=plan.poll_s, unit=plan.unit,
                         telemetry_quantities=telemetry_quantities)
        self.plan = plan
        self.clock_guard = ClockGuard(plan.id)  # replaced by _build_pipelines
        self.bad_run = 0  # consecutive unusable readings
        self.bad_quality: list[str] = []
        # The policy state that goes with the last alert event on disk. While an alert
        # event waits in memory (full disk), state.json gets this one, not the live one,
        # so a crash then makes the restart decide that event again instead of losing it.
        self.committed_policy: dict = policy.state()
        self.alerts_held = False
        self.last_reading: Reading | None = None
        self.readings = 0
        # A profile that does not fit the meter reads without errors; its structure
        # gives it away (agent/plausibility.py). Non-empty while that persists.
        self.profile_check = ProfileCheck()
        self.mismatch = ""

    def saved_entry(self) -> dict:
        """What ``state.json`` keeps of this meter (see agent/statefile.py)."""
        return {"detector": self.detector.state(),
                "policy": self.committed_policy if self.alerts_held else self.policy.state(),
                "slot": self.slot_state(), "clock": self.clock_guard.state()}

    def _state_name(self, t: float | None = None) -> str:
        if self.clock_guard.holding or (t is not None and not self.clock_guard.deciding(t)):
            return "unknown"  # the clock cannot be trusted (see agent/clockguard.py)
        return "ready" if self.detector.ready else "warming"

    def process_poll(self, raw: RawPoll) -> list[Event]:
        return self.process_reading(self.decoder.decode(raw, self.check))

    def process_reading(self, reading: Reading) -> list[Event]:
        self.last_reading = reading
        self.readings += 1
        verdict = self.clock_guard.check(reading.t)
        if verdict == HOLD:  # nothing learned, nothing decided: the alert stays as it is
            return []
        if verdict == ACCEPTED:  # the open slot is on the old time base
            self.reset_slot()
        if reading.values:
            self.mismatch = self.profile_check.update(reading.values, reading.quality)
        if reading.scorable and "p_w" in reading.values:
            self.bad_run = 0
        else:
            self.bad_run += 1
            self.bad_quality = quality_names(reading.quality) or ["no p_w"]
        events = self.process(reading.t, reading.values, reading.quality,
                              decide=self.clock_guard.deciding(reading.t))
        state = self._state_name(reading.t)
        if state == "unknown":  # the shared pipeline knows nothing of the gateway's clock
            for ev in events:
                if ev.kind == "telemetry":
                    ev.data["detector_state"] = state
                elif ev.kind == "score":
                    ev.data["state"] = state
        return events

    def snapshot(self) -> dict:
        r = self.last_reading
        return {
            "meter": self.plan.id,
            "profile": self.plan.profile.name,
            "t": r.t if r else None,
            "p_w": r.values.get("p_w") if r else None,
            "quality": quality_names(r.quality) if r else [],
            "score": self.detector.score,
            "state": self._state_name(r.t if r else None),
            "alert": self.policy.alert_id if self.policy.active else "",
            "samples": self.samples,
            "bad_samples": self.readings - self.samples,
        }
