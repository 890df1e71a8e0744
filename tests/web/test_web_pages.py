"""The status page in a real headless browser, against a running agent.

Five real pymodbus meters (four homes, one with an S9 miner switched on on day 2, and one
meter that never answers), a real broker and the agent on a fast clock. Debian's headless
Chromium, driven by playwright with ``executable_path`` (no browser download), loads the
pages; screenshots go to ``test-artifacts/web/`` (set ``LOADWATCH_UPDATE_DOCS=1`` to also
refresh README's screenshot in docs/).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hil.loads import demo_households
from hil.meters import SimUnit

from .rig import ARTIFACTS, CHROMIUM_ARGS, ROOT, AgentRig, BrakingClock, chromium_path, get

# End to end: the agent's web pages in a headless browser: `make test` only.
pytestmark = pytest.mark.slow

DAY = 86400.0
UPDATE_DOCS = os.environ.get("LOADWATCH_UPDATE_DOCS") == "1"
# A week in 20 s; README's picture at half that pace, so a busy machine leaves fewer gaps.
SPEED = 7 * DAY / (40.0 if UPDATE_DOCS else 20.0)


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    households = demo_households(4, seed=7, miner_index=2, miner_day=2.0)
    clock = BrakingClock(speed=SPEED, t0=households.t0)

    def units(clock: BrakingClock) -> list[SimUnit]:
        out = [SimUnit(i + 1, h.profile, h.load, clock, name=h.meter)
               for i, h in enumerate(households.meters)]
        dead = SimUnit(9, households.meters[0].profile, households.meters[0].load, clock,
                       name="dead-1")
        dead.set_fault("silent")
        return out + [dead]

    r = AgentRig(tmp_path_factory.mktemp("web"), units, clock,
                 tz_hours=households.tz_hours).start()
    r.households = households
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(
                e.kind == "raised" for e in list(r.events)):
            time.sleep(0.2)
        assert any(e.kind == "raised" for e in r.events), "the miner was never raised"
        time.sleep(2.0)  # a few more slots after the alert, so the span has width
        clock.brake(60.0)  # then a minute a second: the pages hold still while read
        time.sleep(0.5)
        yield r
    finally:
        r.stop()


@pytest.fixture
def browser():
    """Debian's Chromium per test (a module-wide one would grow playwright's executor
    threads mid-test, which the suite's leak check rightly reports)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def _shot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 5000
    return path


def test_gateway_page_lists_every_meter_with_state_and_reason(rig, browser) -> None:
    page = browser.new_page(viewport={"width": 1100, "height": 700})
    try:
        page.goto(rig.url + "/")
        rows = page.locator("#meters tbody tr")
        names = sorted(rows.nth(i).get_attribute("data-meter") for i in range(rows.count()))
        assert names == sorted([m.meter for m in rig.households.meters] + ["dead-1"])
        miner = page.locator('#meters tr[data-meter="%s"]' % rig.households.miner_meter)
        assert "alert" in miner.inner_text()
        dead = page.locator('#meters tr[data-meter="dead-1"] td.health')
        text = dead.inner_text()
        assert text.startswith("down: "), text
        # The poller's own words: which unit, where, how long it waited.
        assert "unit 9" in text or "127.0.0.1" in text, text
        assert "connected" in page.locator("#broker").inner_text()
        _shot(page, "gateway.png")
    finally:
        page.close()


def test_meter_page_draws_the_alert_span_and_evidence(rig, browser) -> None:
    miner = rig.households.miner_meter
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    try:
        page.goto(rig.url + "/meter/" + miner)
        spans = page.locator("#chart svg rect.alert-span")
        assert spans.count() >= 1
        box = spans.first.bounding_box()
        assert box is not None and box["width"] > 2, box
        load_d = page.locator("#chart svg path.load").get_attribute("d") or ""
        # At least two days of hourly slot means (a loaded machine can leave a few gaps).
        assert load_d.count("L") + load_d.count("M") >= 48, "too few points: %s" % load_d
        assert (page.locator("#chart svg path.floor").get_attribute("d") or "").startswith("M")
        assert (page.locator("#chart svg path.baseline").get_attribute("d") or "").startswith("M")
        # The detector's latest evidence (its wording depends on the last 24 h the loaded
        # machine managed to poll on the fast clock) and the alert's own, fixed at raising.
        assert page.locator("#evidence-summary").inner_text().strip()
        assert page.locator("#evidence tr").count() >= 1
        assert " kW " in page.locator("table.alerts tr.open").first.inner_text()
        # The block of the day the detector (or the open alert) named, under each day since.
        assert page.locator("#chart svg rect.schedule-block").count() >= 1
        assert " kW " in page.locator("#schedule").inner_text()
        path = _shot(page, "meter.png")
        if UPDATE_DOCS:
            shutil.copy(path, ROOT / "docs" / "web-meter.png")
    finally:
        page.close()


def test_alerts_page_and_json_api(rig, browser) -> None:
    miner = rig.households.miner_meter
    page = browser.new_page()
    try:
        page.goto(rig.url + "/alerts")
        rows = page.locator("table.alerts tbody tr.open")
        assert rows.count() == 1 and miner in rows.first.inner_text()
        _shot(page, "alerts.png")
    finally:
        page.close()
    status, body = get(rig.url + "/api/alerts")
    import json

    alerts = json.loads(body)["alerts"]
    assert status == 200 and [a["meter"] for a in alerts if a["open"]] == [miner]
    doc = json.loads(get(rig.url + "/api/meters/" + miner)[1])
    assert doc["meter"]["display_state"] == "alert"
    assert len(doc["series"]["p_mean_w"]) == 168  # 7 days of hourly slots
    # the detector's sentence names the rise and since when ("+1.4 kW 24/7 since ...")
    assert doc["alerts"][0]["end"] is None and " kW " in doc["alerts"][0]["summary"] \
        and " since " in doc["alerts"][0]["summary"]
    assert doc["evidence"]["summary"]
    gw = json.loads(get(rig.url + "/api/status")[1])
    assert {m["meter"] for m in gw["meters"]} == {m.meter for m in rig.households.meters} | {
        "dead-1"}
    assert get(rig.url + "/meter/nope")[0] == 404
    svg_status, svg = get(rig.url + "/meter/%s.svg" % miner)
    assert svg_status == 200 and svg.startswith("<svg") and 'class="alert-span"' in svg


def test_metrics_parse_with_prometheus_client(rig) -> None:
    status, text = get(rig.url + "/metrics")
    assert status == 200
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    miner = rig.households.miner_meter
    meters = {m.meter for m in rig.households.meters} | {"dead-1"}

    def value(name: str, **labels: str) -> float:
        # Sample names: a counter family "x" has samples "x_total", a summary "x_sum"...
        hits = [s.value for f in fams.values() for s in f.samples if s.name == name
                and all(s.labels.get(k) == v for k, v in labels.items())]
        assert len(hits) == 1, (name, labels, hits)
        return hits[0]

    assert {s.labels["meter"] for s in fams["loadwatch_meter_power_watts"].samples} == meters
    assert value("loadwatch_meter_state", meter=miner, state="alert") == 1
    assert value("loadwatch_meter_state", meter=miner, state="ready") == 0
    assert 0 <= value("loadwatch_meter_score", meter=miner) <= 100
    assert value("loadwatch_meter_up", meter="dead-1") == 0
    assert value("loadwatch_meter_poll_errors_total", meter="dead-1", kind="timeout") >= 1
    assert value("loadwatch_broker_up") == 1
    assert value("loadwatch_bus_cycle_seconds", bus="street") > 0
    assert fams["loadwatch_publish_latency_seconds"].type == "summary"
    assert value("loadwatch_publish_latency_seconds_count") >= 1
    assert value("loadwatch_outbox_pending") >= 0
    assert fams["loadwatch_meter_polls"].type == "counter"
