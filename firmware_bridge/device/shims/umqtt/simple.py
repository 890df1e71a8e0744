"""A small ``umqtt.simple`` for the MicroPython unix port, which does not bundle it.

Same class and methods as micropython-lib's umqtt.simple (MQTTClient, connect,
disconnect, ping, publish, subscribe, set_last_will, wait_msg, check_msg), MQTT 3.1.1,
QoS 0 and 1. Unlike the original it never uses ``assert`` on protocol data (dropped under
``-O`` and on some builds: STYLE.md) and every socket operation has a timeout, so a dead
broker raises OSError instead of hanging the gateway. On a board the device app uses the
real umqtt.simple (``mpremote mip install umqtt.simple``); only this file differs.
"""

import socket
import struct


class MQTTException(Exception):
    pass


class MQTTClient:
    def __init__(self, client_id, server, port=0, user=None, password=None, keepalive=0,
                 ssl=None, ssl_params=None):
        # The attributes micropython-lib's umqtt.simple has (the app reads some of them).
        self.client_id, self.server, self.port = client_id, server, port or 1883
        self.user, self.pswd, self.keepalive = user, password, keepalive
        self.ssl, self.sock, self.cb, self.pid = ssl, None, None, 0
        # The last will, set by set_last_will() before connect().
        self.lw_topic, self.lw_msg, self.lw_qos, self.lw_retain = None, None, 0, False
        self.timeout = 5.0

    def _send_str(self, s):
        if isinstance(s, str):
            s = s.encode()
        self.sock.write(struct.pack("!H", len(s)))
        self.sock.write(s)

    def _recv_len(self):
        n = 0
        sh = 0
        while 1:
            b = self._read(1)[0]
            n |= (b & 0x7F) << sh
            if not b & 0x80:
                return n
            sh += 7
            if sh > 21:
                raise MQTTException("bad remaining length")

    def _read(self, n):
        out = b""
        while len(out) < n:
            chunk = self.sock.read(n - len(out))
            if not chunk:
                raise OSError(-1)
            out += chunk
        return out

    def set_callback(self, f):
        self.cb = f

    def set_last_will(self, topic, msg, retain=False, qos=0):
        self.lw_topic = topic
        self.lw_msg = msg
        self.lw_qos = qos
        self.lw_retain = retain

    def connect(self, clean_session=True):
        addr = socket.getaddrinfo(self.server, self.port)[0][-1]
        self.sock = socket.socket()
        self.sock.settimeout(self.timeout)
        try:
            self.sock.connect(addr)
        except OSError:
            self.sock.close()
            self.sock = None
            raise
        premsg = bytearray(b"\x10\0\0\0\0\0")
        msg = bytearray(b"\x04MQTT\x04\x02\0\0")
        sz = 10 + 2 + len(self.client_id)
        msg[6] = clean_session << 1
        if self.user:
            sz += 2 + len(self.user) + 2 + len(self.pswd)
            msg[6] |= 0xC0
        if self.keepalive:
            msg[7] |= self.keepalive >> 8
            msg[8] |= self.keepalive & 0x00FF
        if self.lw_topic:
            sz += 2 + len(self.lw_topic) + 2 + len(self.lw_msg)
            msg[6] |= 0x4 | (self.lw_qos & 0x1) << 3 | (self.lw_qos & 0x2) << 3
            msg[6] |= self.lw_retain << 5
        i = 1
        while sz > 0x7F:
            premsg[i] = (sz & 0x7F) | 0x80
            sz >>= 7
            i += 1
        premsg[i] = sz
        self.sock.write(premsg[:i + 2])
        self.sock.write(msg)
        self._send_str(self.client_id)
        if self.lw_topic:
            self._send_str(self.lw_topic)
            self._send_str(self.lw_msg)
        if self.user:
            self._send_str(self.user)
            self._send_str(self.pswd)
        resp = self._read(4)
        if resp[0] != 0x20 or resp[1] != 0x02:
            raise MQTTException("unexpected CONNACK %r" % (resp,))
        if resp[3] != 0:
            raise MQTTException(resp[3])
        return resp[2] & 1

    def disconnect(self):
        if self.sock is None:
            return
        try:
            self.sock.write(b"\xe0\0")
        except OSError:
            pass
        self.sock.close()
        self.sock = None

    def ping(self):
        self.sock.write(b"\xc0\0")

    def publish(self, topic, msg, retain=False, qos=0):
        if isinstance(topic, str):
            topic = topic.encode()
        pkt = bytearray(b"\x30\0\0\0")
        pkt[0] |= qos << 1 | retain
        sz = 2 + len(topic) + len(msg)
        if qos > 0:
            sz += 2
        if sz >= 2097152:
            raise MQTTException("message too large")
        i = 1
        while sz > 0x7F:
            pkt[i] = (sz & 0x7F) | 0x80
            sz >>= 7
            i += 1
        pkt[i] = sz
        self.sock.write(pkt[:i + 1])
        self._send_str(topic)
        if qos > 0:
            self.pid = self.pid % 65535 + 1
            pid = self.pid
            self.sock.write(struct.pack("!H", pid))
        self.sock.write(msg)
        if qos == 1:
            while 1:
                op = self.wait_msg()
                if op == 0x40:
                    sz = self._read(1)
                    if sz != b"\x02":
                        raise MQTTException("bad PUBACK")
                    rcv_pid = struct.unpack("!H", self._read(2))[0]
                    if pid == rcv_pid:
                        return
        elif qos == 2:
            raise MQTTException("QoS 2 is not supported")

    def subscribe(self, topic, qos=0):
        if isinstance(topic, str):
            topic = topic.encode()
        pkt = bytearray(b"\x82\0\0\0")
        self.pid = self.pid % 65535 + 1
        struct.pack_into("!BH", pkt, 1, 2 + 2 + len(topic) + 1, self.pid)
        self.sock.write(pkt)
        self._send_str(topic)
        self.sock.write(qos.to_bytes(1, "little"))
        while 1:
            op = self.wait_msg()
            if op == 0x90:
                resp = self._read(4)
                if resp[3] == 0x80:
                    raise MQTTException(resp[3])
                return

    def wait_msg(self):
        res = self.sock.read(1)
        if res is None:
            return None
        if res == b"":
            raise OSError(-1)
        if res == b"\xd0":  # PINGRESP
            if self._read(1)[0] != 0:
                raise MQTTException("bad PINGRESP")
            return None
        op = res[0]
        if op & 0xF0 != 0x30:
            return op
        sz = self._recv_len()
        topic_len = struct.unpack("!H", self._read(2))[0]
        topic = self._read(topic_len)
        sz -= topic_len + 2
        if op & 6:
            pid = struct.unpack("!H", self._read(2))[0]
            sz -= 2
        msg = self._read(sz)
        if self.cb:
            self.cb(topic, msg)
        if op & 6 == 2:
            self.sock.write(b"\x40\x02" + struct.pack("!H", pid))
        return op

    def check_msg(self):
        self.sock.setblocking(False)
        try:
            return self.wait_msg()
        except OSError:
            return None
        finally:
            self.sock.settimeout(self.timeout)
