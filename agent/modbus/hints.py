"""What a technician should check, for each way a Modbus (or DL/T 645) request can fail.

One table shared by the running agent (health payload, log lines, ``status``) and the
``scan``/``read`` tools, so the advice is the same wherever the failure is seen. The advice
depends on the link: A/B polarity, baud and parity mean nothing on Modbus TCP.
"""

from __future__ import annotations

from agent.failures import Failure

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


# DL/T 645-2007 meters: found by a 12-digit address, not a unit id; an error reply carries
# an error byte whose bits are named in agent/dlt645/codec.py (0x02: no such data).
HINT_NO_REPLY_645 = ("no reply: check the A/B wires (swap them if unsure), the line settings "
                     "(DL/T 645 default 2400 baud 8E1) and the meter's 12-digit address, all "
                     "digits from the nameplate (`loadwatch scan --protocol dlt645` finds a "
                     "meter alone on its line)")
HINT_NO_REPLY_645_TCP = ("no reply: check the meter's 12-digit address, its power, and the "
                         "transparent gateway's serial settings (DL/T 645 default 2400 8E1) "
                         "and RS-485 wiring")
HINT_ERR_645 = ((0x02, "the meter does not have this data identifier: wrong profile? copy "
                       "the profile and delete that quantity"),
                (0x04, "the meter refuses this data without a password: reads normally need "
                       "none, so check the profile's data identifiers"),
                (0x01, "the meter answers 'other error': check the profile's data "
                       "identifiers; power-cycle the meter if it stays"))


def _dlt645_hint(kind: str, error_byte: int, serial: bool) -> str:
    if kind == Failure.EXCEPTION:
        for bit, text in HINT_ERR_645:
            if error_byte & bit:
                return text
        return "the meter answers error 0x%02X: see its manual" % error_byte
    if kind == Failure.TIMEOUT:
        return HINT_NO_REPLY_645 if serial else HINT_NO_REPLY_645_TCP
    return ""


def failure_hint(kind: str, exception_code: int = 0, serial: bool = True,
                 protocol: str = "modbus") -> str:
    """The advice for a failure of ``kind`` (timeout|exception|crc|io|retried) on a bus
    speaking ``protocol`` ("modbus" or "dlt645", where ``exception_code`` is the error
    byte of an 0xD1 reply)."""
    if protocol == "dlt645":
        hint = _dlt645_hint(kind, exception_code, serial)
        if hint:
            return hint
        exception_code = 0  # crc, io, retried: the same advice as for Modbus
    if exception_code in HINT_EXC:
        return HINT_EXC[exception_code]
    if kind == Failure.IO:
        return HINT_IO_SERIAL if serial else HINT_IO_TCP
    if kind == Failure.TIMEOUT:
        return HINT_NO_REPLY if serial else HINT_NO_REPLY_TCP
    if kind == Failure.CRC:
        return HINT_CRC
    if kind == Failure.EXCEPTION:
        return "the meter refuses the request (exception %d): see its manual" % exception_code
    if kind == "retried":
        return HINT_RETRIED
    return ""
