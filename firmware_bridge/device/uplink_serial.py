"""Uplink over a framed serial link to a Linux host running the agent (BridgeSource).

Frames are agent/bridge/framing.py (shared with the host). Stop-and-wait: one frame
outstanding, retransmitted on a NAK at once or after ``ack_ms`` without an ack, with the
wait doubling up to ``ack_max_ms`` while the host stays silent (bounded retry: the link
is never flooded, and nothing is given up). A frame batches records up to ``batch_bytes``.

The host answers the hello with its UNIX time in the ack, which sets the MCU's clock
(a board has no calendar time at power-up). What goes up: every reading (the host runs
them through its own pipeline, so its telemetry and score topics are the agent's own),
the MCU's alert events and health changes. Alerts and health wait in the on-flash
queue until acknowledged, so a reboot before the ack does not lose them; readings wait
in RAM (bounded, oldest dropped first).
"""

import json
import time

from agent.bridge.framing import T_ACK, T_DATA, T_HELLO, T_NAK, FrameReader, encode, next_seq


class SerialUplink:
    def __init__(self, uart, cfg, queue):
        self.uart = uart
        self.queue = queue
        self.reader = FrameReader()
        self.ack_ms = int(cfg.get("ack_ms", 200))
        self.ack_max_ms = int(cfg.get("ack_max_ms", 5000))
        self.batch_bytes = int(cfg.get("batch_bytes", 1024))
        self.max_pending = int(cfg.get("max_pending", 256))
        self.pending = []
        self.seq = 0
        self.out = None
        self.out_seq = 0
        self.out_counts = (0, 0)
        self.sent_ms = 0
        self.wait_ms = self.ack_ms
        self.sent = 0
        self.retransmits = 0
        self.naks = 0
        self.dropped = 0
        self.acked = 0
        self.on_time = None  # called with the host's UNIX time from the hello's ack

    # ------------------------------------------------------------ what to send

    def start(self, info):
        self._transmit(encode(T_HELLO, 0, json.dumps(info).encode()), 0, (0, 0))

    def reading(self, meter, t, values, quality):
        self.pending.append({"k": "r", "m": meter, "t": t, "v": values, "q": quality})
        if len(self.pending) > self.max_pending:
            self.pending.pop(0)
            self.dropped += 1

    def event(self, ev, t):
        if ev.kind in ("telemetry", "score"):
            return  # the host builds these from the readings
        self.queue.put({"k": "e", "kind": ev.kind, "m": ev.meter, "t": ev.t, "id": ev.id,
                        "s": ev.score, "ev": ev.evidence, "a": ev.alert_id, "d": ev.data})

    def idle(self):
        return self.out is None and not self.pending and len(self.queue) == 0

    # ------------------------------------------------------------ the link

    def _transmit(self, frame, seq, counts):
        self.out = frame
        self.out_seq = seq
        self.out_counts = counts
        self.uart.write(frame)
        self.sent += 1
        self.sent_ms = time.ticks_ms()

    def _next_frame(self):
        parts = []
        size = 2
        nq = 0
        for item in self.queue.items:
            s = json.dumps(item)
            if parts and size + len(s) > self.batch_bytes:
                break
            parts.append(s)
            size += len(s) + 1
            nq += 1
        npend = 0
        for item in self.pending:
            s = json.dumps(item)
            if parts and size + len(s) > self.batch_bytes:
                break
            parts.append(s)
            size += len(s) + 1
            npend += 1
        if not parts:
            return
        self.seq = next_seq(self.seq)
        payload = ("[" + ",".join(parts) + "]").encode()
        self._transmit(encode(T_DATA, self.seq, payload), self.seq, (nq, npend))

    def _acked(self):
        nq, npend = self.out_counts
        if nq:
            del self.queue.items[:nq - 1]
            self.queue.pop()
        if npend:
            del self.pending[:npend]
        self.out = None
        self.acked += 1
        self.wait_ms = self.ack_ms

    def service(self):
        """Handle acks and naks, retransmit when due, start the next frame."""
        data = self.uart.read()
        if data:
            for ftype, seq, _payload in self.reader.feed(data):
                if self.out is None:
                    continue
                if ftype == T_ACK and seq == self.out_seq:
                    if seq == 0 and _payload and self.on_time is not None:
                        try:
                            self.on_time(float(json.loads(_payload)["t"]))
                        except (ValueError, KeyError, TypeError):
                            pass
                    self._acked()
                elif ftype == T_NAK:
                    self.naks += 1
                    self.retransmits += 1
                    self._transmit(self.out, self.out_seq, self.out_counts)
        if self.out is not None:
            if time.ticks_diff(time.ticks_ms(), self.sent_ms) >= self.wait_ms:
                self.retransmits += 1
                self.wait_ms = min(self.wait_ms * 2, self.ack_max_ms)
                self._transmit(self.out, self.out_seq, self.out_counts)
            return
        self._next_frame()

    def stats(self):
        return {"sent": self.sent, "acked": self.acked, "retransmits": self.retransmits,
                "naks": self.naks, "dropped": self.dropped, "corrupt_in": self.reader.corrupt}
