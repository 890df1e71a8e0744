"""The optional read-only status page, its JSON API and Prometheus ``/metrics``.

Standard library only (a small ARM gateway carries no web framework): ``server.py`` is a
bounded asyncio-streams HTTP/1.1 server, ``pages.py`` builds HTML and JSON from the same
status snapshot ``loadwatch status`` prints, ``history.py`` keeps the bounded per-meter
ring of slot means the charts need, and ``svg.py`` is the one chart renderer, shared with
``loadwatch replay --plot``.
"""
