"""Device modules on the real MicroPython unix port, checked against the agent's own code.

One micropython run per test prints JSON; CPython recomputes the same with the agent's
modules and compares: frame bytes, RTU request bytes, register decoding, ISO times and
payloads must agree across the two runtimes.
"""

from __future__ import annotations

import json
import struct
import subprocess
from pathlib import Path

from agent.bridge import framing
from agent.decode import encode_field
from agent.model import Event
from agent.profiles import Field
from agent.publish.codec import Codec, iso_utc
from hil.rs485 import with_crc

ROOT = Path(__file__).resolve().parents[2]
DEVICE = ROOT / "firmware_bridge" / "device"


def _mp(micropython: str, script: str, expect_code: int = 0) -> object:
    """Run ``script`` on the unix port with the device modules and shims on the path;
    returns the first JSON line it printed."""
    env = {"MICROPYPATH": ":".join([str(DEVICE), str(DEVICE / "shims"), str(ROOT)])}
    proc = subprocess.run([micropython, "-c", script], capture_output=True, text=True,
                          env=env, timeout=30, check=False)
    assert proc.returncode == expect_code, proc.stdout + proc.stderr
    for line in proc.stdout.splitlines():
        if line.startswith(("[", "{")):
            return json.loads(line)
    raise AssertionError("no JSON from micropython:\n" + proc.stdout + proc.stderr)


def test_frames_are_the_same_bytes_on_both_runtimes(micropython_bin):
    got = _mp(micropython_bin, """
import json, binascii
from agent.bridge import framing as f
a = f.encode(f.T_DATA, 513, b'[{"k":"r"}]')
bad = bytearray(a); bad[10] ^= 1
r = f.FrameReader()
out = r.feed(b'noise' + bytes(bad) + a[:6]) + r.feed(a[6:] + f.encode(f.T_ACK, 7))
print(json.dumps([binascii.hexlify(a).decode(), [[t, s, p.decode()] for t, s, p in out],
                  r.corrupt, f.next_seq(65535)]))
""")
    frame = framing.encode(framing.T_DATA, 513, b'[{"k":"r"}]')
    assert got[0] == frame.hex()
    assert got[1] == [[framing.T_DATA, 513, '[{"k":"r"}]'], [framing.T_ACK, 7, ""]]
    assert got[2] == 1 and got[3] == 1


def test_rtu_requests_are_byte_exact_and_registers_decode_like_the_agent(micropython_bin):
    fields = [Field("p_w", 3, 0, "float32", "ABCD", 1.0), Field("pf", 3, 2, "float32", "CDAB"),
              Field("e_import_kwh", 4, 0, "uint32", "CDAB", 0.01),
              Field("v_v", 4, 2, "int16", "ABCD", 0.1), Field("i_a", 4, 3, "uint16", "ABCD")]
    values = [1234.5, -0.93, 98765.43, -230.4, 65.0]
    regs = [encode_field(f, v) for f, v in zip(fields, values)]
    spec = [[f.type, f.word_order, f.scale, r] for f, r in zip(fields, regs)]
    got = _mp(micropython_bin, """
import json, binascii
from modbus_rtu import request, crc16
from agent.quality import decode_value as decode_field
spec = %s
print(json.dumps([binascii.hexlify(request(17, 4, 0x1234, 125)).decode(),
                  [decode_field(t, o, s, r) for t, o, s, r in spec]]))
""" % json.dumps(spec))
    assert got[0] == with_crc(struct.pack(">BBHH", 17, 4, 0x1234, 125)).hex()
    for (ftype, *_), want, have in zip(spec, values, got[1]):
        assert abs(have - want) <= (1e-3 if ftype == "float32" else 0.051), (ftype, have)


def test_the_agents_codec_on_the_device_makes_the_same_payloads(micropython_bin):
    times = [0.0, 1767225600.0, 1767225600.9999996, 1709342100.1234, 4102444799.5, 951782400.0]
    evs = [
        Event("raised", "m1", 1767606000.25, "m1:1767600000:raised:1767606000:1", score=71.5,
              evidence={"summary": "floor +1.4 kW", "step_kw": 1.4,
                        "contributions": {"step": 40.0}}, alert_id="m1:1767600000"),
        Event("cleared", "m1", 1767706000.0, "m1:x:cleared:1", score=12.0,
              evidence={"nan": float("nan")}, alert_id="m1:1767600000"),
        Event("score", "m1", 1767606000.0, "m1:score:1:2", score=33.25,
              evidence={"summary": "s"}, data={"contributions": {"step": 1.0},
                                                "state": "ready"}),
        Event("telemetry", "m1", 1767606000.0, "m1:telemetry:1:1", data={
            "slot_start": 1767603600.0, "slot_s": 3600.0, "samples": 6, "bad_samples": 0,
            "p_mean_w": 1650.5, "p_min_w": 1600.0, "p_max_w": 1700.0, "pf_mean": 0.95,
            "energy_kwh": 1.65, "quality": [], "score": 33.25, "detector_state": "ready"}),
        Event("health", "m1", 1767606000.0, "m1:health:1:3", data={
            "state": "down", "last_success": 0.0, "last_error": "timeout", "polls": 3,
            "errors": {"timeout": 3}, "consecutive_failures": 3, "backoff_s": 1200.0}),
    ]
    plain = [[e.kind, e.meter, e.t, e.id, e.score, e.evidence, e.alert_id, e.data]
             for e in evs]
    got = _mp(micropython_bin, """
import json
from agent.model import Event
from agent.publish.payloads import EventCodec, iso_utc
c = EventCodec("loadwatch/v1/s/g", "s", "g")
evs = json.loads(%r.replace("NaN", "1e999"))
out = []
for k, m, t, i, s, ev, a, d in evs:
    if "nan" in ev:
        ev["nan"] = float("nan")
    msg = c.event(Event(k, m, t, i, s, ev, a, d))
    out.append([msg.topic, msg.payload.decode(), msg.qos, msg.retain])
st = c.status("online", 1767225600.0, "g:status:1", {"version": "0.1.0"})
out.append([st.topic, st.payload.decode(), st.qos, st.retain])
print(json.dumps([[iso_utc(t) for t in %r], out]))
""" % (json.dumps(plain), times))
    assert got[0] == [iso_utc(t) for t in times]
    codec = Codec("loadwatch/v1/s/g", "s", "g")
    wants = [codec.event(e) for e in evs]
    wants.append(codec.status("online", 1767225600.0, "g:status:1", {"version": "0.1.0"}))
    for (topic, payload, qos, retain), want in zip(got[1], wants):
        assert (topic, qos, retain) == (want.topic, want.qos, want.retain)
        assert json.loads(payload) == json.loads(want.payload)


def test_flash_store_queue_and_watchdog_on_micropython(micropython_bin, tmp_path):
    got = _mp(micropython_bin, """
import json, os, time
from store import Store, AlertQueue
s = Store(%r)
s.save("state.json", {"v": 1})
s.save("state.json", {"v": 2})
first = s.load("state.json")
os.rename(%r + "/state.json", %r + "/state.json.tmp")  # power cut between the two steps
torn = s.load("state.json")
q = AlertQueue(s, max_items=3)
for i in range(3):
    q.put({"kind": "health", "i": i})
q.put({"kind": "raised", "i": 9})
q.put({"kind": "updated", "i": 10})
again = AlertQueue(s, max_items=3)  # after a reboot: read back from flash
kinds = [x["kind"] for x in again.items]
import machine
w = machine.WDT(timeout=50)
w.feed()
print(json.dumps([first, torn, kinds, q.dropped]))
time.sleep_ms(120)
w.feed()
print("not reached")
""" % (str(tmp_path), str(tmp_path), str(tmp_path)), expect_code=3)
    assert got[0] == {"v": 2} and got[1] == {"v": 2}
    # Health makes room first; the alerts stay.
    assert got[2] == ["health", "raised", "updated"] and got[3] == 2


def test_device_meter_and_agent_decoder_flag_a_backwards_counter_alike(micropython_bin):
    """Issue 14's drift: the device flagged readings 4-8 of a counter that went back and
    stayed back; the agent re-baselines after 3. Both now run agent/quality.py."""
    from agent.decode import Decoder
    from agent.model import RawBlock, RawPoll

    cfg = {"id": "m1", "unit": 1, "poll_s": 10.0, "reads": [[4, 0, 2], [4, 0x100, 2]],
           "fields": [["p_w", 4, 0, "float32", "ABCD", 1.0],
                      ["e_import_kwh", 4, 0x100, "float32", "ABCD", 1.0]]}
    counters = [1000.0] + [900.0] * 8
    polls = [[[4, 0, list(struct.unpack(">HH", struct.pack(">f", 500.0 + i)))],
              [4, 0x100, list(struct.unpack(">HH", struct.pack(">f", e)))]]
             for i, e in enumerate(counters)]
    got = _mp(micropython_bin, """
import json
from meter import Meter
m = Meter(%s, 0.0)
out = []
for i, blocks in enumerate(%s):
    values, q = m.decode(1767225600.0 + 10 * i, [tuple(b) for b in blocks], "")
    out.append(q)
print(json.dumps(out))
""" % (json.dumps(cfg), json.dumps(polls)))
    from types import SimpleNamespace

    from agent.profiles import Quirks

    quantities = {f[0]: Field(f[0], f[1], f[2], f[3], f[4], f[5]) for f in cfg["fields"]}
    d = Decoder(SimpleNamespace(profile=SimpleNamespace(quantities=quantities, protocol="modbus"),
                                quantities=tuple(quantities), quirks=Quirks()))
    want = [d.decode(RawPoll("m1", 1767225600.0 + 10 * i,
                             [RawBlock(fc, a, r) for fc, a, r in blocks])).quality
            for i, blocks in enumerate(polls)]
    assert got == want == [0, 16, 16, 16, 0, 0, 0, 0, 0]
