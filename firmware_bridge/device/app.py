"""The gateway loop: poll meters on RS-485, score them, decide alerts, send them up.

One pass of the loop: feed the watchdog; poll every meter that is due (its readings go
through the same detector and policy as on the agent); save learned state when an alert
changed or ``state_every_s`` passed; service the uplink (acks, retransmits, reconnects);
sleep in short steps until the next meter is due. A meter that stops answering backs off
(doubling up to ``backoff_max_s``) without delaying the others, as the agent's poller does.

``run(config_path)`` is what main.py calls at boot; the config is the JSON written by
``loadwatch firmware build``. ``stop_at`` (simulated UNIX time) ends the loop cleanly:
it exists for tests and the bench, a board never sets it.
"""

import gc
import json
import sys
import time

import machine
from devclock import DeviceClock
from meter import Meter
from rs485_line import ModbusError
from store import AlertQueue, Store

from agent.failures import Failure
from agent.health import backs_off, retryable

VERSION = "0.1.0"
# Stock ESP32/RP2040 builds use 32-bit floats: a 2026 UNIX time then moves in 128 s
# steps. The app still runs, but says so loudly (hello, status, console).
_X = 1767225600.0
FLOAT_BITS = 64 if _X + 1.0 != _X else 32
STATE_FILE = "state.json"
STATE_VERSION = 1


def open_uart(c):
    kw = {"baudrate": c.get("baud", 9600), "bits": 8,
          "parity": {"N": None, "E": 0, "O": 1}[c.get("parity", "N")],
          "stop": c.get("stopbits", 1), "timeout": 0}
    if c.get("tx") is not None:
        kw["tx"] = machine.Pin(c["tx"])
        kw["rx"] = machine.Pin(c["rx"])
    if c.get("port"):
        kw["port"] = c["port"]  # unix-port shim only: a serial device or pty path
    return machine.UART(c.get("uart", 1), **kw)


def wifi_up(cfg, wdt):
    """Join Wi-Fi when configured (bounded wait); boards with Ethernet skip this."""
    w = cfg.get("wifi")
    if not w:
        return
    try:
        import network
    except ImportError:
        return
    sta = network.WLAN(network.STA_IF)
    sta.active(True)
    if not sta.isconnected():
        sta.connect(w["ssid"], w["password"])
        for _ in range(200):
            if sta.isconnected():
                break
            if wdt is not None:
                wdt.feed()
            time.sleep_ms(100)
    print("wifi:", "up" if sta.isconnected() else "not connected (will retry via mqtt)")


def _shared(tables, x):
    """``x``, or an equal table already kept (meters of one profile read the same)."""
    for t in tables:
        if t == x:
            return t
    tables.append(x)
    return x


def make_meters(meter_cfgs, tel_s, saved_meters):
    """The meters of the config -> ``(meters, restored)``. Equal field and read tables
    are kept once for all the meters that have them: json.load gives every meter its own
    copy, ~1.6 KB a meter on MicroPython (lists, boxed floats) that the meters would hold
    for good. Empties ``meter_cfgs`` (the meters keep what they need), so the rest of each
    meter's config (its settings dicts, already shared by the detector and policy) is
    freed too."""
    meters = []
    restored = {}
    tables = []
    while meter_cfgs:
        mc = meter_cfgs.pop(0)
        mc["fields"] = _shared(tables, mc["fields"])
        mc["reads"] = _shared(tables, mc["reads"])
        m = Meter(mc, tel_s, saved_meters.get(mc["id"]))
        meters.append(m)
        if m.restored:
            restored[m.id] = 1 if m.detector.ready else 0
            print("restored meter %s (ready=%s, alert=%s)"
                  % (m.id, m.detector.ready, m.policy.alert_id or "-"))
    return meters, restored


class App:
    def __init__(self, cfg):
        self.cfg = cfg
        self.clock = DeviceClock(cfg.get("clock"))
        wdt_ms = int(cfg.get("wdt_ms", 8000))
        self.wdt = machine.WDT(timeout=wdt_ms) if wdt_ms > 0 else None
        self.store = Store(cfg.get("state_dir", "/"))
        saved = self.store.load(STATE_FILE, {}) or {}
        if saved.get("version") != STATE_VERSION:
            saved = {}
        self.boots = int(saved.get("boots", 0)) + 1
        saved_meters = saved.get("meters", {})
        tel_s = float(cfg.get("telemetry_every_s", 900.0))
        if cfg.get("uplink", "serial") != "mqtt":
            tel_s = 0.0  # the host makes telemetry and score from the readings
        # (cfg["meters"] is emptied: the meters are the config from here on)
        self.meters, self.restored = make_meters(cfg["meters"], tel_s, saved_meters)
        bus = cfg["rs485"]
        de = machine.Pin(bus["de"], machine.Pin.OUT, value=0) if bus.get("de") is not None \
            else None
        self.de = de
        bits = 1 + 8 + (0 if bus.get("parity", "N") == "N" else 1) + bus.get("stopbits", 1)
        if bus.get("protocol") == "dlt645":
            from dlt645_master import Dlt645Master

            self.master = Dlt645Master(open_uart(bus), bus.get("baud", 2400), bits,
                                       int(bus.get("timeout_ms", 1000)), de)
        else:
            from modbus_rtu import RtuMaster

            self.master = RtuMaster(open_uart(bus), bus.get("baud", 9600), bits,
                                    int(bus.get("timeout_ms", 500)), de)
        self.retries = int(bus.get("retries", 1))
        self.backoff_max_s = float(bus.get("backoff_max_s", 300.0))
        self.state_every_s = float(cfg.get("state_every_s", 300.0))
        self.queue = AlertQueue(self.store, max_items=int(cfg.get("queue_max", 64)))
        kind = cfg.get("uplink", "serial")
        if kind == "mqtt":
            from uplink_mqtt import MqttUplink

            from agent.publish.payloads import EventCodec

            wifi_up(cfg, self.wdt)
            mq = cfg["mqtt"]
            codec = EventCodec(mq["prefix"], cfg["site"], cfg["gateway"],
                          mq.get("telemetry_qos", 0), mq.get("score_qos", 0),
                          mq.get("score_topic", False))
            self.uplink = MqttUplink(mq, codec, self.queue, self.clock.now,
                                     self.status_extra)
        else:
            from uplink_serial import SerialUplink

            self.uplink = SerialUplink(open_uart(cfg["link"]), cfg["link"], self.queue)
            self.uplink.on_time = self.clock.set
        self.polls = 0
        self.sample_us = 0
        self.last_save = self.clock.now()

    def status_extra(self):
        return {"version": VERSION, "meters": len(self.meters), "firmware": "micropython",
                "boots": self.boots, "float_bits": FLOAT_BITS}

    # ------------------------------------------------------------ state

    def save(self):
        """All meters' learned state, one meter at a time: with 32 meters the whole
        document as Python objects would not fit next to the detectors on an ESP32."""
        meters = self.meters

        def write(f):
            f.write('{"version":%d,"boots":%d,"t":%s,"meters":{'
                    % (STATE_VERSION, self.boots, repr(self.clock.now())))
            for i in range(len(meters)):
                m = meters[i]
                f.write("%s%s:" % ("," if i else "", json.dumps(m.id)))
                json.dump(m.state(), f)
                gc.collect()
            f.write("}}")

        self.store.save_with(STATE_FILE, write)
        self.last_save = self.clock.now()

    # ------------------------------------------------------------ one meter

    def poll_meter(self, m):
        t = self.clock.now()
        blocks = None
        error_kind = ""
        message = ""
        # As the agent's poller: a meter that is failing gets one probe, without retries.
        retries = 0 if m.failures else self.retries
        retried = 0
        for attempt in range(retries + 1):
            try:
                blocks = m.poll(self.master)
                error_kind = ""
                retried = attempt
                break
            except ModbusError as e:
                error_kind = e.kind
                message = str(e)
                if not retryable(e.kind):
                    break
            except OSError as e:
                error_kind = Failure.IO
                message = "uart: %s" % e
                break
        self.polls += 1
        t0 = time.ticks_us()
        values, quality = m.decode(t, blocks or [], error_kind)
        events = m.process(t, values, quality)
        self.sample_us += time.ticks_diff(time.ticks_us(), t0)
        backoff = 0.0
        if backs_off(error_kind):
            # In clock seconds: the next poll as scheduled for the first two failures,
            # then doubling from the poll interval up to backoff_max_s (the agent's runs
            # in real seconds from 2 s, which a poll interval of seconds also leaves
            # as scheduled at first; the board has no second clock to spare).
            n = m.failures + 1
            backoff = min(self.backoff_max_s, m.poll_s * (2 ** min(max(0, n - 2), 16)))
        m.poll_done(t, error_kind, message, retried, backoff)
        if backoff > 0:
            m.next_t = t + max(m.poll_s, backoff)
        else:
            m.next_t = m.next_t + m.poll_s if m.next_t + m.poll_s > t else t + m.poll_s
        self.uplink.reading(m.id, t, values, quality)
        hev = m.health_event(t)
        if hev is not None:
            events.append(hev)
        alert = False
        for ev in events:
            self.uplink.event(ev, t)
            if ev.kind in ("raised", "updated", "cleared"):
                alert = True
                print("alert %s %s %s score=%.1f" % (ev.kind, ev.alert_id, ev.id, ev.score))
        if alert:
            # The policy's alert state must be on flash before a reset could raise the
            # same alert again under a new onset (as the agent's runtime does).
            self.save()

    # ------------------------------------------------------------ the loop

    def feed(self):
        if self.wdt is not None:
            self.wdt.feed()

    def wait_for_time(self):
        """No polling before the clock holds calendar time (see devclock.py)."""
        next_ntp = time.ticks_ms()
        give_up = time.ticks_add(next_ntp, int(self.cfg.get("sync_wait_ms", 10000)))
        kind = self.cfg.get("uplink", "serial")
        while not self.clock.synced:
            if time.ticks_diff(time.ticks_ms(), give_up) >= 0 and self.clock.plausible():
                print("clock: no time from the %s uplink; using the board's" % kind)
                break
            self.feed()
            if kind == "mqtt" and time.ticks_diff(time.ticks_ms(), next_ntp) >= 0:
                self.clock.ntp()
                next_ntp = time.ticks_add(time.ticks_ms(), 30000)
            self.uplink.service()
            time.sleep_ms(10)

    def run(self):
        info = {"k": "hello", "fw": VERSION, "boots": self.boots, "restored": self.restored,
                "meters": [m.id for m in self.meters], "t": self.clock.now(),
                "float_bits": FLOAT_BITS}
        if FLOAT_BITS == 32:
            print("WARNING: 32-bit floats: timestamps resolve to ~128 s; use a "
                  "double-precision MicroPython build (see README)")
        self.uplink.start(info)
        self.wait_for_time()
        self.last_save = self.clock.now()
        stop_at = self.cfg.get("stop_at")
        now = self.clock.now()
        for m in self.meters:
            m.next_t = now
        print("loadwatch device %s: %d meters, uplink %s, boot %d"
              % (VERSION, len(self.meters), self.cfg.get("uplink", "serial"), self.boots))
        while True:
            self.feed()
            t = self.clock.now()
            if stop_at is not None and t >= stop_at:
                break
            for m in self.meters:
                if m.next_t <= t:
                    self.poll_meter(m)
                    self.uplink.service()
                    self.feed()
            if self.clock.now() - self.last_save >= self.state_every_s:
                self.save()
            self.uplink.service()
            due = min(m.next_t for m in self.meters)
            wait = self.clock.real_ms(due - self.clock.now())
            if wait > 0:
                time.sleep_ms(min(wait, 20))
        self.shutdown()

    def shutdown(self):
        self.save()
        deadline = time.ticks_add(time.ticks_ms(), int(self.cfg.get("flush_ms", 5000)))
        while not self.uplink.idle() and time.ticks_diff(deadline, time.ticks_ms()) > 0:
            self.feed()
            self.uplink.service()
            time.sleep_ms(2)
        close = getattr(self.uplink, "close", None)
        if close is not None:
            close()
        bus = {"requests": self.master.requests, "errors": self.master.errors,
               "de_rises": getattr(self.de, "rises", -1), "sample_us": self.sample_us
               // max(1, self.polls), "flash_writes": self.store.writes}
        print("stopped: polls=%d uplink=%s bus=%s" % (self.polls, json.dumps(
            self.uplink.stats()), json.dumps(bus)))


def load_config(path):
    with open(path) as f:
        return json.load(f)


def run(path="config.json"):
    app = App(load_config(path))
    try:
        app.run()
    except KeyboardInterrupt:
        app.shutdown()
    return app


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "config.json"
    try:
        run(path)
    except OSError as e:
        # A port that cannot be opened (unplugged, busy, not configured) is the user's
        # to fix: one line and an exit code, not a traceback.
        print("loadwatch firmware: cannot start: %s" % e)
        sys.exit(1)
