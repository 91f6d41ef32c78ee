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
