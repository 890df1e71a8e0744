"""What a technician should check, for each way a Modbus request can fail.

One table shared by the running agent (health payload, log lines, ``status``) and the
``scan``/``read`` tools, so the advice is the same wherever the failure is seen. The advice
depends on the link: A/B polarity, baud and parity mean nothing on Modbus TCP.
"""

from __future__ import annotations

HINT_NO_REPLY = ("no reply: check the A/B wires (swap them if unsure: polarity is not "
                 "standardised), the baud rate (--baud), parity (--parity), stop bits and "
                 "the unit id; a long bus needs 120 ohm termination at both ends")
HINT_NO_REPLY_TCP = ("no reply: check the unit id, that the meter is powered and, behind an "
                     "RTU-over-TCP gateway, the gateway's serial settings and RS-485 wiring")
HINT_CRC = ("garbled replies: check termination, cable shielding and that every device "
            "on the bus uses the same baud rate and parity")
HINT_EXC = {1: "the meter does not support this function code: wrong profile, or another "
               "variant of the same meter (e.g. dtsu666 vs dtsu666_ir)? run `loadwatch scan`",
            2: "the meter does not have these registers: wrong profile? run `loadwatch scan`",
            4: "the meter reports an internal failure: power-cycle it; replace it if it stays",
            6: "the meter is busy: lower the poll rate or raise pause_ms",
            10: "the gateway has no path to this unit: check the unit id and the gateway's "
                "serial port settings",
            11: "the gateway got no answer from the unit: check the unit id, the meter's "
                "power and the RS-485 wiring behind the gateway"}
HINT_IO_SERIAL = ("check that the USB-RS485 adapter is plugged in and that the port path "
                  "is right (ls /dev/serial/by-id/), and that no other program holds it")
HINT_IO_TCP = ("check that the meter or gateway is powered and reachable (ping it), and "
               "its address and port in the config")
HINT_RETRIED = ("some requests needed a retry: a marginal link (termination, cable, baud) "
                "or a slow meter (raise timeout_ms)")


def failure_hint(kind: str, exception_code: int = 0, serial: bool = True) -> str:
    """The advice for a failure of ``kind`` (timeout|exception|crc|io|retried)."""
    if exception_code in HINT_EXC:
        return HINT_EXC[exception_code]
    if kind == "io":
        return HINT_IO_SERIAL if serial else HINT_IO_TCP
    if kind == "timeout":
        return HINT_NO_REPLY if serial else HINT_NO_REPLY_TCP
    if kind == "crc":
        return HINT_CRC
    if kind == "exception":
        return "the meter refuses the request (exception %d): see its manual" % exception_code
    if kind == "retried":
        return HINT_RETRIED
    return ""
