"""ZMTP 3.1 by hand, for probing a daemon's ingest limits from outside: a raw TCP connection that
does the NULL handshake as a PUSH socket and then sends whatever bytes the caller writes (frames
declared larger than what follows, half-sent messages), which no ZeroMQ library would send."""
import socket
import struct

GREETING = b"\xff" + b"\0" * 8 + b"\x7f\x03\x01" + b"NULL".ljust(20, b"\0") + b"\0" + b"\0" * 31


def raw_push(endpoint, timeout=10.0):
    """A connected socket past the NULL handshake (our READY sent; the daemon's is left unread);
    ConnectionError if the daemon closes it first or does not greet as a NULL ZMTP 3 peer, and
    socket.timeout if connecting or its greeting takes longer than `timeout` seconds."""
    host, port = endpoint.removeprefix("tcp://").rsplit(":", 1)
    s = socket.create_connection((host.strip("[]"), int(port)), timeout=timeout)
    try:
        s.sendall(GREETING)
        greeting = b""
        while len(greeting) < 64:
            got = s.recv(64 - len(greeting))
            if not got:
                raise ConnectionError("closed by the daemon")
            greeting += got
        # Byte 8 is libzmq's ZMTP 1.0 compatibility (1); the daemon sends 0.
        if greeting[0] != 0xFF or greeting[9] & 1 != 1 or greeting[10] != 3 or greeting[12:17] != b"NULL\0":
            raise ConnectionError(f"unexpected greeting {greeting[:16]!r}")
        ready = b"\x05READY\x0bSocket-Type" + struct.pack(">I", 4) + b"PUSH"
        s.sendall(bytes([4, len(ready)]) + ready)
    except BaseException:
        s.close()
        raise
    s.settimeout(None)  # the caller's writes and reads block, as before
    return s


def frame_header(size, more=False):
    """A long frame's header (flags and an 8-byte size)."""
    return bytes([(1 if more else 0) | 2]) + struct.pack(">Q", size)


def short_frame(data, more=False):
    return bytes([1 if more else 0, len(data)]) + data


class RawCurvePush:
    """A CurveZMQ (RFC 26) PUSH connection by hand, over libsodium (ctypes): the handshake with the
    daemon's public key and this client's keys (`CurveKeys`), then boxed frames and commands as the
    caller orders them (a PING between a message's frames, a frame over a limit), which no ZeroMQ
    library lets one choose; `read_box` reads what the daemon boxes back (a PONG)."""

    def __init__(self, endpoint, keys, timeout=10.0):
        import ctypes
        import ctypes.util
        import os
        from zmq.utils import z85
        self._c = ctypes
        self._na = ctypes.CDLL(ctypes.util.find_library("sodium") or "libsodium.so.23")
        if self._na.sodium_init() < 0:
            raise OSError("libsodium did not initialise")
        self.server = z85.decode(keys.server_public)
        self.public, self.secret = z85.decode(keys.public), z85.decode(keys.secret)
        pk, sk = ctypes.create_string_buffer(32), ctypes.create_string_buffer(32)
        self._na.crypto_box_keypair(pk, sk)
        self.transient_public, self.transient_secret = pk.raw, sk.raw
        self.nonce = 1
        host, port = endpoint.removeprefix("tcp://").rsplit(":", 1)
        self.sock = socket.create_connection((host.strip("[]"), int(port)), timeout=timeout)
        try:
            self._handshake(os.urandom(16))
        except BaseException:
            self.sock.close()
            raise

    def _box(self, message, nonce, public, secret):
        out = self._c.create_string_buffer(len(message) + 16)
        if self._na.crypto_box_easy(out, message, self._c.c_ulonglong(len(message)), nonce, public, secret) != 0:
            raise ValueError("crypto_box_easy failed")
        return out.raw

    def _unbox(self, boxed, nonce, public, secret):
        out = self._c.create_string_buffer(len(boxed) - 16)
        if self._na.crypto_box_open_easy(out, boxed, self._c.c_ulonglong(len(boxed)), nonce, public, secret) != 0:
            raise ConnectionError("a box from the daemon does not open")
        return out.raw

    def _next_nonce(self):
        n = struct.pack(">Q", self.nonce)
        self.nonce += 1
        return n

    def _read(self, n):
        data = b""
        while len(data) < n:
            got = self.sock.recv(n - len(data))
            if not got:
                raise ConnectionError("closed by the daemon")
            data += got
        return data

    def _read_frame(self):
        flags, size = self._read(2)
        if flags & 2:
            size = struct.unpack(">Q", bytes([size]) + self._read(7))[0]
        return flags, self._read(size)

    @staticmethod
    def _frame(body, flags):
        if len(body) <= 255:
            return bytes([flags, len(body)]) + body
        return bytes([flags | 2]) + struct.pack(">Q", len(body)) + body

    @staticmethod
    def _name(text):
        return bytes([len(text)]) + text

    def _handshake(self, vouch_nonce):
        self.sock.sendall(b"\xff" + b"\0" * 8 + b"\x7f\x03\x01" + b"CURVE".ljust(20, b"\0") + b"\0" + b"\0" * 31)
        greeting = self._read(64)
        if greeting[12:17] != b"CURVE":
            raise ConnectionError(f"not a CURVE daemon: {greeting[:20]!r}")
        n = self._next_nonce()
        hello = (self._name(b"HELLO") + b"\x01\x00" + b"\0" * 72 + self.transient_public + n
                 + self._box(b"\0" * 64, b"CurveZMQHELLO---" + n, self.server, self.transient_secret))
        self.sock.sendall(self._frame(hello, 4))
        _, welcome = self._read_frame()
        if not welcome.startswith(self._name(b"WELCOME")):
            raise ConnectionError(f"expected WELCOME, got {welcome[:16]!r}")
        opened = self._unbox(welcome[24:], b"WELCOME-" + welcome[8:24], self.server, self.transient_secret)
        self.server_transient, cookie = opened[:32], opened[32:]
        vouch = self._box(self.transient_public + self.server, b"VOUCH---" + vouch_nonce, self.server_transient, self.secret)
        metadata = self._name(b"Socket-Type") + struct.pack(">I", 4) + b"PUSH"
        n = self._next_nonce()
        initiate = (self._name(b"INITIATE") + cookie + n
                    + self._box(self.public + vouch_nonce + vouch + metadata, b"CurveZMQINITIATE" + n,
                                self.server_transient, self.transient_secret))
        self.sock.sendall(self._frame(initiate, 4))
        _, ready = self._read_frame()
        if not ready.startswith(self._name(b"READY")):
            raise ConnectionError(f"the daemon did not take the handshake: {ready[:32]!r}")

    def box(self, payload, more=False, command=False):
        """One MESSAGE frame: `payload` boxed with its flags byte (more 1, command 2)."""
        n = self._next_nonce()
        flags = (1 if more else 0) | (2 if command else 0)
        sealed = self._box(bytes([flags]) + payload, b"CurveZMQMESSAGEC" + n, self.server_transient, self.transient_secret)
        return self._frame(self._name(b"MESSAGE") + n + sealed, 0)

    def send(self, data):
        self.sock.sendall(data)

    def read_box(self):
        """The daemon's next MESSAGE, opened: (flags byte, payload)."""
        _, body = self._read_frame()
        if not body.startswith(self._name(b"MESSAGE")):
            raise ConnectionError(f"expected MESSAGE, got {body[:16]!r}")
        opened = self._unbox(body[16:], b"CurveZMQMESSAGES" + body[8:16], self.server_transient, self.transient_secret)
        return opened[0], opened[1:]

    def close(self):
        self.sock.close()
