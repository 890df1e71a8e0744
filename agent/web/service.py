"""The status page inside the agent: wires the server, the pages and the chart history
to an ``Agent`` through its public seams only (``status_snapshot``, ``add_listener``,
``add_checkpoint_hook``), so the runtime carries three lines for all of it."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

from agent.config import WebSettings
from agent.policy import default_policy_settings
from agent.web import metrics, pages
from agent.web.history import History
from agent.web.server import Response, WebServer

if TYPE_CHECKING:
    from agent.runtime import Agent

HTML = "text/html; charset=utf-8"
JSON = "application/json"
SVG = "image/svg+xml"
_METER = re.compile(r"^/(api/)?meters?/([A-Za-z0-9][A-Za-z0-9_.-]{0,63}?)(\.svg)?$")


def _json(doc: object) -> Response:
    import json

    return Response(200, json.dumps(doc, separators=(",", ":"), default=str) + "\n", JSON)


class WebService:
    def __init__(self, settings: WebSettings, agent: Agent):
        self.agent = agent
        plan = agent.plan
        self.history = History.load(plan.state_dir, [m.id for m in plan.meters],
                                    plan.telemetry_every_s)
        raise_at = {m.id: float(plan.policy_settings(m.meter_class).get(
            "raise_at", default_policy_settings()["raise_at"])) for m in plan.meters}
        self.view = pages.WebView(agent.status_snapshot, self.history,
                                  tz_offset_s=plan.tz_offset_s, raise_at=raise_at.get)
        self.server = WebServer(settings, self.route)
        agent.add_listener(self.history.on_event)
        agent.add_checkpoint_hook(self.save)

    def save(self) -> None:
        self.history.save(self.agent.plan.state_dir)

    async def start(self) -> None:
        await self.server.start()

    async def close(self) -> None:
        await self.server.close()

    def route(self, path: str) -> Response | None:
        """Every URL the page has (also the documentation of them, in README)."""
        now = time.time()
        v = self.view
        if path == "/":
            return Response(200, pages.gateway_html(v, now), HTML)
        if path == "/alerts":
            return Response(200, pages.alerts_html(v, now), HTML)
        if path == "/metrics":
            return Response(200, metrics.render(v.snapshot(), now), metrics.CONTENT_TYPE)
        if path == "/api/status":
            return _json(pages.gateway_json(v, now))
        if path == "/api/alerts":
            return _json(pages.alerts_json(v, now))
        m = _METER.match(path)
        if m is None:
            return None
        api, meter, svg = m.group(1), m.group(2), m.group(3)
        if api and not svg and path.startswith("/api/meters/"):
            doc = pages.meter_json(v, meter, now)
            return None if doc is None else _json(doc)
        if not api and path.startswith("/meter/"):
            if svg:
                text = pages.meter_svg(v, meter, now)
                return None if text is None else Response(200, text, SVG)
            html = pages.meter_html(v, meter, now)
            return None if html is None else Response(200, html, HTML)
        return None
