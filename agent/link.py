"""What every protocol's transport raises: one failure type for the bus scheduler.

The poller (agent/modbus/poller.py) is protocol-neutral (DESIGN.md 10): it retries,
backs off and reports health from ``TransportError.kind`` alone, whether the request was
Modbus (agent/modbus/transport.py) or DL/T 645 (agent/dlt645/transport.py).
"""

from __future__ import annotations

from agent.failures import Failure


class TransportError(Exception):
    """A failed request. ``kind`` is a ``Failure`` (agent/failures.py; RawPoll.error_kind):
    "exception" is an error answer from a live meter (a Modbus exception, a DL/T 645
    0xD1 reply) with its code in ``exception_code``; "crc" is bytes that were not a good
    answer (bad checksum, truncated, garbled, another meter's reply); "mismatch" is a
    well-formed Modbus frame that answers another request (agent/modbus/replies.py)."""

    def __init__(self, kind: str, message: str, exception_code: int = 0):
        if kind not in Failure.ALL:
            raise ValueError("%r is not a failure kind (agent/failures.py)" % (kind,))
        super().__init__(message)
        self.kind = kind
        self.exception_code = exception_code
