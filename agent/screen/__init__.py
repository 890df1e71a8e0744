"""``loadwatch screen``: the gateway's detector over a utility's whole AMI history.

In 2021 utilities found most household miners by screening the load curves their metering
systems already collect, province by province. An alert from a screen must mean what an
alert from a gateway means, so every meter goes through ``agent.scoring`` (the detector and
policy the agent and ``replay`` run), one meter at a time: ``meter.screen_meter`` is the
per-meter function both engines call, the local process pool (``local``) and PySpark
(``spark``). Input layouts are in ``layout``, files in ``sources``, outputs in ``output``,
the command in ``cli``.
"""
