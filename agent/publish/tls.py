"""TLS to the broker: the client's SSL context from ``[broker]`` (server verification on
unless the config says otherwise, TLS 1.2 at least, a client certificate when given),
errors phrased for the technician."""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

from agent.publish.broker_errors import ssl_reason

if TYPE_CHECKING:  # only for annotations: config pulls in the whole Modbus stack
    from agent.config import BrokerSettings


def make_tls_context(broker: BrokerSettings) -> ssl.SSLContext:
    """Server verification on (system CAs unless ``ca_file``); client certificate if set.

    OpenSSL's errors name no file ("[Errno 13] Permission denied", "no certificate or crl
    found"), and the files may have changed since the config was checked: a ValueError
    here names the setting and the path."""
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH,
                                         cafile=broker.ca_file or None)
    except (OSError, ssl.SSLError) as e:
        raise ValueError("cannot use ca_file %s: %s" % (
            broker.ca_file or "(system CAs)", ssl_reason(e))) from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if broker.cert_file:
        try:
            ctx.load_cert_chain(broker.cert_file, broker.key_file or None)
        except (OSError, ssl.SSLError) as e:
            raise ValueError("cannot use cert_file %s / key_file %s: %s" % (
                broker.cert_file, broker.key_file, ssl_reason(e))) from None
    if broker.insecure_skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx
