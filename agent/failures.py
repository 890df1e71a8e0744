"""How a request to a meter can fail: one enumeration for every transport, the decoder,
the health rules and the MCU's masters (MicroPython-safe: no enum module there, so the
members are plain strings, which is also what RawPoll.error_kind, the health payload's
``errors`` counts and the bridge records carry).

- ``TIMEOUT``: no (complete) answer in time;
- ``EXCEPTION``: an error answer from a live meter (a Modbus exception, a DL/T 645 error
  reply), its code kept beside it;
- ``CRC``: bytes that were not a good answer (bad checksum, truncated, garbled, another
  meter's reply);
- ``MISMATCH``: a well-formed Modbus frame that answers another request;
- ``IO``: the port or connection itself is gone (a bus problem, not the meter's).
"""


class Failure:
    TIMEOUT = "timeout"
    EXCEPTION = "exception"
    CRC = "crc"
    MISMATCH = "mismatch"
    IO = "io"
    ALL = ("timeout", "exception", "crc", "mismatch", "io")
