"""The one import of paho-mqtt in agent/ (the publisher and the ``watch`` subscriber use
it through here), and the one place that calls one of its private methods.

paho-mqtt is pinned to a minor version in setup.cfg; tests/test_seams.py fails loudly if
``Client._reset_sockets`` goes.
"""

from __future__ import annotations

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

__all__ = ["SESSION_EXPIRY_S", "PacketTypes", "Properties", "SubscribeOptions",
           "close_socket_now", "mqtt"]

# MQTT 5 session expiry of every client of ours (the 3.1.1 equivalent is clean_session
# false): a gateway away for less than this still gets the commands sent meanwhile.
SESSION_EXPIRY_S = 24 * 3600


def close_socket_now(client: mqtt.Client) -> None:
    """Close a client's socket at once, without a DISCONNECT or waiting for anything: the
    one call of a paho private method (``_reset_sockets``), for a link that never got its
    CONNACK or is half dead. paho has no public equivalent (``disconnect()`` queues a
    packet and waits for the loop); setup.cfg pins its minor version and
    tests/test_seams.py fails loudly if the method goes."""
    client._reset_sockets()
