"""The telemetry and score messages as main built them before schema 2 (707850e's
agent/publish/payloads.py EventCodec.event, telemetry and score branches), for
bench/delivery.py's side-by-side figures only."""

from __future__ import annotations

from agent.publish.payloads import encode, iso_utc

SCORE_UNITS = {"score": "points (0-100)", "contributions": "points (0-100, summing to score)"}
TELEMETRY_UNITS = {
    "p_mean_w": "W", "p_min_w": "W", "p_max_w": "W", "pf_mean": "1 (absolute power factor)",
    "energy_kwh": "kWh", "e_import_kwh": "kWh (meter's import counter)", "slot_s": "s",
    "score": "points (0-100)",
}


def _base(kind: str, id: str, t: float, site: str, gateway: str, meter: str) -> dict:
    return {"schema": 1, "id": id, "kind": kind, "time": iso_utc(t), "t": t, "site": site,
            "gateway": gateway, "meter": meter}


def telemetry(site: str, gateway: str, meter: str, t: float, id: str, data: dict) -> bytes:
    body = _base("telemetry", id, t, site, gateway, meter)
    body.update(data)
    if "slot_start" in data:
        body["slot_start_time"] = iso_utc(data["slot_start"])
    body["units"] = TELEMETRY_UNITS
    return encode(body)


def score(site: str, gateway: str, meter: str, t: float, id: str, score: float, state: str,
          contributions: dict, evidence: dict) -> bytes:
    body = _base("score", id, t, site, gateway, meter)
    body.update({"score": score, "state": state, "contributions": contributions,
                 "evidence": evidence, "units": SCORE_UNITS})
    return encode(body)
