"""Streaming load-signature detector: is a hidden crypto-miner running behind this meter?

Why it is shaped so (DESIGN.md 4):

* A miner adds a *constant* load, 24/7, with about 1 % ripple. Real homes are rarely flat,
  but their *floor* (the low slots of a day) is low and stable. So the core question is
  "did this meter's floor step up against its own past, and stay up?" Everything else
  (flatness, no day/night rhythm, jitter, power factor) only raises or lowers confidence.
* Work is O(1) per sample: a sample that falls in the current slot only updates a few
  accumulators (the fast path in ``update``); features are recomputed once per closed slot
  (default 15 min) from a ring of one day of slot means stored as integer watts. Integer
  watts keep the state small (< 2 KB as JSON) and make ``state()``/``from_state()`` exact.
* The learned baseline floor is *protected*: it follows drops at once, follows rises only
  while the score says "not suspicious", so a miner is never learned as normal.
* Imports only ``math`` and ``array`` so the same file runs on the MicroPython unix port
  and on microcontrollers; no typing, no dataclasses, no f-strings with ``=``.

The score is 0..100: ``gate * (sum of weighted feature strengths)``, where ``gate`` is
step strength x persistence, so a flat vacant home (no step) or a one-night heater (no
persistence) scores 0 however flat it is. Each feature's share of the score is reported by
``contributions()``. A separate ``level`` backstop scores a sustained floor far above any
household of the class (farms, or a rig that was running before the gateway was fitted).
"""

import math
from array import array

try:
    from micropython import const

    _SHARE_OUT = True  # MicroPython: heap is scarce, keep one output cache for all meters
except ImportError:  # CPython
    _SHARE_OUT = False  # CPython: one output cache per detector (no rebuild per sample)

    def const(x):
        return x


_INF = float("inf")
_DAY = const(86400)
_STATE_VERSION = const(1)
_NO_DATA = const(-1)  # ring value of a slot with no usable samples
# A sample more than a day older than the newest one is ignored, unless this many such
# samples arrive before the next slot closes: then the earlier clock was the wrong one
# (e.g. an RTC that jumped years ahead and was corrected), and the detector re-anchors
# its slots on the new clock instead of ignoring every sample until the bogus time.
_RESYNC = const(30)

# Feature names, in the order contributions are reported.
FEATURES = ("step", "persistence", "flatness", "steadiness", "uniformity", "diurnal", "jitter",
            "power_factor", "rise", "level")
_NBLK = const(4)  # the day in blocks of 6 h local, for the shape of the excess
_NFIG = const(15)  # figures kept from the last evaluation (see _explain)
_EV_WARM = const(0)  # what evidence() describes: warming up with no history yet,
_EV_FIG = const(1)  # ... the figures of the last evaluation,
_EV_COVER = const(2)  # ... too little data in the last 24 h,
_EV_RESYNC = const(3)  # ... a clock re-synchronisation
_TABLES = []  # (settings, night slots, evening slots) shared by detectors of equal settings
_UID = [0]
# evidence() and contributions() are built on demand from a few stored numbers (a cached
# dict per meter would be ~1 KB of heap on MicroPython). The runtime asks for both on every
# sample, so the last built pair is kept, keyed by detector and evaluation: [uid, evaluation
# number, evidence, contributions]; on MicroPython here, once for all detectors, on CPython
# in each detector.
_OUT = [0, -1, None, None]


def default_settings():
    """Every tunable of the detector, as plain numbers (config.py validates user keys here).

    Powers are kW, times seconds unless the name says hours/days, fractions 0..1.
    """
    return {
        "slot_s": 900.0,  # slot length; must divide a day
        "tz_offset_s": 0.0,  # local time = UTC + this (night/evening windows, day closes)
        "max_hold_s": 3600.0,  # a sample stands for empty slots up to this long after it
        "floor_pct": 0.1,  # floor = this percentile of the last 24 h of slot means
        "min_cover": 0.6,  # share of the day's slots that must hold data to judge
        "warmup_days": 2.0,  # full days learned before the score may leave 0
        "step_lo_kw": 0.3,  # floor rise that starts to count (and CUSUM drift)
        "step_hi_kw": 0.8,  # floor rise that counts fully
        "persist_lo_h": 8.0,  # hours the risen floor must hold before any score
        "persist_full_h": 34.0,  # hours the risen floor must hold for full persistence
        "spread_pct": 0.35,  # upper edge of the low tail (evidence: tail spread)
        "steady_good": 0.08,  # floor moved at most this share of the step in 24 h: rig
        "steady_bad": 0.25,  # ... this share or more: heating that follows the weather
        "learn_up": 0.2,  # per day: how fast the baseline follows a rise (when allowed)
        "learn_down": 0.3,  # per day: how fast it follows a drop
        "learn_below": 40.0,  # a big rise is learned only if, once judged, it scored below
        "share_lo": 0.35,  # floor / mean of the day: home-like at or below this
        "share_hi": 0.75,  # ... miner-like at or above this
        "night_lo": 0.45,  # night(01-05) / evening(17-22) mean: rhythm at or below this
        "night_hi": 0.9,  # ... no rhythm at or above this
        "night_over": 1.1,  # nights heavier than evenings: heating, not a rig, from here
        "night_max": 1.4,  # ... no credit at all from here
        "jitter_good": 0.02,  # in-slot relative spread at the floor: rig-like at or below
        "jitter_bad": 0.1,  # ... thermostat / compressor at or above
        "pf_good": 0.93,  # power factor at the floor: switch-mode PSU (APFC) at or above
        "pf_bad": 0.8,  # ... motor / compressor at or below
        "level_kw": 6.0,  # sustained floor no household of this class reaches (backstop)
        "w_step": 20.0,  # weights: points each feature gives at full strength
        "w_persistence": 20.0,
        "w_flatness": 15.0,
        "w_steadiness": 25.0,
        "w_uniformity": 0.0,  # credited as far as steadiness also holds (see _evaluate)
        "couple_steady": 0.0,  # 1: steadiness needs uniformity too (the low-alarm mode)
        "w_diurnal": 10.0,
        "w_jitter": 6.0,
        "w_power_factor": 4.0,
        "w_rise": 12.0,  # ungated, below any alert: a small or partial rise still ranks
        "rise_dev_kw": 0.03,  # added to a block's learned deviation (meter and noise floor)
        "rise_z_lo": 3.0,  # block rise / its deviation: starts to rank
        "rise_z_hi": 15.0,  # ... ranks fully
        "uni_good": 0.12,  # spread of the 6-h block floors' excess / its mean: rig at or below
        "uni_bad": 0.3,  # ... weather-driven heating, part-day loads at or above
    }


def _learn_rate(days, rise, judged, s):
    """How far the protected baseline moves toward a day's value (0: not at all)."""
    if days == 0:
        return 1.0
    if rise < 0.0:
        return s["learn_down"]
    if rise < s["step_lo_kw"] or judged:
        return s["learn_up"]
    return 0.0


def _ifloor(x):
    """floor(x) as an int on every port (math.floor returns a float on some)."""
    i = int(x)
    return i - 1 if i > x else i


def _clamp01(x):
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    return x


def _ramp(x, lo, hi):
    """0 at lo, 1 at hi, linear between (hi < lo gives a falling ramp)."""
    if hi == lo:
        return 1.0 if x >= hi else 0.0
    return _clamp01((x - lo) / (hi - lo))


def _r(x, scale):
    """Round half away from zero to 1/scale without round(x, n) (differs across ports)."""
    if x < 0:
        return -math.floor(-x * scale + 0.5) / scale
    return math.floor(x * scale + 0.5) / scale


def _civil(days):
    """Days since 1970-01-01 -> "YYYY-MM-DD" (H. Hinnant's civil_from_days, no time module)."""
    z = days + 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    if m <= 2:
        y += 1
    return "%04d-%02d-%02d" % (y, m, d)


class Detector:
    """One meter's detector. ``update(t, p_w, pf=None)`` learns a sample, returns the score.

    Attributes read by callers: ``score`` (0..100, last value) and ``ready`` (False while
    warming up). ``contributions()`` and ``evidence()`` return dicts built at the last slot
    close; treat them as read-only (they are shared, not copied, to keep per-sample cost
    flat when a caller asks for them on every sample).
    """

    def __init__(self, settings=None):
        s = default_settings()
        if settings is not None:
            for k in settings:
                if k not in s:
                    raise ValueError("unknown detector setting %r" % (k,))
                v = settings[k]
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise ValueError("detector setting %r must be a number, not %r" % (k, v))
                s[k] = float(v)
        slot = s["slot_s"]
        n = int(_DAY // slot) if slot > 0 else 0
        if slot < 1.0 or n * slot != _DAY:
            raise ValueError("detector setting slot_s=%r must divide a day (e.g. 900)" % slot)
        if not 0.0 <= s["floor_pct"] < 1.0:
            raise ValueError("detector setting floor_pct must be in [0, 1)")
        # Meters with the same settings share one settings dict and one table of night and
        # evening slots (read-only), so a 32-meter MCU holds them once, not 32 times.
        tb = None
        for x in _TABLES:
            if x[0] == s:
                tb = x
                break
        if tb is None:
            # Which ring positions are night (01-05) and evening (17-22) local time.
            night = []
            evening = []
            for i in range(n):
                h = (i * slot) / 3600.0
                if 1.0 <= h < 5.0:
                    night.append(i)
                elif 17.0 <= h < 22.0:
                    evening.append(i)
            tb = (s, tuple(night), tuple(evening))
            if len(_TABLES) < 8:
                _TABLES.append(tb)
        self._set = tb[0]
        self._slot = slot
        self._tz = s["tz_offset_s"]
        self._nslots = n
        self._night = tb[1]
        self._evening = tb[2]
        _UID[0] += 1
        self._uid = _UID[0]  # identifies this detector in the shared output cache
        if not _SHARE_OUT:
            self._out = None  # CPython: this detector's own output cache
        self._reset()

    # ------------------------------------------------------------------ state

    def _reset(self):
        # Current (open) slot accumulators. Sums are of (p - ref) so the variance does not
        # cancel catastrophically on single-precision ports.
        self._slot_end = -_INF  # forces the first sample through the slow path
        self._slot_idx = 0  # local slot number (floor((t + tz) / slot_s)) of the open slot
        self._t_last = -_INF
        self._n = 0
        self._ref = 0.0
        self._s = 0.0
        self._ss = 0.0
        self._mn = _INF
        self._mx = -_INF
        self._npf = 0
        self._spf = 0.0
        # Ring of one day of slot means (integer W; _NO_DATA when empty).
        self._ring = array("i", [_NO_DATA] * self._nslots)
        self._last_mean = -1  # last closed slot mean (W), for holding across empty slots
        self._last_idx = 0  # local slot number of the last closed slot
        self._t_close = -_INF  # time of the last closed slot's last sample
        # Learned.
        self._days = 0  # full days learned into the baseline
        self._base = 0.0  # protected baseline floor, kW
        self._bspread = 0.0  # learned low-tail spread (p(spread_pct) - floor), kW
        self._bmean = 0.0  # learned daily mean, kW (protected like the floor)
        # Learned floor (lowest slot mean) of each 6-h block of the local day, kW, protected
        # like the floor: a rig lifts all four by the same watts, heating does not.
        self._bblk = array("d", [0.0] * _NBLK)
        # Learned day-to-day deviation of each block floor, kW.
        self._bdev = array("d", [0.0] * _NBLK)
        self._back = 0  # samples from far in the past since the last slot close
        self._fring = array("i", [_NO_DATA] * 24)  # rolling floor (W) at each local hour
        self._day_idx = 0  # local day number of the last day close
        self._have_day = 0  # 0 until a first day close has been seen
        self._floor = 0.0  # rolling 24-h floor at last evaluation, kW
        self._cover = 0.0
        self._g = 0.0  # one-sided CUSUM of (step - step_lo), kW*h
        self._t_up = 0.0  # when the CUSUM last left 0 (persistence starts)
        self._lvl_h = 0.0  # hours the floor has stayed above level_kw
        self._jit = -1.0  # EMA of in-slot relative spread at the floor (-1: not seen)
        self._pf = -1.0  # EMA of power factor at the floor (-1: not seen)
        self._t_eval = -_INF
        self.score = 0.0
        self.ready = False
        self._c = array("d", [0.0] * len(FEATURES))  # contributions, in FEATURES order
        self._hasc = 0  # 1 once contributions have been computed
        self._evk = _EV_WARM
        self._evn = 0  # evaluation number (keys the shared output cache)
        self._fig = array("d")  # feature figures of the last evaluation (for evidence)

    def state(self):
        """Everything learned, as JSON-able plain numbers and lists (no infinities)."""
        return {
            "v": _STATE_VERSION,
            "slot_s": self._slot,
            "open": [_enc(self._slot_end), self._slot_idx, _enc(self._t_last), self._n,
                     self._ref, self._s, self._ss, _enc(self._mn), _enc(self._mx), self._npf,
                     self._spf],
            "ring": list(self._ring),
            "fring": list(self._fring),
            "last": [self._last_mean, self._last_idx, _enc(self._t_close)],
            "learned": [self._days, self._base, self._day_idx, self._have_day, self._floor,
                        self._cover, self._g, self._t_up, self._lvl_h, self._jit, self._pf,
                        _enc(self._t_eval), self.score, self._bspread, self._bmean,
                        self._back] + list(self._bblk) + list(self._bdev),
            "fig": list(self._fig),
            "contrib": list(self._c) if self._hasc else [],
        }

    @classmethod
    def from_state(cls, settings, state):
        """A detector with ``settings`` that continues exactly where ``state`` left off.

        Raises ValueError (or KeyError/TypeError) for a state that does not fit, so the
        caller can start that meter afresh instead of crashing.
        """
        d = cls(settings)
        if not isinstance(state, dict):
            raise ValueError("detector state must be a dict, not %r" % (type(state),))
        try:
            d._restore(state)
        except IndexError:
            raise ValueError("detector state is truncated") from None
        return d

    def _restore(self, state):
        d = self
        if state.get("v") != _STATE_VERSION:
            raise ValueError("detector state version %r is not %d" % (state.get("v"),
                                                                       _STATE_VERSION))
        if float(state["slot_s"]) != d._slot or len(state["ring"]) != d._nslots:
            raise ValueError("detector state was saved with slot_s=%r, settings say %r"
                             % (state["slot_s"], d._slot))
        o = state["open"]
        d._slot_end = _dec(o[0])
        d._slot_idx = int(o[1])
        d._t_last = _dec(o[2])
        d._n = int(o[3])
        d._ref = float(o[4])
        d._s = float(o[5])
        d._ss = float(o[6])
        d._mn = _dec(o[7])
        d._mx = _dec(o[8])
        d._npf = int(o[9])
        d._spf = float(o[10])
        d._ring = array("i", [int(x) for x in state["ring"]])
        fr = state["fring"]
        if len(fr) != 24:
            raise ValueError("detector state fring must hold 24 values")
        d._fring = array("i", [int(x) for x in fr])
        last = state["last"]
        d._last_mean = int(last[0])
        d._last_idx = int(last[1])
        d._t_close = _dec(last[2])
        ln = state["learned"]
        d._days = int(ln[0])
        d._base = float(ln[1])
        d._day_idx = int(ln[2])
        d._have_day = int(ln[3])
        d._floor = float(ln[4])
        d._cover = float(ln[5])
        d._g = float(ln[6])
        d._t_up = float(ln[7])
        d._lvl_h = float(ln[8])
        d._jit = float(ln[9])
        d._pf = float(ln[10])
        d._t_eval = _dec(ln[11])
        d.score = float(ln[12])
        d._bspread = float(ln[13])
        d._bmean = float(ln[14])
        d._back = int(ln[15])
        if len(ln) >= 16 + 2 * _NBLK:
            for i in range(_NBLK):
                d._bblk[i] = float(ln[16 + i])
                d._bdev[i] = float(ln[16 + _NBLK + i])
        else:  # a state saved before the block floors existed: start them at the floor
            for i in range(_NBLK):
                d._bblk[i] = d._base
        d.ready = d._days >= d._set["warmup_days"]
        fig = [float(x) for x in state["fig"]]
        if len(fig) == _NFIG:
            d._fig = array("d", fig)
            d._evk = _EV_FIG
        elif d._t_eval > -_INF:
            d._evk = _EV_COVER
        cl = state["contrib"]
        if len(cl) == len(FEATURES):
            for i in range(len(FEATURES)):
                d._c[i] = float(cl[i])
            d._hasc = 1

    # ------------------------------------------------------------------ per sample

    def update(self, t, p_w, pf=None):
        """Learn one sample (t UNIX s, p_w watts, pf optional) and return the score.

        Samples that are NaN/inf/negative, or older than the last one (clock went
        backwards), are ignored: never learned, never scored.
        """
        # Fast path: same slot, time not going backwards, 0 <= p < inf (False for NaN).
        if self._t_last <= t < self._slot_end and 0.0 <= p_w < _INF:
            self._t_last = t
            self._n += 1
            d = p_w - self._ref
            self._s += d
            self._ss += d * d
            if p_w < self._mn:
                self._mn = p_w
            if p_w > self._mx:
                self._mx = p_w
            if pf is not None and 0.0 < pf <= 1.0:
                self._npf += 1
                self._spf += pf
            return self.score
        return self._slow(t, p_w, pf)

    def _slow(self, t, p_w, pf):
        if not (0.0 <= p_w < _INF) or not (-_INF < t < _INF):
            return self.score  # bad reading: ignore
        if t < self._t_last:
            # Clock went backwards: ignore, unless it has clearly stayed back (_RESYNC).
            if t >= self._t_last - _DAY:
                return self.score
            self._back += 1
            if self._back < _RESYNC:
                return self.score
            self._resync()
        if t >= self._slot_end:
            self._back = 0
            if self._n > 0:
                self._close_slot()
            idx = _ifloor((t + self._tz) / self._slot)
            self._advance(idx, t)
            self._slot_idx = idx
            self._slot_end = (idx + 1) * self._slot - self._tz
            self._n = 0
            self._ref = p_w
            self._s = 0.0
            self._ss = 0.0
            self._mn = _INF
            self._mx = -_INF
            self._npf = 0
            self._spf = 0.0
        self._t_last = t
        self._n += 1
        d = p_w - self._ref
        self._s += d
        self._ss += d * d
        if p_w < self._mn:
            self._mn = p_w
        if p_w > self._mx:
            self._mx = p_w
        if pf is not None and 0.0 < pf <= 1.0:
            self._npf += 1
            self._spf += pf
        return self.score

    def _resync(self):
        """Forget the time base (open slot, day ring, persistence), keep what was learned."""
        self._slot_end = -_INF
        self._t_last = -_INF
        self._n = 0
        for i in range(self._nslots):
            self._ring[i] = _NO_DATA
        for i in range(24):
            self._fring[i] = _NO_DATA
        self._last_mean = _NO_DATA
        self._t_close = -_INF
        self._t_eval = -_INF
        self._have_day = 0
        self._g = 0.0
        self._lvl_h = 0.0
        self._back = 0
        self.score = 0.0
        self._hasc = 0
        for i in range(len(FEATURES)):
            self._c[i] = 0.0
        self._fig = array("d")
        self._evk = _EV_RESYNC
        self._evn += 1

    # ------------------------------------------------------------------ per slot

    def _close_slot(self):
        n = self._n
        mean = self._ref + self._s / n
        w = _ifloor(mean + 0.5)
        self._ring[self._slot_idx % self._nslots] = w
        self._last_mean = w
        self._last_idx = self._slot_idx
        self._t_close = self._t_last
        # In-slot jitter and power factor feed slow averages only for slots at the floor
        # (the floor is where a rig shows itself; peaks are the household).
        fl = self._floor * 1000.0
        if mean <= fl * 1.1 + 50.0 and mean >= 50.0:
            if n >= 5:
                var = self._ss / n - (self._s / n) * (self._s / n)
                j = math.sqrt(var) / mean if var > 0.0 else 0.0
                self._jit = j if self._jit < 0.0 else self._jit + 0.1 * (j - self._jit)
            if self._npf > 0:
                p = self._spf / self._npf
                self._pf = p if self._pf < 0.0 else self._pf + 0.1 * (p - self._pf)
        self._evaluate(self._t_close)

    def _advance(self, idx, t):
        """Mark the slots between the last closed one and ``idx`` as held or empty."""
        if self._t_close == -_INF:
            return  # nothing closed yet
        gap = idx - self._last_idx - 1
        if gap <= 0:
            return
        hold = self._last_mean >= 0 and (t - self._t_close) <= self._set["max_hold_s"]
        n = self._nslots
        if gap > n:
            gap = n
        v = self._last_mean if hold else _NO_DATA
        ring = self._ring
        for k in range(1, gap + 1):
            ring[(self._last_idx + k) % n] = v
        if hold:
            # A held slot is a closed slot: features and day closes run as usual.
            self._last_idx += gap
            self._evaluate(t)
        else:
            self._last_idx = idx - 1
            self._last_mean = _NO_DATA

    def _evaluate(self, t):
        """Recompute features and the score from the ring; called once per closed slot."""
        s = self._set
        ring = self._ring
        n = self._nslots
        vals = [x for x in ring if x >= 0]
        cover = len(vals) / n
        self._cover = cover
        dt_h = 0.0
        if self._t_eval > -_INF:
            # Persistence runs on data time; a gap longer than a held sample adds nothing.
            dt_h = (t - self._t_eval) / 3600.0
            cap = self._set["max_hold_s"]
            if cap < self._slot:
                cap = self._slot
            if dt_h > cap / 3600.0:
                dt_h = cap / 3600.0
            if dt_h < 0.0:
                dt_h = 0.0
        self._t_eval = t
        if cover < s["min_cover"]:
            for i in range(24):
                self._fring[i] = _NO_DATA
            self._fig = array("d")
            self._evk = _EV_COVER
            self._evn += 1
            return
        vals.sort()
        k = int(s["floor_pct"] * (len(vals) - 1))
        floor = vals[k] / 1000.0
        spread = vals[int(s["spread_pct"] * (len(vals) - 1))] / 1000.0 - floor
        total = 0
        for x in vals:
            total += x
        mean = total / len(vals) / 1000.0
        peak = vals[-1] / 1000.0
        var = 0.0
        for x in vals:
            dd = x / 1000.0 - mean
            var += dd * dd
        cv = math.sqrt(var / len(vals)) / mean if mean > 0.0 else 0.0
        lf = mean / peak if peak > 0.0 else 1.0
        share = floor / mean if mean > 0.0 else 1.0
        nsum = 0
        nn = 0
        for i in self._night:
            if ring[i] >= 0:
                nsum += ring[i]
                nn += 1
        esum = 0
        ne = 0
        for i in self._evening:
            if ring[i] >= 0:
                esum += ring[i]
                ne += 1
        # Floor of each 6-h block of the local day: its 1/8 quantile of slot means, so that a
        # rig restart (a dip of a few minutes, one or two slots) does not move it.
        blk = [-1] * _NBLK
        per = n // _NBLK
        for b in range(_NBLK):
            bv = [x for x in ring[b * per:(b + 1) * per] if x >= 0]
            if len(bv) > 0:
                bv.sort()
                blk[b] = bv[len(bv) // 8]
        ratio = -1.0
        if nn > 0 and ne > 0 and esum > 0:
            ratio = (nsum / nn) / (esum / ne)
        self._floor = floor

        persist_h = (t - self._t_up) / 3600.0 if self._g > 0.0 else 0.0
        # Day close: learn the baseline from the full day just seen (protected).
        day = _ifloor((t + self._tz) / _DAY)
        if self._have_day == 0:
            self._have_day = 1
            self._day_idx = day
        elif day != self._day_idx:
            self._day_idx = day
            # A small rise is normal drift. A large one is learned only once it has lasted
            # long enough to be judged and was judged not miner-like.
            judged = self.score < s["learn_below"] and persist_h >= s["persist_full_h"]
            rate = _learn_rate(self._days, floor - self._base, judged, s)
            if rate > 0.0:
                self._base += rate * (floor - self._base)
                self._bspread += rate * (spread - self._bspread)
                self._bmean += rate * (mean - self._bmean)
            bb = self._bblk
            for b in range(_NBLK):
                # Each block is protected on its own: a rig switched on in the evening
                # lifts that block's floor a day before it lifts the day's floor.
                if blk[b] >= 0:
                    x = blk[b] / 1000.0
                    dx = x - bb[b]
                    rate = _learn_rate(self._days, dx, judged, s)
                    if rate > 0.0:
                        bb[b] += rate * dx
                        if self._days > 0:
                            dv = self._bdev
                            dv[b] += s["learn_up"] * ((dx if dx > 0.0 else -dx) - dv[b])
            self._days += 1
            self.ready = self._days >= s["warmup_days"]

        step = floor - self._base if self._days > 0 else 0.0
        # One-sided CUSUM (Page 1954) of the step above its drift: its last zero is the
        # onset, its positive run is the persistence.
        g = self._g + (step - s["step_lo_kw"]) * dt_h
        if g <= 0.0:
            g = 0.0
        elif self._g <= 0.0:
            self._t_up = t
        self._g = g
        if floor >= s["level_kw"]:
            self._lvl_h += dt_h
        else:
            self._lvl_h = 0.0
        persist_h = (t - self._t_up) / 3600.0 if self._g > 0.0 else 0.0

        f_step = _ramp(step, s["step_lo_kw"], s["step_hi_kw"])
        f_pers = _ramp(persist_h, s["persist_lo_h"], s["persist_full_h"])
        # Steadiness: how far the rolling floor moved over the last 24 h, against the step.
        # A rig's floor stays put; heating follows the weather from one day to the next.
        fw = _ifloor(floor * 1000.0 + 0.5)
        self._fring[_ifloor((t + self._tz) / 3600.0) % 24] = fw
        lo = fw
        hi = fw
        for x in self._fring:
            if x >= 0:
                if x < lo:
                    lo = x
                if x > hi:
                    hi = x
        drift = (hi - lo) / 1000.0
        f_steady = _ramp(drift / step, s["steady_bad"], s["steady_good"]) if step > 0.0 else 0.0
        f_flat = _ramp(share, s["share_lo"], s["share_hi"])
        # Uniformity: the excess of each 6-h block's floor over its learned value. A rig adds
        # the same watts to every block; heating follows the outdoor temperature (cold
        # nights, mild afternoons), grow lights and chargers leave some blocks untouched.
        emin = _INF
        emax = -_INF
        esum2 = 0.0
        nb = 0
        for b in range(_NBLK):
            if blk[b] >= 0 and self._days > 0:
                e = blk[b] / 1000.0 - self._bblk[b]
                esum2 += e
                nb += 1
                if e < emin:
                    emin = e
                if e > emax:
                    emax = e
        # The most-risen block in units of its own day-to-day deviation: a night-only rig
        # lifts the night block far beyond how that block usually moves.
        zmax = 0.0
        for b in range(_NBLK):
            if blk[b] >= 0 and self._days > 1:
                z = (blk[b] / 1000.0 - self._bblk[b]) / (self._bdev[b] + s["rise_dev_kw"])
                if z > zmax:
                    zmax = z
        uni = -1.0  # (max - min) / mean of the block excesses; -1: not known
        if nb >= 2 and esum2 > 0.0:
            uni = (emax - emin) / (esum2 / nb)
        f_uni = _ramp(uni, s["uni_bad"], s["uni_good"]) if uni >= 0.0 else 0.0
        f_const = f_steady if f_steady < f_uni else f_uni
        if ratio < 0.0:
            f_diur = 0.5
        elif ratio <= s["night_over"]:
            f_diur = _ramp(ratio, s["night_lo"], s["night_hi"])
        else:
            # A rig adds the same to night and evening, so the ratio tends to 1 from below;
            # night well above evening is the cold-night signature of space heating.
            f_diur = _ramp(ratio, s["night_max"], s["night_over"])
        f_jit = _ramp(self._jit, s["jitter_bad"], s["jitter_good"]) if self._jit >= 0.0 else 0.5
        f_pf = _ramp(self._pf, s["pf_bad"], s["pf_good"]) if self._pf >= 0.0 else 0.5
        level = 100.0 * _clamp01(self._lvl_h / s["persist_full_h"]) \
            if floor >= s["level_kw"] else 0.0
        # Step and persistence gate everything: no lasting rise of the floor, no score,
        # however flat the home looks (vacant homes are flat too).
        g = f_step * f_pers
        c = {
            "step": g * s["w_step"],
            "persistence": g * s["w_persistence"],
            "flatness": g * f_flat * s["w_flatness"],
            # A rig's excess is constant both from day to day (steadiness) and across the
            # hours of a day (uniformity). Uniformity is credited only as far as steadiness
            # also holds: heating and part-day loads often show one of the two for a while.
            # With couple_steady = 1 steadiness is likewise credited only as far as
            # uniformity holds (fewer false alarms, lower recall on busy homes: see README).
            "steadiness": g * (f_const if s["couple_steady"] > 0.0 else f_steady)
            * s["w_steadiness"],
            "uniformity": g * f_const * s["w_uniformity"],
            "diurnal": g * f_diur * s["w_diurnal"],
            "jitter": g * f_jit * s["w_jitter"],
            "power_factor": g * f_pf * s["w_power_factor"],
            # Ungated weak evidence, worth at most w_rise (below any raise threshold): a
            # floor or mean that rose a little, or a rise not yet judged, still ranks above
            # the same home without it. It fades as the gate opens. The block term is the
            # most-risen 6-h block floor against its own day-to-day deviation (a night-only
            # or duty-cycled rig lifts some blocks far beyond their usual movement).
            "rise": (1.0 - g) * s["w_rise"] * max(
                _ramp(step, 0.05, s["step_hi_kw"]),
                _ramp(mean - self._bmean if self._days > 0 else 0.0, 0.1, 1.5),
                _ramp(zmax, s["rise_z_lo"], s["rise_z_hi"])),
            "level": 0.0,
        }
        total = 0.0
        for name in FEATURES:
            total += c[name]
        if level > total:
            # The backstop wins: report it alone so the explanation stays honest.
            for name in FEATURES:
                c[name] = 0.0
            c["level"] = level
            total = level
        if total > 100.0:
            # Gated weights add up to a little over 100: scale so contributions still sum
            # to the score.
            k = 100.0 / total
            for name in FEATURES:
                c[name] *= k
            total = 100.0
        if not self.ready:
            total = 0.0
            for name in FEATURES:
                c[name] = 0.0
        cc = self._c
        for i in range(len(FEATURES)):
            cc[i] = c[FEATURES[i]]
        self._hasc = 1
        self._fig = array("d", [floor, self._base, step, persist_h, cv, lf, share, ratio, mean,
                                peak, spread, drift, uni, emax if nb > 0 else 0.0, t])
        self.score = total
        self._evk = _EV_FIG
        self._evn += 1

    def _explain(self):
        floor, base, step, persist_h, cv, lf, share, ratio, mean, peak, spread, drift, uni, \
            emax, t = self._fig
        onset = self._t_up - (1.0 - self._set["floor_pct"]) * _DAY if self._g > 0.0 else 0.0
        ev = {
            "floor_kw": _r(floor, 1000),
            "baseline_kw": _r(base, 1000),
            "step_kw": _r(step, 1000),
            "persist_h": _r(persist_h, 10),
            "mean_kw": _r(mean, 1000),
            "peak_kw": _r(peak, 1000),
            "cv": _r(cv, 1000),
            "load_factor": _r(lf, 1000),
            "floor_share": _r(share, 1000),
            "tail_spread_kw": _r(spread, 1000),
            "baseline_spread_kw": _r(self._bspread, 1000),
            "floor_drift_24h_kw": _r(drift, 1000),
            "block_spread": _r(uni, 1000) if uni >= 0.0 else None,
            "block_rise_kw": _r(emax, 1000),
            "night_evening": _r(ratio, 100) if ratio >= 0.0 else None,
            "jitter_pct": _r(self._jit * 100.0, 10) if self._jit >= 0.0 else None,
            "pf": _r(self._pf, 1000) if self._pf >= 0.0 else None,
            "coverage": _r(self._cover, 100),
            "days_learned": self._days,
            "onset_t": int(onset) if self._g > 0.0 else None,
        }
        parts = []
        if not self.ready:
            parts.append("warming up (%d of %d days)" % (self._days,
                                                        int(self._set["warmup_days"])))
        if self._g > 0.0 and step > 0.0:
            days = (t - onset) / _DAY
            parts.append("floor +%.1f kW since %s" % (step, _civil(
                _ifloor((onset + self._tz) / _DAY))))
            parts.append("24/7 for %s" % ("%d days" % int(days) if days >= 2.0
                                         else "%d h" % int(days * 24.0)))
        else:
            parts.append("floor %.2f kW (baseline %.2f kW)" % (floor, base))
        if self._jit >= 0.0:
            parts.append("jitter %.1f%%" % (self._jit * 100.0))
        if ratio >= 0.0:
            parts.append("night/evening %.2f" % ratio)
        if self._pf >= 0.0:
            parts.append("pf %.2f" % self._pf)
        if floor >= self._set["level_kw"]:
            parts.append("sustained %.1f kW above the %.1f kW class level"
                         % (floor, self._set["level_kw"]))
        ev["summary"] = ", ".join(parts)
        return ev

    # ------------------------------------------------------------------ outputs

    def _outputs(self):
        if _SHARE_OUT:
            o = _OUT
        else:
            o = self._out
            if o is None:
                o = [0, -1, None, None]
                self._out = o
        if o[0] != self._uid or o[1] != self._evn:
            if self._evk == _EV_FIG:
                ev = self._explain()
            elif self._evk == _EV_COVER:
                ev = {"summary": "not enough data in the last 24 h (%d%%)"
                      % int(self._cover * 100), "coverage": _r(self._cover, 100)}
            elif self._evk == _EV_RESYNC:
                ev = {"summary": "clock re-synchronised: re-reading the last 24 h"}
            else:
                ev = {"summary": "warming up: no history yet"}
            c = {}
            if self._hasc:
                for i in range(len(FEATURES)):
                    c[FEATURES[i]] = self._c[i]
            o[0] = self._uid
            o[1] = self._evn
            o[2] = ev
            o[3] = c
        return o

    def contributions(self):
        """Points of the score each feature gave at the last slot close (sum = score).

        Built on demand and shared until the next slot close: treat as read-only."""
        return self._outputs()[3]

    def evidence(self):
        """Figures behind the score and a one-line human summary (JSON-able).

        Built on demand and shared until the next slot close: treat as read-only."""
        return self._outputs()[2]


def _enc(x):
    """Infinities are not JSON: store them as +/-1e300 (times never come near that)."""
    if x == _INF:
        return 1e300
    if x == -_INF:
        return -1e300
    return x


def _dec(x):
    x = float(x)
    if x >= 1e300:
        return _INF
    if x <= -1e300:
        return -_INF
    return x
