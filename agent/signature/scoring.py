"""The score: how miner-like the judged block is, 0..100, with each feature's share.

``gate`` = size x persistence: no lasting, sizeable rise, no score, however flat the home
looks (vacant homes are flat too). Inside the gate the block's qualities add points:

* **step**: the rise is large in kW (``step_lo_kw`` .. ``step_hi_kw``) *and* against how
  far those hours usually move from day to day (``z_lo`` .. ``z_hi``);
* **persistence**: hours risen in a row for a 24/7 block (``persist_lo_h`` ..
  ``persist_full_h``); repetitions for a scheduled block (full at the second);
* **flatness**: the share of the block's hours at its level (a rig is flat; heating
  follows the outdoor temperature through the night); it also narrows the gate
  (``flat_gate``);
* **constancy**: the level from one repetition to the next (a rig draws the same watts;
  storage heaters and EVs take what the weather or the trip needed);
* **edges**: the hours just outside the block did not rise (a switch, not a thermostat),
  and the edges stayed at the same clock hours from one repetition to the next;
* **jitter** and **power factor** inside the block, where the samples carry them: a rig's
  switch-mode supplies hold pf >= 0.95 with ~1 % ripple, a pump motor sits at 0.7-0.85. A
  measured pf below ``pf_good`` also scales the whole score down (``pf_veto``): at 1 s
  with pf a pool pump is not a rig, whatever its schedule. ``jitter_veto`` (0 by default)
  does the same for a jitter above ``jitter_good``: a heat pump's PFC holds a rig's pf,
  but its defrost and a thermostat's cycling are not a rig's ~1 % ripple; a busy home's
  own minute-to-minute spread on top of a rig is not either (README: why it is off).

``rise`` is weak, ungated evidence (at most ``w_rise``, below any alert) so that a small
or not yet repeated rise still ranks above the same home without it; ``level`` is the
backstop for a floor no household of the class reaches (farms, a rig present from day one).

Two blocks are candidates at each evaluation (``judge``): the run of up hours going on now
(a 24/7 rig, or a schedule's first days) and the streak of a scheduled block; the one that
scores higher is judged. A candidate is the tuple (score, contributions, start hour,
length h, level kW, flatness, edge, days seen, level change, schedule flag 1/0/-1, level
against the usual move, persistence h) that the detector keeps as its figures.
"""

from agent.signature.features import describe, usual_move, weather_shape
from agent.signature.layout import (
    BL_DAYS,
    BL_EDGE,
    BL_FLAT,
    BL_LEN,
    BL_LEVEL,
    BL_SHIFT,
    BL_START,
    BL_VAR,
    JIT,
    LVLH,
    NHOUR,
    PF,
)
from agent.signature.mathx import clamp01, falls, ramp, rises

FEATURES = ("step", "persistence", "flatness", "constancy", "edges", "jitter",
            "power_factor", "rise", "level")


def size(level, move, hours, s):
    """0..1: how much the block's rise counts, in kW and against the hours' usual move.

    The move is of one hour; a block of n hours that all rose together is that much less
    likely by chance, as the mean of n noisy hours moves sqrt(n) times less (n counted
    as at least 8 h and at most 24)."""
    if level <= 0.0:
        return 0.0
    k = hours / 8.0
    if k < 1.0:
        k = 1.0
    return ramp(level, s["step_lo_kw"], s["step_hi_kw"]) * ramp(
        level / move * (k ** 0.5), s["z_lo"], s["z_hi"])


def points(gate, flat, var, edge, shift, jit, pf, rise, level_pts, s):
    """The contributions, in FEATURES order; they sum to the score (0..100)."""
    f_flat = ramp(flat, s["flat_bad"], s["flat_good"])
    # A rig draws the same watts through its block; a load whose rise follows the hour
    # (heating through a cold night, a thermostat) is not one however steady it is.
    gate = gate * (1.0 - s["flat_gate"] * (1.0 - f_flat))
    f_const = ramp(var, s["var_bad"], s["var_good"]) if var >= 0.0 else s["const_unknown"]
    # Sharp edges at the same clock times: contrast, and how far they moved between days.
    f_edge = ramp(edge, s["edge_bad"], s["edge_good"]) * ramp(shift, 2.0, 0.0)
    f_jit = ramp(jit, s["jitter_bad"], s["jitter_good"]) if jit >= 0.0 else 0.5
    f_pf = ramp(pf, s["pf_bad"], s["pf_good"]) if pf >= 0.0 else 0.5
    k = 1.0
    if pf >= 0.0:
        k = 1.0 - s["pf_veto"] * (1.0 - f_pf)
    if jit >= 0.0:
        k *= 1.0 - s["jitter_veto"] * (1.0 - f_jit)
    c = [gate * s["w_step"] * k, gate * s["w_persistence"] * k, gate * f_flat * s["w_flatness"] * k,
         gate * f_const * s["w_constancy"] * k, gate * f_edge * s["w_edges"] * k,
         gate * f_jit * s["w_jitter"] * k, gate * f_pf * s["w_power_factor"] * k,
         (1.0 - gate) * s["w_rise"] * clamp01(rise) * k, 0.0]
    total = 0.0
    for x in c:
        total += x
    if level_pts > total:
        # The backstop wins: report it alone so the explanation stays honest.
        for i in range(len(c)):
            c[i] = 0.0
        c[8] = level_pts
        total = level_pts
    if total > 100.0:
        m = 100.0 / total
        for i in range(len(c)):
            c[i] *= m
        total = 100.0
    return total, c


def judge(e, up, a, n, cn, h_now, alive, floor, f, s):
    """The candidate judged at local hour ``h_now``: the higher-scoring of the run going on
    now and the streak of a scheduled block, or none (the score of the weak evidence).

    ``e``/``up`` are the window's rises and up hours, (``a``, ``n``) its longest run,
    ``cn`` the run ending now, ``alive`` whether the streak is, ``floor`` the 24-h floor."""
    lvl_pts = 100.0 * clamp01(f[LVLH] / s["persist_full_h"]) \
        if floor >= s["level_kw"] else 0.0
    # Weak evidence: the most risen run of the window, whatever its length.
    rise = 0.0
    if n >= int(s["min_block_h"]):
        lv, _, _, _ = describe(e, up, a, n, s)
        start = (h_now + 1 + a) % NHOUR
        rise = size(lv, usual_move(f, s, start, n), n, s)
    best = run_now(e, up, cn, h_now, alive, rise, lvl_pts, f, s)
    if alive and f[BL_LEN] < NHOUR:
        other = streak(rise, lvl_pts, f, s)
        if best is None or other[0] > best[0]:
            best = other
    if best is None:
        total, c = points(0.0, 0.0, -1.0, 1.0, 0.0, f[JIT], f[PF], rise, lvl_pts, s)
        best = (total, c, -1.0, 0.0, 0.0, 0.0, 1.0, 0.0, -1.0, -1.0, 0.0, 0.0)
    return best


def run_now(e, up, cn, h_now, alive, rise, lvl_pts, f, s):
    """The run of ``cn`` up hours going on now (24/7, or a schedule's first days) as a
    candidate, or None when shorter than a block: persistence in hours, plus whole days
    of a 24-h streak; a rise that follows the outdoor temperature loses its gate."""
    if cn < int(s["min_block_h"]):
        return None
    ca = NHOUR - cn
    start = (h_now + 1 + ca) % NHOUR
    lv, fl, ed, _ = describe(e, up, ca, cn, s, f, start)
    mv = usual_move(f, s, start, cn)
    all_day = alive and f[BL_LEN] >= NHOUR
    pers = cn + (NHOUR * f[BL_DAYS] if all_day else 0.0)
    g = size(lv, mv, cn, s) * rises(pers, s["persist_lo_h"], s["persist_full_h"])
    sh = weather_shape(e, ca, cn, start, lv, f, s)
    if sh >= 0.0:
        g *= 1.0 - s["shape_veto"] * (1.0 - falls(sh, s["shape_good"], s["shape_bad"]))
    var = f[BL_VAR] if all_day else -1.0
    if cn >= NHOUR:
        ed = 0.0
    total, c = points(g, fl, var, ed, f[BL_SHIFT] if all_day else 0.0, f[JIT], f[PF], rise,
                      lvl_pts, s)
    return (total, c, start, cn, lv, fl, ed, f[BL_DAYS] if all_day else 0.0, var,
            1.0 if cn < NHOUR else 0.0, lv / mv, pers)


def streak(rise, lvl_pts, f, s):
    """The streak of a scheduled block (live, shorter than 24 h) as a candidate: full at
    its second repetition and from ``sched_full_h`` hours long."""
    bl = int(f[BL_LEN])
    bs = int(f[BL_START])
    lv = f[BL_LEVEL]
    mv = usual_move(f, s, bs, bl)
    # Mining pays by the hour: a miner who hides in the cheap hours takes all of them (a
    # valley tariff's 7-8 h), not a few; households, pumps and chargers make the short
    # blocks.
    g = size(lv, mv, bl, s) * rises(f[BL_DAYS], 1.0, 2.0) \
        * rises(bl, s["sched_lo_h"], s["sched_full_h"])
    var = f[BL_VAR] if f[BL_DAYS] >= 2.0 else -1.0
    total, c = points(g, f[BL_FLAT], var, f[BL_EDGE], f[BL_SHIFT], f[JIT], f[PF], rise,
                      lvl_pts, s)
    return (total, c, bs, bl, lv, f[BL_FLAT], f[BL_EDGE], f[BL_DAYS], var, 1.0, lv / mv,
            f[BL_DAYS] * bl)
