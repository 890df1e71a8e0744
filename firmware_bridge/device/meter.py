"""One meter on the device: the agent's own per-meter pipeline (agent/pipeline.py), plus
what only the device does: read the meter's registers over its RTU master (or its data
items over the DL/T 645 master) and restore its learned state from flash.

The compact meter table comes from the build (firmware_bridge/devconfig.py): ``reads`` =
[[fc, address, count], ...] and ``fields`` = [[name, fc, address, type, word_order,
scale], ...], already merged with quirks. A DL/T 645 meter has an ``address`` (12 digits),
reads [0x11, DI, bytes] and fields [name, 0x11, DI, "bcd<n>"|"bcds<n>", offset, scale]
(agent/quality.py decodes both).
"""

from agent.pipeline import MeterPipeline
from agent.policy import Policy
from agent.signature import Detector


def _core(mid, cfg, saved):
    """(detector, policy, restored) for a meter: from its saved state when that fits."""
    dset = cfg.get("detector") or {}
    pset = cfg.get("policy") or {}
    if saved:
        try:
            return (Detector.from_state(dset, saved["detector"]),
                    Policy.from_state(mid, pset, saved["policy"]), True)
        except (KeyError, TypeError, ValueError) as e:
            print("meter %s: saved state does not fit (%s); starting fresh" % (mid, e))
    return Detector(dset), Policy(mid, pset), False


class Meter(MeterPipeline):
    """Everything the device keeps for one meter (kept small: see bench/footprint.py)."""

    def __init__(self, cfg, telemetry_s, saved=None):
        detector, policy, restored = _core(cfg["id"], cfg, saved)
        MeterPipeline.__init__(self, cfg["fields"], detector, policy, telemetry_s,
                               cfg.get("frozen_s", 900.0), True, cfg["poll_s"], cfg["unit"],
                               restored, cfg.get("telemetry_quantities"))
        # Meters of one class share their settings tables: the detector and the policy
        # keep one copy per distinct settings themselves (nothing reaches into them here).
        self.reads = cfg["reads"]
        if cfg.get("address"):
            self.address = cfg["address"]  # a DL/T 645 meter

    def poll(self, master):
        """Read every planned block -> (fc, address, registers) blocks; raises the
        master's ModbusError or OSError."""
        blocks = []
        unit = self.unit
        for fc, address, count in self.reads:
            if fc == 0x11:  # DL/T 645 read data: ``address`` is the DI
                blocks.append((fc, address, master.read_item(self.address, address)))
                continue
            blocks.append((fc, address, master.read_registers(unit, fc, address, count)))
        return blocks
