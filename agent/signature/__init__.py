"""Streaming load-signature detector (v2): is a hidden crypto-miner running behind this meter?

Why it is shaped so (DESIGN.md 4 and 10):

* A rig adds the same watts, with sharp edges at the same clock times, every day - 24/7,
  or only in the cheap hours of a time-of-use tariff (night-only), or off over the price
  peak (duty-cycled). Real homes are rarely flat, but the *floor* of each hour of their
  day (its quietest slots) is stable against its own past. So the unit of judgement is a
  *block*: the contiguous hours of the local day whose floor rose by the same amount
  against a protected per-hour baseline (features.py). A 24/7 rig is the block of 24 h.
* A block is judged on its size, its repetition on following days with the same edges and
  level (daylearn.py keeps the streak), its flatness, the sharpness of its edges, and -
  where the samples carry them - in-slot jitter and power factor (scoring.py).
* The baseline is *protected* (daylearn.py): drops are followed at once, rises only while
  they do not score as a rig, so a miner is never learned as normal.
* Work per sample is O(1): a sample in the open slot only updates a few accumulators (the
  fast path in ``update``); a closed slot only folds its mean into the open hour; the
  features (24 values) run once per closed hour and the learning once per day. The state
  is packed into two arrays (layout.py), < 2 KB as JSON and on an MCU's heap.
* Imports only ``math`` and ``array`` (and the package's own modules) so the same source
  runs on the MicroPython unix port and on microcontrollers.

The score is 0..100 with each feature's share reported by ``contributions()``; a typed
``Score`` (``verdict()``) is what the alert policy takes.
"""

from array import array

from agent.signature.daylearn import blocks_ended, day_closed, streak_alive
from agent.signature.features import bridged, floor_cover, runs, widen, window
from agent.signature.layout import (
    BACK,
    BH,
    BL_DAYS,
    BL_RISE,
    BL_SINCE,
    COVER,
    DAYIDX,
    DAYS,
    DH,
    EV_COVER,
    EV_FIG,
    EV_RESYNC,
    EV_WARM,
    EVK,
    EVN,
    FG_DAYS,
    FG_EDGE,
    FG_FLAT,
    FG_LEN,
    FG_LEVEL,
    FG_SCHED,
    FG_START,
    FG_VAR,
    FG_Z,
    FIG,
    HASC,
    HAVEDAY,
    HCNT,
    HIDX,
    HMIN,
    HMIN2,
    HV,
    JIT,
    LHOUR,
    LIDX,
    LMEAN,
    LVLH,
    MN,
    MX,
    NF,
    NFEAT,
    NHOUR,
    NO_DATA,
    NPF,
    NR,
    ONSET,
    PF,
    READY,
    REF,
    SCORE,
    SEND,
    SIDX,
    SPB,
    SPF,
    SS,
    TCLOSE,
    TLAST,
    UIDX,
    UP,
    UPB,
    WID,
    C,
    N,
    S,
)
from agent.signature.mathx import civil, ifloor, rnd
from agent.signature.scoring import FEATURES, judge
from agent.signature.verdict import Schedule, Score, SettingsError

try:
    from micropython import const

    _SHARE_OUT = True  # MicroPython: heap is scarce, keep one output cache for all meters
    _PACKED = True  # MicroPython: float state in an array('d'), no boxed float per value
except ImportError:  # CPython
    _SHARE_OUT = False  # CPython: one output cache per detector (no rebuild per sample)
    _PACKED = False  # CPython: float and int state in lists, whose indexing is faster

    def const(x):
        return x


__all__ = ["FEATURES", "Detector", "Schedule", "Score", "SettingsError", "civil_date",
           "default_settings"]

# The public name, for the payload codec's ISO times (agent/publish/payloads.py).
civil_date = civil

_INF = float("inf")
_DAY = const(86400)
_STATE_VERSION = const(2)
# A sample more than a day older than the newest one is ignored, unless this many such
# samples arrive before the next slot closes: then the earlier clock was the wrong one
# (e.g. an RTC that jumped years ahead and was corrected), and the detector re-anchors
# its slots on the new clock instead of ignoring every sample until the bogus time.
_RESYNC = const(30)

_TABLES = []  # settings dicts shared by detectors of equal settings
_UID = [0]
# evidence() and contributions() are built on demand from a few stored numbers (a cached
# dict per meter would be ~1 KB of heap on MicroPython). The runtime asks for both on every
# sample, so the last built pair is kept, keyed by detector and evaluation: [uid, evaluation
# number, evidence, contributions, schedule]; on MicroPython once for all detectors, on
# CPython in each detector.
_OUT = [0, -1, None, None, None]


def default_settings():
    """Every tunable of the detector, as plain numbers (config.py validates user keys here).

    Powers are kW, times seconds unless the name says hours/days, fractions 0..1.
    """
    return {
        "slot_s": 900.0,  # slot length; must divide an hour
        "tz_offset_s": 0.0,  # local time = UTC + this (hours of the day, day closes)
        "max_hold_s": 3600.0,  # a sample stands for empty slots up to this long after it
        "min_cover": 0.6,  # share of the last 24 hours that must hold data to judge
        "warmup_days": 2.0,  # full days learned before the score may leave 0
        "step_lo_kw": 0.25,  # an hour's floor rise that starts to count
        "step_hi_kw": 0.45,  # ... counts fully
        "up_z": 3.0,  # an hour is up when it rose this many times its usual day-to-day move
        "dev_floor_kw": 0.03,  # added to each hour's learned move (meter and noise floor)
        "dev_init_kw": 0.1,  # an hour's usual move before it has been learned
        "z_lo": 4.0,  # block rise / usual move of its hours: starts to count
        "z_hi": 8.0,  # ... counts fully
        "min_block_h": 3.0,  # shortest block judged
        "shape_good": 0.15,  # small-hours vs mid-afternoon rise, beyond their usual move,
        #                     share of the level: a rig at or below
        "shape_bad": 0.45,  # ... heating or cooling that follows the outdoor temperature
        "shape_veto": 0.6,  # share of a 24-h block's gate a weather shape takes away
        "sched_lo_h": 5.0,  # a scheduled block shorter than this is not judged
        "sched_full_h": 8.0,  # ... counts fully from this length (a valley tariff's night)
        "persist_lo_h": 10.0,  # hours a 24/7 block must hold before any score
        "persist_full_h": 20.0,  # ... for full persistence
        "flat_tol": 0.2,  # an hour is at the block's level within this share of it
        "flat_good": 0.85,  # share of the block's hours at its level: rig at or above
        "flat_bad": 0.5,  # ... weather, appliances at or below
        "flat_gate": 0.7,  # share of the gate an unflat block loses
        "var_good": 0.08,  # level change between repetitions: rig at or below
        "var_bad": 0.25,  # ... weather-driven at or above
        "const_unknown": 0.25,  # constancy credit before a second repetition has been seen
        "level_drop": 0.3,  # a repetition whose level fell more than this is another block
        "level_step": 0.15,  # a rise beyond this between repetitions is a rig added (ramp)
        "edge_good": 0.25,  # rise just outside the block / its level: sharp at or below
        "edge_bad": 0.6,  # ... soft at or above
        "judge_days": 3.0,  # repetitions before a risen block may be learned as normal
        "learn_up": 0.2,  # per day: how fast an hour's baseline follows a rise (when allowed)
        "learn_down": 0.5,  # per day: how fast it follows a drop
        "learn_below": 40.0,  # a judged block is learned only if it scored below this
        "jitter_good": 0.02,  # in-slot relative spread in the block: rig-like at or below
        "jitter_bad": 0.1,  # ... thermostat / compressor at or above
        "jitter_veto": 0.0,  # share of the score a thermostat-like jitter takes (0: see README)
        "pf_good": 0.93,  # power factor in the block: switch-mode PSU (APFC) at or above
        "pf_bad": 0.85,  # ... motor / pump at or below
        "pf_veto": 0.45,  # share of the score a motor-like pf takes away
        "level_kw": 6.0,  # sustained floor no household of this class reaches (backstop)
        "w_step": 20.0,  # weights: points each feature gives at full strength
        "w_persistence": 20.0,
        "w_flatness": 15.0,
        "w_constancy": 15.0,
        "w_edges": 10.0,
        "w_jitter": 10.0,
        "w_power_factor": 10.0,
        "w_rise": 12.0,  # ungated, below any alert: a small or unrepeated rise still ranks
    }


# Settings that are shares of something (a rate per day, a share of the gate or the score):
# above 1 they overshoot or turn a score negative.
_SHARES = ("min_cover", "learn_up", "learn_down", "flat_gate", "shape_veto", "pf_veto",
           "jitter_veto", "const_unknown")


def checked_settings(settings):
    """The defaults with ``settings`` applied, or a SettingsError naming the first setting
    refused: unknown, not a finite number, negative (only the time zone may be), a share
    above 1, or a value the detector cannot work with (a slot that does not divide an
    hour, a block outside 1..24 h, a zero persistence). The config names the key from the
    error's ``key``, never from its message (agent/settings.py)."""
    s = default_settings()
    if settings is not None:
        for k in settings:
            if k not in s:
                raise SettingsError(k, "unknown detector setting %r" % (k,))
            v = settings[k]
            why = None
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                why = "must be a number"
            elif not -_INF < v < _INF:
                why = "must be a finite number"
            elif v < 0.0 and k != "tz_offset_s":
                why = "must not be negative"
            elif v > 1.0 and k in _SHARES:
                why = "is a share: 0..1"
            if why is not None:
                raise SettingsError(k, "detector setting %s=%r %s" % (k, v, why))
            s[k] = float(v)
    slot = s["slot_s"]
    n = int(3600 // slot) if slot > 0 else 0
    if slot < 1.0 or n * slot != 3600:
        raise SettingsError("slot_s", "detector setting slot_s=%r must divide an hour "
                            "(e.g. 900)" % slot)
    if s["min_block_h"] < 1.0 or s["min_block_h"] > 24.0:
        raise SettingsError("min_block_h", "detector setting min_block_h must be in [1, 24]")
    if s["persist_full_h"] <= 0.0:
        raise SettingsError("persist_full_h", "detector setting persist_full_h must be above 0")
    if not -50400.0 <= s["tz_offset_s"] <= 50400.0:
        raise SettingsError("tz_offset_s", "detector setting tz_offset_s is outside +-14 h")
    return s


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


class Detector:
    """One meter's detector. ``update(t, p_w, pf=None)`` learns a sample, returns the score.

    Read by callers: ``score`` (0..100, last value), ``ready`` (False while warming up),
    ``verdict(t)`` (the typed ``Score`` the policy takes). ``contributions()`` and
    ``evidence()`` return dicts built at the last evaluation; treat them as read-only
    (they are shared, not copied, to keep per-sample cost flat).

    The state lives in ``_f`` and ``_ring`` (indices in layout.py); ``_s`` is the settings
    dict shared by detectors of equal settings.
    """

    def __init__(self, settings=None):
        s = checked_settings(settings)
        n = int(3600 // s["slot_s"])
        # Meters with the same settings share one settings dict (read-only), so a 32-meter
        # MCU holds it once, not 32 times.
        tb = None
        for x in _TABLES:
            if x == s:
                tb = x
                break
        if tb is None:
            tb = s
            if len(_TABLES) < 8:
                _TABLES.append(tb)
        self._s = tb
        self._f = array("d", [0.0] * NF) if _PACKED else [0.0] * NF
        self._ring = array("i", [NO_DATA] * NR) if _PACKED else [NO_DATA] * NR
        _UID[0] += 1
        self._f[UIDX] = _UID[0]  # identifies this detector in the shared output cache
        if not _SHARE_OUT:
            self._out = None  # CPython: this detector's own output cache
        self._reset()
        self._ring[SPB] = n

    @property
    def score(self):
        """The score (0..100) at the last evaluation."""
        return self._f[SCORE]

    @property
    def ready(self):
        """False while warming up (no score yet)."""
        return self._ring[READY] == 1

    def verdict(self, t):
        """The typed verdict at sample time ``t``: what ``Policy.update`` takes."""
        o = self._outputs()
        sc = o[4]
        return Score(t, self._f[SCORE], self._ring[READY] == 1,
                     sc.level_kw if sc is not None else 0.0, sc, o[3], o[2])

    # ------------------------------------------------------------------ state

    def _reset(self):
        """A fresh detector: nothing seen, nothing learned (the arrays are reused)."""
        f = self._f
        ring = self._ring
        uid = f[UIDX]
        for k in range(NF):
            f[k] = 0.0
        f[UIDX] = uid
        for k in range(HV):
            ring[k] = 0
        for k in range(HV, NR):
            ring[k] = NO_DATA
        f[SEND] = -_INF  # forces the first sample through the slow path
        f[TLAST] = -_INF
        f[MN] = _INF
        f[MX] = -_INF
        f[TCLOSE] = -_INF
        f[JIT] = -1.0
        f[PF] = -1.0
        ring[HIDX] = -1
        ring[LHOUR] = -1
        f[HMIN] = _INF
        f[HMIN2] = _INF
        f[WID] = _INF
        f[FIG + FG_SCHED] = -1.0
        ring[LMEAN] = NO_DATA
        ring[EVK] = EV_WARM

    def state(self):
        """Everything learned, as JSON-able plain numbers and lists (no infinities)."""
        f = self._f
        iv = self._ring
        return {
            "v": _STATE_VERSION,
            "slot_s": self._s["slot_s"],
            "f": [_enc(f[k]) for k in range(UIDX)],
            "i": list(iv[0:NR]),
        }

    @classmethod
    def from_state(cls, settings, state):
        """A detector with ``settings`` that continues exactly where ``state`` left off.

        Raises ValueError for a state that does not fit (another version, slot length or
        size), so the caller can start that meter afresh instead of crashing.
        """
        d = cls(settings)
        if not isinstance(state, dict):
            raise ValueError("detector state must be a dict, not %r" % (type(state),))
        try:
            d._restore(state)
        except (IndexError, KeyError, TypeError):
            raise ValueError("detector state is truncated or malformed") from None
        except OverflowError:  # a count beyond the 32-bit ints of _ring (CPython)
            raise ValueError("detector state holds a number out of range") from None
        return d

    def _restore(self, state):
        f = self._f
        iv = self._ring
        if state.get("v") != _STATE_VERSION:
            raise ValueError("detector state version %r is not %d" % (state.get("v"),
                                                                       _STATE_VERSION))
        if float(state["slot_s"]) != self._s["slot_s"]:
            raise ValueError("detector state was saved with slot_s=%r, settings say %r"
                             % (state["slot_s"], self._s["slot_s"]))
        fl = state["f"]
        il = state["i"]
        if len(fl) != UIDX or len(il) != NR:
            raise ValueError("detector state holds %d/%d numbers, expected %d/%d"
                             % (len(fl), len(il), UIDX, NR))
        vals = [_dec(x) for x in fl]
        ints = [int(x) for x in il]
        for k in range(UIDX):
            f[k] = vals[k]
        for k in (SIDX, LIDX):
            if f[k] != int(f[k]):
                raise ValueError("detector state: slot/hour/day numbers must be whole")
            if not _PACKED:
                f[k] = int(f[k])
        spb = iv[SPB]
        for k in range(NR):
            iv[k] = ints[k]
        iv[SPB] = spb  # (from the settings, whatever the state says)
        iv[READY] = 1 if iv[DAYS] >= self._s["warmup_days"] else 0

    # ------------------------------------------------------------------ per sample

    def update(self, t, p_w, pf=None):
        """Learn one sample (t UNIX s, p_w watts, pf optional) and return the score.

        Samples that are NaN/inf/negative, or older than the last one (clock went
        backwards), are ignored: never learned, never scored.
        """
        # Fast path: same slot, time not going backwards, 0 <= p < inf (False for NaN).
        f = self._f
        if f[TLAST] <= t < f[SEND] and 0.0 <= p_w < _INF:
            f[TLAST] = t
            f[N] += 1.0
            d = p_w - f[REF]
            f[S] += d
            f[SS] += d * d
            if p_w < f[MN]:
                f[MN] = p_w
            if p_w > f[MX]:
                f[MX] = p_w
            if pf is not None and 0.0 < pf <= 1.0:
                f[NPF] += 1.0
                f[SPF] += pf
            return f[SCORE]
        return self._slow(t, p_w, pf)

    def _slow(self, t, p_w, pf):
        f = self._f
        iv = self._ring
        if not (0.0 <= p_w < _INF) or not (-_INF < t < _INF):
            return f[SCORE]  # bad reading: ignore
        if t < f[TLAST]:
            # Clock went backwards: ignore, unless it has clearly stayed back (_RESYNC).
            if t >= f[TLAST] - _DAY:
                return f[SCORE]
            iv[BACK] += 1
            if iv[BACK] < _RESYNC:
                return f[SCORE]
            self._resync()
        if t >= f[SEND]:
            iv[BACK] = 0
            if f[N] > 0.0:
                self._close_slot()
            s = self._s
            slot = s["slot_s"]
            tz = s["tz_offset_s"]
            x = (t + tz) / slot
            idx = int(x)  # floor, as an int on every port
            if idx > x:
                idx -= 1
            self._advance(idx, t)
            # The sample opens the slot (the fast path's sums, from zero).
            f[SIDX] = idx
            f[SEND] = (idx + 1) * slot - tz
            f[TLAST] = t
            f[N] = 1.0
            f[REF] = p_w
            f[S] = 0.0
            f[SS] = 0.0
            f[MN] = p_w
            f[MX] = p_w
            if pf is not None and 0.0 < pf <= 1.0:
                f[NPF] = 1.0
                f[SPF] = pf
            else:
                f[NPF] = 0.0
                f[SPF] = 0.0
            return f[SCORE]
        # The sample joins the slot as on update()'s fast path, written out again rather
        # than re-entering update(): where rounding puts t on the new slot's end exactly,
        # the fast path's test fails and update() would come back here for ever.
        f[TLAST] = t
        f[N] += 1.0
        d = p_w - f[REF]
        f[S] += d
        f[SS] += d * d
        if p_w < f[MN]:
            f[MN] = p_w
        if p_w > f[MX]:
            f[MX] = p_w
        if pf is not None and 0.0 < pf <= 1.0:
            f[NPF] += 1.0
            f[SPF] += pf
        return f[SCORE]

    def _resync(self):
        """Forget the time base (open slot and hour, the last 24 h), keep what was learned."""
        f = self._f
        iv = self._ring
        f[SEND] = -_INF
        f[TLAST] = -_INF
        f[N] = 0.0
        for k in range(HV, NR):
            iv[k] = NO_DATA
        iv[LMEAN] = NO_DATA
        f[TCLOSE] = -_INF
        iv[HIDX] = -1
        iv[LHOUR] = -1
        f[HMIN] = _INF
        f[HMIN2] = _INF
        iv[HCNT] = 0
        iv[HAVEDAY] = 0
        iv[UPB] = 0
        f[BL_DAYS] = 0.0
        f[LVLH] = 0.0
        f[UP] = 0.0
        iv[BACK] = 0
        f[SCORE] = 0.0
        iv[HASC] = 0
        for k in range(NFEAT):
            f[C + k] = 0.0
        iv[EVK] = EV_RESYNC
        iv[EVN] += 1

    # ------------------------------------------------------------------ per slot

    def _close_slot(self):
        f = self._f
        n = f[N]
        mean = f[REF] + f[S] / n
        w = ifloor(mean + 0.5)
        self._ring[LMEAN] = w
        sidx = int(f[SIDX])
        f[LIDX] = sidx
        t = f[TCLOSE] = f[TLAST]
        if n >= 5.0 or f[NPF] > 0.0:
            self._slot_shape(sidx, n, mean)
        self._slot_into_hour(sidx, w, t)

    def _slot_shape(self, sidx, n, mean):
        """In-slot jitter and power factor feed slow averages, only for slots inside the
        judged block and near its level: that is where a rig shows itself (a kettle on
        top of a rig, and the hours outside the block, are the household). The open hour
        just after the block counts as inside: a run going on ends at the newest closed
        hour, so otherwise no slot of it would ever count until it had lasted 24 h."""
        f = self._f
        h = (sidx // self._ring[SPB]) % NHOUR
        lvl = f[FIG + FG_LEVEL]
        lo = 0.5 * lvl
        if lo < self._s["step_lo_kw"]:
            lo = self._s["step_lo_kw"]
        x = mean / 1000.0 - f[BH + h]
        if f[DH + h] > 0.0 and lo <= x <= 1.3 * lvl + 0.05 \
                and (h - int(f[FIG + FG_START])) % NHOUR <= f[FIG + FG_LEN]:
            if n >= 5.0:
                var = f[SS] / n - (f[S] / n) * (f[S] / n)
                j = (var ** 0.5) / mean if var > 0.0 else 0.0
                f[JIT] = j if f[JIT] < 0.0 else f[JIT] + 0.1 * (j - f[JIT])
            if f[NPF] > 0.0:
                p = f[SPF] / f[NPF]
                f[PF] = p if f[PF] < 0.0 else f[PF] + 0.1 * (p - f[PF])

    def _slot_into_hour(self, sidx, w, t):
        """Fold one closed (or held) slot mean into its hour; close the hour at its end."""
        f = self._f
        ring = self._ring
        spb = ring[SPB]
        hn = sidx // spb
        if ring[HIDX] != hn:
            if ring[HIDX] >= 0:
                self._close_hour(ring[HIDX], t)  # its last slot never came
            ring[HIDX] = hn
            f[HMIN] = w
            f[HMIN2] = _INF
            ring[HCNT] = 1
        else:
            ring[HCNT] += 1
            if w < f[HMIN]:
                f[HMIN2] = f[HMIN]
                f[HMIN] = w
            elif w < f[HMIN2]:
                f[HMIN2] = w
        if sidx % spb == spb - 1:
            self._close_hour(hn, t)

    def _advance(self, idx, t):
        """Fold the slots between the last closed one and ``idx`` in as held, or skip them."""
        f = self._f
        ring = self._ring
        if f[TCLOSE] == -_INF:
            return  # nothing closed yet
        last = int(f[LIDX])
        gap = idx - last - 1
        if gap <= 0:
            return
        hold = 0
        if ring[LMEAN] >= 0:
            # The last sample stands for the empty slots after it, up to max_hold_s of them
            # (a sparse poller's hourly samples still fill their hours); later ones stay
            # empty.
            hold = int(self._s["max_hold_s"] // self._s["slot_s"])
            if hold > gap:
                hold = gap
        if hold > 0:
            w = ring[LMEAN]
            if hold == 1:  # (30-min samples in 15-min slots: every sample holds one)
                self._slot_into_hour(last + 1, w, t)
            else:
                if hold > NHOUR * ring[SPB]:
                    hold = NHOUR * ring[SPB]
                for k in range(1, hold + 1):
                    self._slot_into_hour(last + k, w, t)
        if hold == gap:
            f[LIDX] = last + gap
        else:
            f[LIDX] = idx - 1
            ring[LMEAN] = NO_DATA
            # Hours of the gap hold nothing: say so now rather than at the next hour close.
            hn = (idx * self._s["slot_s"]) // 3600
            kept = ring[LHOUR] - (hn - NHOUR)
            if kept < f[COVER] * NHOUR:
                f[COVER] = (kept if kept > 0.0 else 0.0) / NHOUR
                if f[COVER] < self._s["min_cover"]:
                    ring[EVK] = EV_COVER
                    ring[EVN] += 1

    # ------------------------------------------------------------------ per hour

    def _close_hour(self, hn, t):
        f = self._f
        ring = self._ring
        ring[HIDX] = -1
        last = ring[LHOUR]
        if last >= 0 and hn <= last:
            return
        # The hour's floor: its second-lowest slot mean, so that one slot dipped by a rig
        # restart (a few minutes) does not move it; the lowest when it had two slots.
        w = f[HMIN2] if ring[HCNT] >= 3 else f[HMIN]
        day = hn // NHOUR
        if ring[HAVEDAY] == 0:
            ring[HAVEDAY] = 1
            ring[DAYIDX] = day
        elif hn - last > 2 * NHOUR:
            # Two days without data: nothing of the last 24 h is left to judge.
            for k in range(NHOUR):
                ring[HV + k] = NO_DATA
            ring[DAYIDX] = day
        else:
            for k in range(last + 1, hn):  # hours skipped without data
                if k // NHOUR > ring[DAYIDX]:
                    self._close_day()
                ring[HV + k % NHOUR] = NO_DATA
            if day > ring[DAYIDX]:
                self._close_day()
        ring[HV + hn % NHOUR] = int(w)
        ring[LHOUR] = hn
        self._evaluate(hn % NHOUR, t)
        if hn % NHOUR == NHOUR - 1:
            self._close_day()

    def _close_day(self):
        day_closed(self._f, self._ring, self._s)
        self._ring[DAYIDX] += 1
        self._ring[UPB] = -1  # the baselines moved: the next hour is judged in full

    def _unchanged(self, h_now, t):
        """True when the hour just closed cannot change the last evaluation's outcome, so
        the O(24) features can be skipped (most hours of most meters: nothing rose).

        Nothing changes when the new hour is down, the hour before it was down (no block
        ended) and the hour it replaces (the same hour yesterday) was down too, with the
        streak as alive as before. A steady 24-h block (every hour up, yesterday and now)
        is re-judged every 6 h and at the day's end only: its figures move as fast as the
        weather, not per hour."""
        f = self._f
        ring = self._ring
        ub = ring[UPB]
        alive = 1 if streak_alive(f, t) else 0
        if ub < 0 or (ub >> NHOUR) & 1 != alive:
            return False
        new = False
        if f[DH + h_now] > 0.0:
            s = self._s
            x = ring[HV + h_now] / 1000.0 - f[BH + h_now]
            thr = s["up_z"] * (f[DH + h_now] + s["dev_floor_kw"])
            if thr < s["step_lo_kw"]:
                thr = s["step_lo_kw"]
            new = x >= thr or x >= f[WID]
        was = (ub >> h_now) & 1
        before = (ub >> ((h_now - 1) % NHOUR)) & 1
        if not new:
            return was == 0 and before == 0
        return (ub & 0xFFFFFF) == 0xFFFFFF and h_now % 6 != 5

    def _evaluate(self, h_now, t):
        """Features and the score from the last 24 hour floors; once per closed hour: the
        coverage gate, the window's up hours (features.py), the blocks that ended
        (daylearn.py), the candidate judged (scoring.py), its figures kept (``_keep``)."""
        s = self._s
        f = self._f
        ring = self._ring
        # (An hour with data replaces the same hour of yesterday: the coverage of a judged
        # window cannot fall, and the 24-h floor is at most this hour's.)
        if ring[EVK] == EV_FIG and f[LVLH] == 0.0 \
                and ring[HV + h_now] < 1000.0 * s["level_kw"] and self._unchanged(h_now, t):
            return
        cover, floor = floor_cover(ring)
        f[COVER] = cover
        if cover < s["min_cover"]:
            ring[EVK] = EV_COVER
            ring[EVN] += 1
            return
        if floor >= s["level_kw"]:
            f[LVLH] += 1.0
        else:
            f[LVLH] = 0.0
        e, up = window(f, ring, s, h_now)
        up, f[WID] = widen(e, up, s)
        u = bridged(e, up)
        a, n, cn = runs(u)
        blocks_ended(e, up, u, cn, h_now, t, f, s)
        alive = streak_alive(f, t)
        self._keep(judge(e, up, a, n, cn, h_now, alive, floor, f, s), t, h_now, up, alive)

    def _keep(self, best, t, h_now, up, alive):
        """Store the judged candidate (scoring.judge's tuple): the score, its contributions
        (0 while warming up), the figures evidence() reads, the run's onset and
        persistence, and the up hours that ``_unchanged`` compares the next hour with."""
        f = self._f
        ring = self._ring
        total = best[0]
        c = best[1]
        if ring[READY] == 0:
            total = 0.0
            for i in range(NFEAT):
                c[i] = 0.0
        for i in range(NFEAT):
            f[C + i] = c[i]
        ring[HASC] = 1
        g = FIG
        f[g + FG_START] = best[2]
        f[g + FG_LEN] = best[3]
        f[g + FG_LEVEL] = best[4]
        f[g + FG_FLAT] = best[5]
        f[g + FG_EDGE] = best[6]
        f[g + FG_DAYS] = best[7]
        f[g + FG_VAR] = best[8]
        f[g + FG_SCHED] = best[9]
        f[g + FG_Z] = best[10]
        pers = best[11]
        if best[9] == 1.0 and best[7] >= 1.0:
            f[ONSET] = f[BL_SINCE]  # a schedule: since its first block
        elif pers > 0.0 and f[UP] <= 0.0:
            f[ONSET] = t - pers * 3600.0
            # A new run: its jitter and pf are its own, not an earlier block's.
            f[JIT] = -1.0
            f[PF] = -1.0
        f[UP] = pers
        f[SCORE] = total
        ub = 1 << NHOUR if alive else 0
        for p in range(NHOUR):
            if up[p]:
                ub |= 1 << ((h_now + 1 + p) % NHOUR)
        ring[UPB] = ub
        ring[EVK] = EV_FIG
        ring[EVN] += 1

    # ------------------------------------------------------------------ outputs

    def _schedule(self):
        """The judged block as a Schedule (None: no block, or not risen enough to name)."""
        f = self._f
        g = FIG
        if f[g + FG_SCHED] < 0.0 or f[g + FG_LEVEL] < self._s["step_lo_kw"]:
            return None
        start = int(f[g + FG_START])
        n = int(f[g + FG_LEN])
        if f[g + FG_SCHED] == 0.0:
            start = 0
            n = NHOUR
        end = start + n
        if end > NHOUR:
            end -= NHOUR
        days = int(f[g + FG_DAYS])
        return Schedule(start, end if n < NHOUR else NHOUR, days, rnd(f[g + FG_LEVEL], 1000),
                        int(f[ONSET]))

    def _explain(self, sc):
        f = self._f
        s = self._s
        g = FIG
        # The 24-h floor and the lowest learned hour baseline (kW), for the figures.
        floor = _INF
        for k in range(HV, NR):
            if 0 <= self._ring[k] < floor:
                floor = self._ring[k]
        floor = floor / 1000.0 if floor < _INF else 0.0
        base = _INF
        for h in range(NHOUR):
            if f[DH + h] > 0.0 and f[BH + h] < base:
                base = f[BH + h]
        if base == _INF:
            base = 0.0
        level = f[g + FG_LEVEL]
        jit = f[JIT]
        pfe = f[PF]
        days = self._ring[DAYS]
        var = f[g + FG_VAR]
        ev = {
            "floor_kw": rnd(floor, 1000),
            "baseline_kw": rnd(base, 1000),
            "step_kw": rnd(level, 1000),
            "persist_h": rnd(f[UP], 10),
            "block_start_h": int(f[g + FG_START]) if f[g + FG_SCHED] >= 0.0 else None,
            "block_hours": int(f[g + FG_LEN]),
            "block_flat": rnd(f[g + FG_FLAT], 100),
            "block_edge": rnd(f[g + FG_EDGE], 100),
            "block_z": rnd(f[g + FG_Z], 10),
            "days_seen": int(f[g + FG_DAYS]),
            "level_change_pct": rnd(var * 100.0, 10) if var >= 0.0 else None,
            "ramp": 1 if f[BL_RISE] > 0.0 and f[g + FG_DAYS] >= 1.0 else 0,
            "jitter_pct": rnd(jit * 100.0, 10) if jit >= 0.0 else None,
            "pf": rnd(pfe, 1000) if pfe >= 0.0 else None,
            "coverage": rnd(f[COVER], 100),
            "days_learned": days,
            "onset_t": int(f[ONSET]) if f[UP] > 0.0 else None,
            "schedule": sc.as_dict() if sc is not None else None,
            "block": (("24/7" if sc.all_day else "%02d:00-%02d:00" % (sc.start_h,
                                                                       sc.end_h % NHOUR))
                      if sc is not None else None),
        }
        parts = []
        if self._ring[READY] == 0:
            parts.append("warming up (%d of %d days)" % (days, int(s["warmup_days"])))
        if sc is not None and f[UP] > 0.0:
            since = civil(ifloor((f[ONSET] + s["tz_offset_s"]) / _DAY))
            if sc.all_day:
                held = f[UP] / 24.0
                txt = "+%.1f kW 24/7 since %s (%s" % (
                    level, since, "%d days" % int(held) if held >= 2.0
                    else "%d h" % int(f[UP]))
            elif sc.days < 1:
                # a run going on now, not yet seen to end or repeat
                txt = "+%.1f kW since %02d:00 on %s (%d h so far" % (
                    level, sc.start_h, since, int(f[UP]))
            else:
                word = "night" if sc.start_h >= 18 and sc.end_h <= 9 else "day"
                txt = "+%.1f kW from %02d:00 to %02d:00 every %s since %s (%d %s" % (
                    level, sc.start_h, sc.end_h % NHOUR, word, since, sc.days, word
                    + ("s" if sc.days != 1 else ""))
            if var >= 0.0:
                txt += ", level within %d %%" % int(var * 100.0 + 0.5)
            parts.append(txt + ")")
        else:
            parts.append("floor %.2f kW (baseline %.2f kW)" % (floor, base))
        if f[BL_RISE] > 0.0 and f[g + FG_DAYS] >= 1.0:
            parts.append("rising in steps")
        if jit >= 0.0:
            parts.append("jitter %.1f%%" % (jit * 100.0))
        if pfe >= 0.0:
            parts.append("pf %.2f" % pfe)
        if floor >= s["level_kw"]:
            parts.append("sustained %.1f kW above the %.1f kW class level"
                         % (floor, s["level_kw"]))
        ev["summary"] = ", ".join(parts)
        return ev

    def _outputs(self):
        if _SHARE_OUT:
            o = _OUT
        else:
            o = self._out
            if o is None:
                o = [0, -1, None, None, None]
                self._out = o
        iv = self._ring
        uid = self._f[UIDX]
        if o[0] != uid or o[1] != iv[EVN]:
            evk = iv[EVK]
            sc = None
            if evk == EV_FIG:
                sc = self._schedule()
                ev = self._explain(sc)
            elif evk == EV_COVER:
                ev = {"summary": "not enough data in the last 24 h (%d%%)"
                      % int(self._f[COVER] * 100), "coverage": rnd(self._f[COVER], 100),
                      "days_learned": iv[DAYS]}
            elif evk == EV_RESYNC:
                ev = {"summary": "clock re-synchronised: re-reading the last 24 h"}
            else:
                ev = {"summary": "warming up: no history yet"}
            c = {}
            if iv[HASC]:
                for i in range(NFEAT):
                    c[FEATURES[i]] = self._f[C + i]
            o[0] = uid
            o[1] = iv[EVN]
            o[2] = ev
            o[3] = c
            o[4] = sc
        return o

    def contributions(self):
        """Points of the score each feature gave at the last evaluation (sum = score).

        Built on demand and shared until the next evaluation: treat as read-only."""
        return self._outputs()[3]

    def evidence(self):
        """Figures behind the score and a one-line human summary (JSON-able).

        Built on demand and shared until the next evaluation: treat as read-only."""
        return self._outputs()[2]

