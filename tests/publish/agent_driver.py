"""A small agent for the kill -9 campaign: a real process with the outbox and publisher.

It raises alerts at a steady pace (with telemetry in between), printing ``RAISED <id>``
only after ``Outbox.put()`` returned, i.e. once the alert is durable: those are the alerts
the campaign holds the system to. Run as a script (the test kills it at random points):

    python agent_driver.py --port P --outbox PATH --run K --count N --pace S
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__)))))

from publish_helpers import broker_settings, codec, telemetry

from agent.backoff import Backoff
from agent.model import Event
from agent.publish.mqtt import Publisher
from agent.publish.outbox import Outbox


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--outbox", required=True)
    ap.add_argument("--run", type=int, required=True)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--pace", type=float, default=0.01)
    args = ap.parse_args()
    ob = Outbox(args.outbox, 10_000_000)
    c = codec()
    pub = Publisher(broker_settings(args.port, client_id="gw-driver"), ob, c,
                    status_extra=lambda: {"run": args.run},
                    backoff=Backoff(0.05, 0.5, 2.0, 0.1))
    pub.start()
    print("READY", flush=True)
    for i in range(args.count):
        meter = "m%d" % (i % 3)
        t = time.time()
        ev = Event("raised", meter, t, "run%d:alert%d" % (args.run, i), score=90.0,
                   alert_id="%s:run%d:%d" % (meter, args.run, i),
                   evidence={"summary": "campaign"}, data={"contributions": {"floor": 90.0}})
        ob.put(c.event(ev))
        print("RAISED", ev.id, flush=True)
        ob.put(c.event(telemetry(meter, args.run * 100000 + i, t)))
        pub.wake()
        time.sleep(args.pace)
    deadline = time.monotonic() + 20
    while ob.pending() and time.monotonic() < deadline:
        time.sleep(0.02)
    pub.stop(5)
    pending = ob.pending()
    ob.close()
    print("FLUSHED", pending, flush=True)
    return 0 if pending == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
