"""The device's notion of time: UNIX seconds, real or simulated.

``mode = "real"``: wall time, interpolated with ``ticks_ms`` because ``time.time()`` has
whole-second resolution on most boards. Some ports count from 2000-01-01 (the docs:
"epoch year may be determined with gmtime(0)[0]"), so the offset is added here. A board
has no calendar time at power-up: it is set by NTP (MQTT uplink, ``ntptime``) or by the
host in its ack of the MCU's hello frame (serial uplink). Until then ``synced`` is False
and the app waits (bounded by ``sync_wait_ms``, after which a clock that at least looks
plausible, e.g. kept by a battery RTC, is used), because a reading stamped 2000-01-01
would poison the detector's day slots.

``mode = "sim"``: ``t0 + (wall - wall_start) * speed``, the same formula as the agent's
``agent.clock.Clock`` spec, so a device under test and simulated meters in another
process agree on the simulated date while days pass in seconds.
"""

import time

EPOCH_OFFSET = 946684800 if time.gmtime(0)[0] == 2000 else 0
PLAUSIBLE = 1600000000.0  # 2020-09-13: anything earlier is an unset clock


def _wall():
    ns = getattr(time, "time_ns", None)
    if ns is not None:
        return ns() / 1e9 + EPOCH_OFFSET
    return float(time.time()) + EPOCH_OFFSET


class DeviceClock:
    def __init__(self, cfg):
        cfg = cfg or {}
        self.mode = cfg.get("mode", "real")
        self.speed = float(cfg.get("speed", 1.0))
        self.t0 = float(cfg.get("t0", 0.0))
        self.wall_start = float(cfg.get("wall_start", 0.0))
        self._base = _wall()
        self._tick0 = time.ticks_ms()
        self.synced = self.mode == "sim"

    def plausible(self):
        return self.now() > PLAUSIBLE

    def now(self):
        if self.mode == "sim":
            return self.t0 + (_wall() - self.wall_start) * self.speed
        return self._base + time.ticks_diff(time.ticks_ms(), self._tick0) / 1000.0

    def set(self, t):
        """Calendar time from the host or NTP (ignored by a simulated clock)."""
        if self.mode == "sim" or t < PLAUSIBLE:
            return
        self._base = float(t)
        self._tick0 = time.ticks_ms()
        if not self.synced:
            print("clock set to %.3f" % t)
        self.synced = True

    def ntp(self):
        """One NTP attempt (boards with a network); True when the clock is now set."""
        if self.mode == "sim":
            return True
        try:
            import ntptime

            ntptime.settime()
        except (ImportError, OSError) as e:
            print("ntp: %s" % e)
            return False
        self.set(float(time.time()) + EPOCH_OFFSET)
        return self.synced

    def real_ms(self, sim_s):
        """Real milliseconds that ``sim_s`` simulated seconds take."""
        if sim_s <= 0:
            return 0
        return int(sim_s * 1000.0 / self.speed) if self.mode == "sim" else int(sim_s * 1000)
