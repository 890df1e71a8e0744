"""Does the register map fit the meter? Flags a wrong profile that still reads "fine".

A meter read with another model's profile often answers without any Modbus error: the
registers exist, they just mean something else (an SDM120 read as an SDM630 gives its
power in the L1 register and 0 W in the total). Each reading is then plausible on its
own, so the decoder's range checks pass and the meter runs as "ok 0.000 kW" for ever.
What gives it away is structure that no real meter shows: a total power that is not the
sum of its phases, 0 V on a meter that carries power, or values out of range poll after
poll. ``implausible()`` names what it sees in one reading (``loadwatch read`` uses it
directly); ``ProfileCheck`` only reports it after several polls in a row, so one glitch
does not make a healthy meter "degraded".
"""

from __future__ import annotations

from agent.model import Q_RANGE

MISMATCH_POLLS = 5  # implausible readings in a row before the health says so
PHASES = ("_l1", "_l2", "_l3")
ENERGY_STEP_KWH = 0.001  # counter growth that a meter reading 0 W cannot explain
MIN_POWER_W = 50.0  # below this, a meter's power is too small to judge its structure
HINT = ("the register map does not fit this meter: check the meter's model against the "
        "profile in the config (`loadwatch profiles`), or run `loadwatch scan` to identify it")


def implausible(values: dict[str, float], out_of_range: bool = False) -> str:
    """What in one reading contradicts the profile ("" when nothing does)."""
    p = values.get("p_w")
    phases = [values[n] for n in ("p_w" + s for s in PHASES) if n in values]
    if p is not None and phases:
        total = sum(phases)
        if abs(p - total) > max(MIN_POWER_W, 0.2 * max(abs(p), abs(total))):
            return ("p_w reads %.0f W but its phases add up to %.0f W" % (p, total))
    volts = [v for n, v in values.items() if n == "v_v" or n.startswith("v_v_l")]
    power = [abs(v) for n, v in values.items() if n == "p_w" or n.startswith("p_w_l")]
    if volts and power and max(power) > MIN_POWER_W and max(volts) == 0.0:
        return "every voltage reads 0 V on a meter carrying %.0f W" % max(power)
    f = values.get("f_hz")
    if volts and max(volts) == 0.0 and f is not None and 40.0 <= f <= 70.0:
        # A meter measures frequency on its voltage input: 0 V at 50 Hz is another map.
        return "every voltage reads 0 V while the frequency reads %.1f Hz" % f
    v_avg = values.get("v_v")
    v_phase = [values[n] for n in ("v_v" + s for s in PHASES) if n in values]
    if v_avg is not None and v_phase and v_avg == 0.0 and max(v_phase) > 50.0:
        return "v_v reads 0 V while a phase reads %.0f V" % max(v_phase)
    if out_of_range:
        return "values out of range for this profile"
    return ""


class ProfileCheck:
    """Per meter: ``update()`` each good poll; returns the mismatch once it persisted.

    Across polls it also sees what one reading cannot: an energy counter that keeps
    rising while the power register reads 0 W (the power comes from a register this
    profile does not know)."""

    def __init__(self, polls: int = MISMATCH_POLLS):
        self.polls = polls
        self.run = 0
        self.last = ""
        self._e_at_zero: float | None = None  # e_import_kwh when p_w started reading 0

    def _energy_without_power(self, values: dict[str, float]) -> str:
        p, e = values.get("p_w"), values.get("e_import_kwh")
        if p is None or e is None or p != 0.0:
            self._e_at_zero = None
            return ""
        if self._e_at_zero is None or e < self._e_at_zero:
            self._e_at_zero = e
            return ""
        if e - self._e_at_zero >= ENERGY_STEP_KWH:
            return ("e_import_kwh rose by %.3f kWh while p_w read 0 W"
                    % (e - self._e_at_zero))
        return ""

    def update(self, values: dict[str, float], quality: int) -> str:
        why = implausible(values, bool(quality & Q_RANGE)) or \
            self._energy_without_power(values)
        self.run = self.run + 1 if why else 0
        self.last = why
        return why if self.run >= self.polls else ""
