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
    _PACKED = True  # MicroPython: float state in an array('d'), no boxed float per value
except ImportError:  # CPython
    _SHARE_OUT = False  # CPython: one output cache per detector (no rebuild per sample)
    _PACKED = False  # CPython: float state in a list, whose indexing is ~2x faster

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
_NFEAT = const(10)  # len(FEATURES)
_NHOUR = const(24)  # hours in the rolling-floor ring (kept in _ring, see _FR0)

# The detector's state is packed into two arrays per meter instead of ~55 instance
# attributes: on MicroPython every attribute is a 16-byte map entry and every float in one
# a separately allocated heap object, so the packed form is about half the heap per meter
# (bench/footprint.py). Each name below is the index of one value.
#
# _f, an array('d') (a list on CPython, see _PACKED): every float and the counts of the
# open slot (whole numbers, exact in a double), so that the per-sample fast path touches
# this one object and nothing else; then the slot and day numbers.
_SEND = const(0)  # end time of the open slot (-inf: none open, the next sample opens one)
_TLAST = const(1)  # time of the last accepted sample
_N = const(2)  # samples in the open slot
_REF = const(3)  # first sample of the open slot, W: sums are of (p - ref) so the variance
#                  does not cancel catastrophically on single-precision ports
_S = const(4)  # sum of (p - ref) over the open slot
_SS = const(5)  # sum of (p - ref) ** 2
_MN = const(6)  # lowest sample of the open slot, W
_MX = const(7)  # highest sample of the open slot, W
_NPF = const(8)  # power-factor samples in the open slot
_SPF = const(9)  # their sum
_TCLOSE = const(10)  # time of the last closed slot's last sample (-inf: none closed yet)
_BASE = const(11)  # protected baseline floor, kW
_BSPREAD = const(12)  # learned low-tail spread (p(spread_pct) - floor), kW
_BMEAN = const(13)  # learned daily mean, kW (protected like the floor)
_FLOOR = const(14)  # rolling 24-h floor at the last evaluation, kW
_COVER = const(15)  # share of the day ring holding data at the last evaluation
_G = const(16)  # one-sided CUSUM of (step - step_lo), kW*h
_TUP = const(17)  # when the CUSUM last left 0 (persistence starts)
_LVLH = const(18)  # hours the floor has stayed above level_kw
_JIT = const(19)  # EMA of in-slot relative spread at the floor (-1: not seen)
_PF = const(20)  # EMA of power factor at the floor (-1: not seen)
_TEVAL = const(21)  # time of the last evaluation (-inf: none yet)
_SCORE = const(22)  # the score, 0..100 (read as .score)
# Learned floor (lowest slot means) of each 6-h block of the local day, kW, protected like
# the floor: a rig lifts all four by the same watts, heating does not.
_BBLK = const(23)  # .. _BBLK + _NBLK - 1
_BDEV = const(27)  # learned day-to-day deviation of each block floor, kW (_NBLK values)
_C = const(31)  # contributions of the last evaluation, in FEATURES order (_NFEAT values)
_FIG = const(41)  # figures of the last evaluation, for evidence() (_NFIG values; they are
#                   valid while _EVK is _EV_FIG, see _explain for their order)
# Slot and day numbers grow with time, so they are kept here rather than as 32-bit ints
# (whole numbers, exact in a double up to 2**53; on CPython _f is a list and keeps ints).
_SIDX = const(56)  # local slot number (floor((t + tz) / slot_s)) of the open slot
_LIDX = const(57)  # local slot number of the last closed slot
_DAYIDX = const(58)  # local day number of the last day close
_UIDX = const(59)  # this detector's number (keys the shared output cache)
_NF = const(60)  # length of _f
#
# _ring, an array('i'): the small ints first, then the rolling floor (W) at each local
# hour, then the day ring of slot means (W), one per slot (_NO_DATA: empty).
_LMEAN = const(0)  # last closed slot mean (W), held across empty slots; _NO_DATA: none
_DAYS = const(1)  # full days learned into the baseline
_HAVEDAY = const(2)  # 0 until a first day close has been seen
_BACK = const(3)  # samples from far in the past since the last slot close (see _RESYNC)
_HASC = const(4)  # 1 once contributions (_C) have been computed
_EVK = const(5)  # what evidence() describes (_EV_*)
_EVN = const(6)  # evaluation number (keys the shared output cache)
_READY = const(7)  # 1 once warmed up (read as .ready)
_FR0 = const(8)  # the rolling floor: _NHOUR values
_DAY0 = const(32)  # the day ring: one value per slot (_FR0 + _NHOUR)


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


# The public name, for the payload codec's ISO times (agent/publish/codec.py).
civil_date = _civil


class Detector:
    """One meter's detector. ``update(t, p_w, pf=None)`` learns a sample, returns the score.

    Attributes read by callers: ``score`` (0..100, last value) and ``ready`` (False while
    warming up). ``contributions()`` and ``evidence()`` return dicts built at the last slot
    close; treat them as read-only (they are shared, not copied, to keep per-sample cost
    flat when a caller asks for them on every sample).

    The state lives in ``_f`` and ``_ring`` (see the offsets above the class);
    ``_tb`` is the (settings, night slots, evening slots) table shared by equal settings.
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
                    night.append(_DAY0 + i)  # as indices into _ring
                elif 17.0 <= h < 22.0:
                    evening.append(_DAY0 + i)
            tb = (s, tuple(night), tuple(evening))
            if len(_TABLES) < 8:
                _TABLES.append(tb)
        self._tb = tb
        self._f = array("d", [0.0] * _NF) if _PACKED else [0.0] * _NF
        self._ring = array("i", [_NO_DATA] * (_DAY0 + n))
        _UID[0] += 1
        self._f[_UIDX] = _UID[0]  # identifies this detector in the shared output cache
        if not _SHARE_OUT:
            self._out = None  # CPython: this detector's own output cache
        self._reset()

    @property
    def score(self):
        """The score (0..100) at the last slot close."""
        return self._f[_SCORE]

    @property
    def ready(self):
        """False while warming up (no score yet)."""
        return self._ring[_READY] == 1

    # ------------------------------------------------------------------ state

    def _reset(self):
        """A fresh detector: nothing seen, nothing learned (the arrays are reused)."""
        f = self._f
        ring = self._ring
        uid = f[_UIDX]
        for k in range(_NF):
            f[k] = 0.0
        f[_UIDX] = uid
        for k in range(_FR0):
            ring[k] = 0
        for k in range(_FR0, len(ring)):
            ring[k] = _NO_DATA
        f[_SEND] = -_INF  # forces the first sample through the slow path
        f[_TLAST] = -_INF
        f[_MN] = _INF
        f[_MX] = -_INF
        f[_TCLOSE] = -_INF
        f[_JIT] = -1.0
        f[_PF] = -1.0
        f[_TEVAL] = -_INF
        ring[_LMEAN] = -1
        ring[_EVK] = _EV_WARM

    def state(self):
        """Everything learned, as JSON-able plain numbers and lists (no infinities)."""
        f = self._f
        iv = self._ring
        return {
            "v": _STATE_VERSION,
            "slot_s": self._tb[0]["slot_s"],
            "open": [_enc(f[_SEND]), int(f[_SIDX]), _enc(f[_TLAST]), int(f[_N]), f[_REF], f[_S],
                     f[_SS], _enc(f[_MN]), _enc(f[_MX]), int(f[_NPF]), f[_SPF]],
            "ring": list(iv[_DAY0:]),
            "fring": list(iv[_FR0:_DAY0]),
            "last": [iv[_LMEAN], int(f[_LIDX]), _enc(f[_TCLOSE])],
            "learned": [iv[_DAYS], f[_BASE], int(f[_DAYIDX]), iv[_HAVEDAY], f[_FLOOR], f[_COVER],
                        f[_G], f[_TUP], f[_LVLH], f[_JIT], f[_PF], _enc(f[_TEVAL]),
                        f[_SCORE], f[_BSPREAD], f[_BMEAN], iv[_BACK]]
            + list(f[_BBLK:_BBLK + 2 * _NBLK]),
            "fig": list(f[_FIG:_FIG + _NFIG]) if iv[_EVK] == _EV_FIG else [],
            "contrib": list(f[_C:_C + _NFEAT]) if iv[_HASC] else [],
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
        except OverflowError:  # a count beyond the 32-bit ints of _ring (CPython)
            raise ValueError("detector state holds a number out of range") from None
        return d

    def _restore(self, state):
        f = self._f
        iv = self._ring
        n = len(iv) - _DAY0
        slot = self._tb[0]["slot_s"]
        if state.get("v") != _STATE_VERSION:
            raise ValueError("detector state version %r is not %d" % (state.get("v"),
                                                                       _STATE_VERSION))
        if float(state["slot_s"]) != slot or len(state["ring"]) != n:
            raise ValueError("detector state was saved with slot_s=%r, settings say %r"
                             % (state["slot_s"], slot))
        o = state["open"]
        f[_SEND] = _dec(o[0])
        f[_SIDX] = int(o[1])
        f[_TLAST] = _dec(o[2])
        f[_N] = int(o[3])
        f[_REF] = float(o[4])
        f[_S] = float(o[5])
        f[_SS] = float(o[6])
        f[_MN] = _dec(o[7])
        f[_MX] = _dec(o[8])
        f[_NPF] = int(o[9])
        f[_SPF] = float(o[10])
        r = [int(x) for x in state["ring"]]
        fr = state["fring"]
        if len(fr) != _NHOUR:
            raise ValueError("detector state fring must hold 24 values")
        fr = [int(x) for x in fr]
        for k in range(n):
            iv[_DAY0 + k] = r[k]
        for k in range(_NHOUR):
            iv[_FR0 + k] = fr[k]
        last = state["last"]
        iv[_LMEAN] = int(last[0])
        f[_LIDX] = int(last[1])
        f[_TCLOSE] = _dec(last[2])
        ln = state["learned"]
        iv[_DAYS] = int(ln[0])
        f[_BASE] = float(ln[1])
        f[_DAYIDX] = int(ln[2])
        iv[_HAVEDAY] = int(ln[3])
        f[_FLOOR] = float(ln[4])
        f[_COVER] = float(ln[5])
        f[_G] = float(ln[6])
        f[_TUP] = float(ln[7])
        f[_LVLH] = float(ln[8])
        f[_JIT] = float(ln[9])
        f[_PF] = float(ln[10])
        f[_TEVAL] = _dec(ln[11])
        f[_SCORE] = float(ln[12])
        f[_BSPREAD] = float(ln[13])
        f[_BMEAN] = float(ln[14])
        iv[_BACK] = int(ln[15])
        if len(ln) >= 16 + 2 * _NBLK:
            for k in range(2 * _NBLK):
                f[_BBLK + k] = float(ln[16 + k])
        else:  # a state saved before the block floors existed: start them at the floor
            for k in range(_NBLK):
                f[_BBLK + k] = f[_BASE]
        iv[_READY] = 1 if iv[_DAYS] >= self._tb[0]["warmup_days"] else 0
        fig = [float(x) for x in state["fig"]]
        if len(fig) == _NFIG:
            for k in range(_NFIG):
                f[_FIG + k] = fig[k]
            iv[_EVK] = _EV_FIG
        elif f[_TEVAL] > -_INF:
            iv[_EVK] = _EV_COVER
        cl = state["contrib"]
        if len(cl) == _NFEAT:
            for k in range(_NFEAT):
                f[_C + k] = float(cl[k])
            iv[_HASC] = 1

    # ------------------------------------------------------------------ per sample

    def update(self, t, p_w, pf=None):
        """Learn one sample (t UNIX s, p_w watts, pf optional) and return the score.

        Samples that are NaN/inf/negative, or older than the last one (clock went
        backwards), are ignored: never learned, never scored.
        """
        # Fast path: same slot, time not going backwards, 0 <= p < inf (False for NaN).
        f = self._f
        if f[_TLAST] <= t < f[_SEND] and 0.0 <= p_w < _INF:
            f[_TLAST] = t
            f[_N] += 1.0
            d = p_w - f[_REF]
            f[_S] += d
            f[_SS] += d * d
            if p_w < f[_MN]:
                f[_MN] = p_w
            if p_w > f[_MX]:
                f[_MX] = p_w
            if pf is not None and 0.0 < pf <= 1.0:
                f[_NPF] += 1.0
                f[_SPF] += pf
            return f[_SCORE]
        return self._slow(t, p_w, pf)

    def _slow(self, t, p_w, pf):
        f = self._f
        iv = self._ring
        if not (0.0 <= p_w < _INF) or not (-_INF < t < _INF):
            return f[_SCORE]  # bad reading: ignore
        if t < f[_TLAST]:
            # Clock went backwards: ignore, unless it has clearly stayed back (_RESYNC).
            if t >= f[_TLAST] - _DAY:
                return f[_SCORE]
            iv[_BACK] += 1
            if iv[_BACK] < _RESYNC:
                return f[_SCORE]
            self._resync()
        if t >= f[_SEND]:
            iv[_BACK] = 0
            if f[_N] > 0.0:
                self._close_slot()
            s = self._tb[0]
            slot = s["slot_s"]
            tz = s["tz_offset_s"]
            idx = _ifloor((t + tz) / slot)
            self._advance(idx, t)
            f[_SIDX] = idx
            f[_SEND] = (idx + 1) * slot - tz
            f[_N] = 0.0
            f[_REF] = p_w
            f[_S] = 0.0
            f[_SS] = 0.0
            f[_MN] = _INF
            f[_MX] = -_INF
            f[_NPF] = 0.0
            f[_SPF] = 0.0
        # The sample joins the slot as on update()'s fast path, written out again rather
        # than re-entering update(): where rounding puts t on the new slot's end exactly,
        # the fast path's test fails and update() would come back here for ever.
        f[_TLAST] = t
        f[_N] += 1.0
        d = p_w - f[_REF]
        f[_S] += d
        f[_SS] += d * d
        if p_w < f[_MN]:
            f[_MN] = p_w
        if p_w > f[_MX]:
            f[_MX] = p_w
        if pf is not None and 0.0 < pf <= 1.0:
            f[_NPF] += 1.0
            f[_SPF] += pf
        return f[_SCORE]

    def _resync(self):
        """Forget the time base (open slot, day ring, persistence), keep what was learned."""
        f = self._f
        iv = self._ring
        f[_SEND] = -_INF
        f[_TLAST] = -_INF
        f[_N] = 0.0
        for k in range(_FR0, len(iv)):
            iv[k] = _NO_DATA
        iv[_LMEAN] = _NO_DATA
        f[_TCLOSE] = -_INF
        f[_TEVAL] = -_INF
        iv[_HAVEDAY] = 0
        f[_G] = 0.0
        f[_LVLH] = 0.0
        iv[_BACK] = 0
        f[_SCORE] = 0.0
        iv[_HASC] = 0
        for k in range(_NFEAT):
            f[_C + k] = 0.0
        iv[_EVK] = _EV_RESYNC
        iv[_EVN] += 1

    # ------------------------------------------------------------------ per slot

    def _close_slot(self):
        f = self._f
        iv = self._ring
        n = f[_N]
        mean = f[_REF] + f[_S] / n
        w = _ifloor(mean + 0.5)
        iv[_DAY0 + int(f[_SIDX]) % (len(iv) - _DAY0)] = w
        iv[_LMEAN] = w
        f[_LIDX] = f[_SIDX]
        f[_TCLOSE] = f[_TLAST]
        # In-slot jitter and power factor feed slow averages only for slots at the floor
        # (the floor is where a rig shows itself; peaks are the household).
        fl = f[_FLOOR] * 1000.0
        if mean <= fl * 1.1 + 50.0 and mean >= 50.0:
            if n >= 5.0:
                var = f[_SS] / n - (f[_S] / n) * (f[_S] / n)
                j = math.sqrt(var) / mean if var > 0.0 else 0.0
                f[_JIT] = j if f[_JIT] < 0.0 else f[_JIT] + 0.1 * (j - f[_JIT])
            if f[_NPF] > 0.0:
                p = f[_SPF] / f[_NPF]
                f[_PF] = p if f[_PF] < 0.0 else f[_PF] + 0.1 * (p - f[_PF])
        self._evaluate(f[_TCLOSE])

    def _advance(self, idx, t):
        """Mark the slots between the last closed one and ``idx`` as held or empty."""
        f = self._f
        ring = self._ring
        if f[_TCLOSE] == -_INF:
            return  # nothing closed yet
        last = int(f[_LIDX])
        gap = idx - last - 1
        if gap <= 0:
            return
        hold = ring[_LMEAN] >= 0 and (t - f[_TCLOSE]) <= self._tb[0]["max_hold_s"]
        n = len(ring) - _DAY0
        if gap > n:
            gap = n
        v = ring[_LMEAN] if hold else _NO_DATA
        for k in range(1, gap + 1):
            ring[_DAY0 + (last + k) % n] = v
        if hold:
            # A held slot is a closed slot: features and day closes run as usual.
            f[_LIDX] = last + gap
            self._evaluate(t)
        else:
            f[_LIDX] = idx - 1
            ring[_LMEAN] = _NO_DATA

    def _evaluate(self, t):
        """Recompute features and the score from the ring; called once per closed slot."""
        s = self._tb[0]
        f = self._f
        ring = iv = self._ring
        n = len(ring) - _DAY0
        vals = [x for x in ring[_DAY0:] if x >= 0]
        cover = len(vals) / n
        f[_COVER] = cover
        dt_h = 0.0
        if f[_TEVAL] > -_INF:
            # Persistence runs on data time; a gap longer than a held sample adds nothing.
            dt_h = (t - f[_TEVAL]) / 3600.0
            cap = s["max_hold_s"]
            if cap < s["slot_s"]:
                cap = s["slot_s"]
            if dt_h > cap / 3600.0:
                dt_h = cap / 3600.0
            if dt_h < 0.0:
                dt_h = 0.0
        f[_TEVAL] = t
        if cover < s["min_cover"]:
            for i in range(_FR0, _DAY0):
                ring[i] = _NO_DATA
            iv[_EVK] = _EV_COVER
            iv[_EVN] += 1
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
        for i in self._tb[1]:
            if ring[i] >= 0:
                nsum += ring[i]
                nn += 1
        esum = 0
        ne = 0
        for i in self._tb[2]:
            if ring[i] >= 0:
                esum += ring[i]
                ne += 1
        # Floor of each 6-h block of the local day: its 1/8 quantile of slot means, so that a
        # rig restart (a dip of a few minutes, one or two slots) does not move it.
        blk = [-1] * _NBLK
        per = n // _NBLK
        for b in range(_NBLK):
            bv = [x for x in ring[_DAY0 + b * per:_DAY0 + (b + 1) * per] if x >= 0]
            if len(bv) > 0:
                bv.sort()
                blk[b] = bv[len(bv) // 8]
        ratio = -1.0
        if nn > 0 and ne > 0 and esum > 0:
            ratio = (nsum / nn) / (esum / ne)
        f[_FLOOR] = floor

        persist_h = (t - f[_TUP]) / 3600.0 if f[_G] > 0.0 else 0.0
        # Day close: learn the baseline from the full day just seen (protected).
        day = _ifloor((t + s["tz_offset_s"]) / _DAY)
        if iv[_HAVEDAY] == 0:
            iv[_HAVEDAY] = 1
            f[_DAYIDX] = day
        elif day != int(f[_DAYIDX]):
            f[_DAYIDX] = day
            # A small rise is normal drift. A large one is learned only once it has lasted
            # long enough to be judged and was judged not miner-like.
            judged = f[_SCORE] < s["learn_below"] and persist_h >= s["persist_full_h"]
            rate = _learn_rate(iv[_DAYS], floor - f[_BASE], judged, s)
            if rate > 0.0:
                f[_BASE] += rate * (floor - f[_BASE])
                f[_BSPREAD] += rate * (spread - f[_BSPREAD])
                f[_BMEAN] += rate * (mean - f[_BMEAN])
            for b in range(_NBLK):
                # Each block is protected on its own: a rig switched on in the evening
                # lifts that block's floor a day before it lifts the day's floor.
                if blk[b] >= 0:
                    x = blk[b] / 1000.0
                    dx = x - f[_BBLK + b]
                    rate = _learn_rate(iv[_DAYS], dx, judged, s)
                    if rate > 0.0:
                        f[_BBLK + b] += rate * dx
                        if iv[_DAYS] > 0:
                            f[_BDEV + b] += s["learn_up"] * ((dx if dx > 0.0 else -dx)
                                                             - f[_BDEV + b])
            iv[_DAYS] += 1
            iv[_READY] = 1 if iv[_DAYS] >= s["warmup_days"] else 0
        days = iv[_DAYS]

        step = floor - f[_BASE] if days > 0 else 0.0
        # One-sided CUSUM (Page 1954) of the step above its drift: its last zero is the
        # onset, its positive run is the persistence.
        g = f[_G] + (step - s["step_lo_kw"]) * dt_h
        if g <= 0.0:
            g = 0.0
        elif f[_G] <= 0.0:
            f[_TUP] = t
        f[_G] = g
        if floor >= s["level_kw"]:
            f[_LVLH] += dt_h
        else:
            f[_LVLH] = 0.0
        persist_h = (t - f[_TUP]) / 3600.0 if f[_G] > 0.0 else 0.0

        f_step = _ramp(step, s["step_lo_kw"], s["step_hi_kw"])
        f_pers = _ramp(persist_h, s["persist_lo_h"], s["persist_full_h"])
        # Steadiness: how far the rolling floor moved over the last 24 h, against the step.
        # A rig's floor stays put; heating follows the weather from one day to the next.
        fw = _ifloor(floor * 1000.0 + 0.5)
        ring[_FR0 + _ifloor((t + s["tz_offset_s"]) / 3600.0) % _NHOUR] = fw
        lo = fw
        hi = fw
        for i in range(_FR0, _DAY0):
            x = ring[i]
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
            if blk[b] >= 0 and days > 0:
                e = blk[b] / 1000.0 - f[_BBLK + b]
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
            if blk[b] >= 0 and days > 1:
                z = (blk[b] / 1000.0 - f[_BBLK + b]) / (f[_BDEV + b] + s["rise_dev_kw"])
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
        jit = f[_JIT]
        f_jit = _ramp(jit, s["jitter_bad"], s["jitter_good"]) if jit >= 0.0 else 0.5
        pfe = f[_PF]
        f_pf = _ramp(pfe, s["pf_bad"], s["pf_good"]) if pfe >= 0.0 else 0.5
        level = 100.0 * _clamp01(f[_LVLH] / s["persist_full_h"]) \
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
                _ramp(mean - f[_BMEAN] if days > 0 else 0.0, 0.1, 1.5),
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
        if iv[_READY] == 0:
            total = 0.0
            for name in FEATURES:
                c[name] = 0.0
        for i in range(_NFEAT):
            f[_C + i] = c[FEATURES[i]]
        iv[_HASC] = 1
        fig = (floor, f[_BASE], step, persist_h, cv, lf, share, ratio, mean, peak, spread,
               drift, uni, emax if nb > 0 else 0.0, t)
        for i in range(_NFIG):
            f[_FIG + i] = fig[i]
        f[_SCORE] = total
        iv[_EVK] = _EV_FIG
        iv[_EVN] += 1

    def _explain(self):
        f = self._f
        s = self._tb[0]
        floor, base, step, persist_h, cv, lf, share, ratio, mean, peak, spread, drift, uni, \
            emax, t = f[_FIG:_FIG + _NFIG]
        g = f[_G]
        jit = f[_JIT]
        pfe = f[_PF]
        days = self._ring[_DAYS]
        onset = f[_TUP] - (1.0 - s["floor_pct"]) * _DAY if g > 0.0 else 0.0
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
            "baseline_spread_kw": _r(f[_BSPREAD], 1000),
            "floor_drift_24h_kw": _r(drift, 1000),
            "block_spread": _r(uni, 1000) if uni >= 0.0 else None,
            "block_rise_kw": _r(emax, 1000),
            "night_evening": _r(ratio, 100) if ratio >= 0.0 else None,
            "jitter_pct": _r(jit * 100.0, 10) if jit >= 0.0 else None,
            "pf": _r(pfe, 1000) if pfe >= 0.0 else None,
            "coverage": _r(f[_COVER], 100),
            "days_learned": days,
            "onset_t": int(onset) if g > 0.0 else None,
        }
        parts = []
        if self._ring[_READY] == 0:
            parts.append("warming up (%d of %d days)" % (days, int(s["warmup_days"])))
        if g > 0.0 and step > 0.0:
            days = (t - onset) / _DAY
            parts.append("floor +%.1f kW since %s" % (step, _civil(
                _ifloor((onset + s["tz_offset_s"]) / _DAY))))
            parts.append("24/7 for %s" % ("%d days" % int(days) if days >= 2.0
                                         else "%d h" % int(days * 24.0)))
        else:
            parts.append("floor %.2f kW (baseline %.2f kW)" % (floor, base))
        if jit >= 0.0:
            parts.append("jitter %.1f%%" % (jit * 100.0))
        if ratio >= 0.0:
            parts.append("night/evening %.2f" % ratio)
        if pfe >= 0.0:
            parts.append("pf %.2f" % pfe)
        if floor >= s["level_kw"]:
            parts.append("sustained %.1f kW above the %.1f kW class level"
                         % (floor, s["level_kw"]))
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
        iv = self._ring
        uid = self._f[_UIDX]
        if o[0] != uid or o[1] != iv[_EVN]:
            evk = iv[_EVK]
            if evk == _EV_FIG:
                ev = self._explain()
            elif evk == _EV_COVER:
                ev = {"summary": "not enough data in the last 24 h (%d%%)"
                      % int(self._f[_COVER] * 100), "coverage": _r(self._f[_COVER], 100)}
            elif evk == _EV_RESYNC:
                ev = {"summary": "clock re-synchronised: re-reading the last 24 h"}
            else:
                ev = {"summary": "warming up: no history yet"}
            c = {}
            if iv[_HASC]:
                for i in range(_NFEAT):
                    c[FEATURES[i]] = self._f[_C + i]
            o[0] = uid
            o[1] = iv[_EVN]
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
