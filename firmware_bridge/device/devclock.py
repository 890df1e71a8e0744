"""The device's notion of time: UNIX seconds, real or simulated.

``mode = "real"``: wall time (set by NTP or the host before the app starts), interpolated
with ``ticks_ms`` because ``time.time()`` has whole-second resolution on most boards.
``mode = "sim"``: ``t0 + (wall - wall_start) * speed``, the same formula as the agent's
``agent.clock.Clock`` spec, so a device under test and simulated meters in another
process agree on the simulated date while days pass in seconds.
"""

import time


def _wall():
    ns = getattr(time, "time_ns", None)
    if ns is not None:
        return ns() / 1e9
    return float(time.time())


class DeviceClock:
    def __init__(self, cfg):
        cfg = cfg or {}
        self.mode = cfg.get("mode", "real")
        self.speed = float(cfg.get("speed", 1.0))
        self.t0 = float(cfg.get("t0", 0.0))
        self.wall_start = float(cfg.get("wall_start", 0.0))
        self._base = _wall()
        self._tick0 = time.ticks_ms()

    def now(self):
        if self.mode == "sim":
            return self.t0 + (_wall() - self.wall_start) * self.speed
        return self._base + time.ticks_diff(time.ticks_ms(), self._tick0) / 1000.0

    def real_ms(self, sim_s):
        """Real milliseconds that ``sim_s`` simulated seconds take."""
        if sim_s <= 0:
            return 0
        return int(sim_s * 1000.0 / self.speed) if self.mode == "sim" else int(sim_s * 1000)
