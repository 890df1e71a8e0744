"""Every bad answer a DL/T 645 line can give, on a real paced line (2400 8E1, ptys):
each becomes a clear quality flag and a health reason naming the meter, the other meters
keep being read, and the faulty meter is read normally again once the fault goes.

Faults come from the simulated meters themselves (hil/dlt645.py): a wrong checksum, a
reply from another address, a frame cut short, noise around a good frame, an error
reply, a meter that says "more follows" forever, a DI it does not have, non-BCD values.
"""

from __future__ import annotations

import pytest
from campaign import record
from dlt.rig import Rig
from pollkit import polling, sweep

from agent.decode import Decoder
from agent.model import Q_CRC, Q_ERROR_REPLY, Q_MISSING, Q_NAN, quality_names

# Fault campaigns (tests/faults): `make test` and `make faults` only.
pytestmark = pytest.mark.slow

CASES = [
    # fault, set_fault kwargs, expected flag (0: good reading), health state, reason
    ("checksum", {}, Q_CRC, "down", "bad checksum"),
    ("wrong_address", {}, Q_CRC, "down", "the reply came from address 000012340003"),
    ("truncated", {}, Q_CRC, "down", "bytes arrived but no complete frame"),
    ("garbage", {}, 0, "ok", ""),
    ("error", {"code": 0x04}, Q_ERROR_REPLY, "degraded",
     "error 0x04: password wrong or not authorised"),
    ("endless", {}, Q_CRC, "down", "still 'more follows' (0xB1) after 8 follow-up frames"),
    ("unsupported", {"di": "02030000"}, Q_ERROR_REPLY, "degraded",
     "DI 02030000: error 0x02: no such data (DI not supported)"),
    # non-BCD power is NaN: flagged, dropped, so the reading also misses p_w
    ("bad_bcd", {}, Q_NAN | Q_MISSING, "ok", ""),
]


@pytest.mark.parametrize("fault,kw,flag,state,reason", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_flagged_and_polling_goes_on(arun, fault: str, kw: dict, flag: int,
                                                  state: str, reason: str) -> None:
    async def main() -> None:
        async with Rig(3, timeout_ms=300, retries=0,
                       meter_extra='quantities = ["p_w"]') as rig:
            decoders = {m.id: Decoder(m) for m in rig.plan.meters}
            bad_id = rig.plan.meters[1].id
            async with polling(rig.plan.buses[0], rig.clock) as (poller, got):
                rig.meter(2).set_fault(fault, **kw)
                await sweep(poller)
                readings = {p.meter: decoders[p.meter].decode(p) for p in got.polls}
                bad = readings[bad_id]
                fake_scored = int(bool(flag) and bad.scorable)
                record("dlt645 %s" % fault, runs=1, fake_scored=fake_scored,
                       note=(quality_names(bad.quality) and ",".join(
                           quality_names(bad.quality))) or "good reading")
                assert bad.quality == flag, quality_names(bad.quality)
                assert fake_scored == 0
                h = got.health[bad_id]
                assert h.state == state, (h.state, h.last_error)
                assert reason in h.last_error, h.last_error
                if reason:
                    assert rig.meter(2).address in h.last_error
                if fault == "unsupported":  # what to check, in DL/T 645 words
                    assert "does not have this data identifier" in h.hint, h.hint
                if not flag:
                    assert abs(bad.values["p_w"] - 500.0) <= 0.1
                # the neighbours are untouched
                for mid, r in readings.items():
                    if mid != bad_id:
                        assert r.quality == 0 and r.scorable, (mid, r)
                # and the meter is read normally once its fault is gone
                rig.meter(2).clear_faults()
                got.polls.clear()
                await sweep(poller, backoff=True)
                again = {p.meter: decoders[p.meter].decode(p) for p in got.polls}
                assert again[bad_id].quality == 0 and got.health[bad_id].state == "ok"

    arun(main())
