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
  with pf a pool pump is not a rig, whatever its schedule.

``rise`` is weak, ungated evidence (at most ``w_rise``, below any alert) so that a small
or not yet repeated rise still ranks above the same home without it; ``level`` is the
backstop for a floor no household of the class reaches (farms, a rig present from day one).
"""

from agent.signature.mathx import clamp01, ramp

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
