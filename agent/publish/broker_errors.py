"""Connection problems in the technician's words: what failed, and what to check.

Refused connection, DNS, timeout, TLS verification (with OpenSSL's reason), TLS handshake,
bad user name or password, not authorised to connect. Passwords never reach a message.
"""

from __future__ import annotations

import socket
import ssl
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only for annotations: config pulls in the whole Modbus stack
    from agent.config import BrokerSettings

# MQTT 5 reason codes (OASIS MQTT 5.0, 3.2.2.2 CONNACK and 3.4.2.1 PUBACK); paho maps the
# 3.1.1 CONNACK return codes 1..5 onto 0x84..0x88, so one table serves both.
RC_UNSUPPORTED_PROTOCOL = 0x84
RC_BAD_CLIENT_ID = 0x85
RC_BAD_CREDENTIALS = 0x86
RC_NOT_AUTHORIZED = 0x87
RC_SERVER_UNAVAILABLE = 0x88


def rc_value(reason_code: object) -> int:
    value = getattr(reason_code, "value", reason_code)
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0x80


def describe_connect_error(exc: BaseException, broker: BrokerSettings) -> tuple[str, str]:
    """(kind, message) for an exception raised while opening the connection."""
    where = "%s:%d" % (broker.host, broker.port)
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = exc.verify_message or str(exc)
        return "tls", ("TLS: the certificate of broker %s could not be verified (%s) against "
                       "ca_file %s" % (where, reason, broker.ca_file or "(system CAs)"))
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or str(exc)
        hint = ""
        if "CERTIFICATE_REQUIRED" in str(reason).upper() or "CERTIFICATE" in str(reason).upper():
            hint = " (does the broker require a client certificate: cert_file/key_file?)"
        return "tls", "TLS handshake with broker %s failed: %s%s" % (where, reason, hint)
    if isinstance(exc, ConnectionRefusedError):
        return "refused", ("broker %s refused the connection (nothing listening: is the "
                           "broker running, is the port right?)" % where)
    if isinstance(exc, socket.gaierror):
        return "dns", ("broker host %r: no such host (%s; check the name and the "
                       "gateway's DNS)" % (broker.host, exc.strerror))
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timeout", ("timed out connecting to broker %s (no answer: a firewall, a "
                           "wrong address, or no route?)" % where)
    if isinstance(exc, (ConnectionResetError, BrokenPipeError)):
        return "io", ("broker %s closed the connection during the handshake (TLS expected? "
                      "client certificate required?)" % where)
    return "io", "cannot connect to broker %s: %s" % (where, exc)


def describe_connack(rc: int, broker: BrokerSettings) -> tuple[str, str]:
    where = "%s:%d" % (broker.host, broker.port)
    if rc == RC_BAD_CREDENTIALS:
        return "auth", ("broker %s rejected user %r: wrong user name or password "
                        "(CONNACK 0x86 bad user name or password)" % (where, broker.username or ""))
    if rc == RC_NOT_AUTHORIZED:
        # Mosquitto answers a wrong password with 0x87 too (3.1.1: return code 5), so the
        # two cannot be told apart from here.
        return "auth", ("broker %s refused user %r: wrong user name or password, or the user "
                        "is not authorised to connect (CONNACK 0x87 not authorised)"
                        % (where, broker.username or "(anonymous)"))
    if rc == RC_UNSUPPORTED_PROTOCOL:
        return "protocol", "broker %s does not support this MQTT protocol version" % where
    if rc == RC_BAD_CLIENT_ID:
        return "client_id", "broker %s rejected client id %r" % (where, broker.client_id)
    if rc == RC_SERVER_UNAVAILABLE:
        return "unavailable", "broker %s is unavailable (CONNACK 0x88)" % where
    return "refused", "broker %s refused the session (CONNACK 0x%02x)" % (where, rc)


def ssl_reason(e: BaseException) -> str:
    if isinstance(e, ssl.SSLError):
        return str(e.reason or e)
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e)
