"""Load models for the rig and the benchmark: pure, seeded ``power(t) -> (p_w, pf)``.

- base.py: the Load protocol, hash noise, Sum/Window/Shifted/Scaled/Constant
- traces.py: the real SGSC / UCI / OPSD traces as Loads
- miners.py: GPU rigs, Antminer S9/S19, farms, evasion schedules
- synthetic.py: a synthetic household for runs without the data files
- households.py: ``demo_households`` for ``loadwatch demo``
- appliances.py (hil room): heat pump, EV, water heater, grow lights, home server
"""

from hil.loads.base import Constant, Load, Scaled, Shifted, Sum, Window
from hil.loads.households import DemoHouseholds, DemoMeter, demo_households

__all__ = ["Constant", "DemoHouseholds", "DemoMeter", "Load", "Scaled", "Shifted", "Sum",
           "Window", "demo_households"]
