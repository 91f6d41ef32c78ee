"""A small Python client for the Eddy daemon (protocol eddy.v1, see protocols/SPEC.md).

    from eddy_client import Producer, Subscriber, fetch_snapshot

    with Producer("tcp://127.0.0.1:7700") as p:
        p.send("pump-7", samples)                  # numpy (n, dim) or (n,) for a univariate stream
    with Subscriber("tcp://127.0.0.1:7701", [topic("score", "pump-7"), "alert/"]) as s:
        got = s.recv(timeout_ms=1000)              # (topic, decoded protobuf message), None on timeout
    snap = fetch_snapshot("tcp://127.0.0.1:7702", "pump-7", "autoencoder")
    errors = snap.reconstruction_errors(snap.inputs(samples))   # the daemon's errors, in numpy

Install: `pip install ./protocols/python` (from a checkout of the Eddy repository).

A daemon with CURVE (curve_secret_key) takes only clients with an allowed key pair:

    keys = CurveKeys.load("server.pub", "pump-7.key")   # files from `eddy keygen`
    Producer("tcp://eddy.example:7700", curve=keys)     # likewise Subscriber, fetch_snapshot
"""
import os
import stat
import time
import unicodedata
import zlib
from dataclasses import dataclass, field

import numpy as np
import zmq

from eddy.v1 import eddy_pb2 as pb

# The client's major version is the wire protocol's (eddy.v1 -> 1.x.y): a client speaks the daemons
# whose `eddy --version` names the same protocol.
PROTOCOL = "eddy.v1"
__version__ = "1.0.0"

__all__ = ["PROTOCOL", "__version__", "Producer", "Subscriber", "Refusals", "HeartbeatParts", "Snapshot", "Head", "CurveKeys", "fetch_snapshot",
           "fit_head", "fit_softmax", "representations", "stretches", "sample_batch", "line_batch", "topic", "pb",
           "MESSAGE_TYPES"]

# Topic kind (frame 0 up to the first '/') -> message type of frame 1.
MESSAGE_TYPES = {
    "score": pb.ScoreBatch,
    "alert": pb.Alert,
    "snapshot": pb.ModelSnapshot,
    "hb": pb.Heartbeat,
    "rep": pb.RepresentationBatch,
    "class": pb.ClassBatch,
    "error": pb.Error,
}


def topic(kind, stream=None):
    """The topic prefix for one stream's messages of a kind (`score`, `alert`, `class`, `rep`,
    `snapshot`, `error`): `kind/stream/`, with the closing slash, since a SUB socket matches
    prefixes and `score/ab` would take `score/abc/` too; `kind/` for every stream's."""
    if kind not in MESSAGE_TYPES:
        raise ValueError(f"topic kind {kind!r} is not one of {sorted(MESSAGE_TYPES)}")
    return f"{kind}/" if stream is None else f"{kind}/{stream}/"


def _label_text(label):
    """A label as the daemon takes it: text (bytes as UTF-8, anything else as str())."""
    if isinstance(label, (bytes, bytearray)):
        return bytes(label).decode("utf-8")
    return str(label)


def _not_one_string(items, what):
    if isinstance(items, (str, bytes)):
        raise TypeError(f"{what} is a list, not one string (a string would be split into characters)")


def read_key_file(path):
    """The `key = "value"` fields of a key file written by `eddy keygen` (comments are whole lines)."""
    fields = {}
    with open(path) as f:
        for number, raw in enumerate(f, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            key, sep, value = line.partition("=")
            if not sep:
                raise ValueError(f"{path} line {number}: expected key = \"value\"")
            fields[key.strip()] = value.strip().strip('"')
    return fields


def _connect(socket, endpoint):
    """Connects `socket`; an IPv6 address (`tcp://[::1]:7701`) needs a socket that takes IPv6."""
    if endpoint.startswith("tcp://") and "[" in endpoint:
        socket.setsockopt(zmq.IPV6, 1)
    socket.connect(endpoint)


@dataclass(frozen=True)
class CurveKeys:
    """A CURVE client's keys (Z85 text): the daemon's public key and this client's key pair."""
    server_public: str
    public: str
    secret: str

    @classmethod
    def load(cls, server_key, client_key):
        """From the daemon's .pub file (or its 40-character key) and this client's .key file, which
        is refused, as the daemon refuses its own, when group or others have access to it."""
        server_key, client_key = os.fspath(server_key), os.fspath(client_key)
        if len(server_key) == 40 and not os.path.exists(server_key):
            server_public = server_key
        else:
            server_public = read_key_file(server_key)["public-key"]
        mode = stat.S_IMODE(os.stat(client_key).st_mode)
        if mode & 0o077:
            raise PermissionError(f"{client_key} has mode {mode:o}; a secret key must be 0600 (chmod 600 {client_key})")
        fields = read_key_file(client_key)
        public = zmq.curve_public(fields["secret-key"].encode()).decode()
        return cls(server_public, public, fields["secret-key"])

    def apply(self, socket):
        """Makes `socket` a CURVE client (before it connects)."""
        socket.curve_serverkey = self.server_public.encode()
        socket.curve_publickey = self.public.encode()
        socket.curve_secretkey = self.secret.encode()


def check_stream_name(stream):
    """Raises ValueError if the daemon would refuse `stream` whatever its settings (SPEC 4: empty, a
    '/', a control or format character); its length limit (`max_stream_name_bytes`, 128 by default)
    is the daemon's to say. A refused name's message is reported on `error/_/`, not on the stream's
    own topic, so it is better refused here."""
    if not isinstance(stream, str):
        raise TypeError(f"a stream name is a str, not {type(stream).__name__}")
    if not stream:
        raise ValueError("the stream name is empty")
    if "/" in stream:
        raise ValueError(f"stream name {stream!r} contains '/'")
    bad = next((c for c in stream if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")), None)
    if bad is not None:
        raise ValueError(f"stream name {stream!r} contains the control character U+{ord(bad):04X}")


def _timestamps(timestamps_ns, n):
    """Timestamps as the wire's integer nanoseconds since the epoch: numpy datetime64 values are
    converted; floats (seconds from time.time(), say) are refused rather than truncated."""
    t = np.asarray(timestamps_ns)
    if t.ndim != 1 or len(t) != n:
        raise ValueError(f"{t.size} timestamps for {n} samples" if t.ndim == 1 else f"timestamps of shape {t.shape}")
    if np.issubdtype(t.dtype, np.datetime64):
        return t.astype("datetime64[ns]").astype(np.int64).tolist()
    if not np.issubdtype(t.dtype, np.integer):
        raise TypeError(f"timestamps_ns are integer nanoseconds since the epoch (or numpy datetime64), not {t.dtype}: "
                        "for seconds from time.time(), send time.time_ns() or int(seconds * 1e9)")
    return t.astype(np.int64).tolist()


def sample_batch(stream, samples, sequence, timestamps_ns=None, producer=""):
    """The SampleBatch for `samples` (float32 (n, dim), or (n,) meaning dim 1)."""
    x = np.asarray(samples, dtype="<f4")
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"samples must be (n,) or (n, dim) with n and dim at least 1, got shape {x.shape}")
    stamps = None if timestamps_ns is None else _timestamps(timestamps_ns, x.shape[0])
    batch = pb.SampleBatch(stream=stream, sequence=sequence, dim=x.shape[1], count=x.shape[0],
                           values=np.ascontiguousarray(x).tobytes(), producer=producer)
    if stamps is not None:
        batch.timestamps_ns.extend(stamps)
    return batch


def line_batch(stream, lines, sequence, timestamps_ns=None, producer=""):
    """The LineBatch for `lines` (str, encoded as UTF-8, or bytes sent as they are)."""
    _not_one_string(lines, "lines")
    batch = pb.LineBatch(stream=stream, sequence=sequence, producer=producer)
    batch.lines.extend(l if isinstance(l, bytes) else l.encode("utf-8") for l in lines)
    if timestamps_ns is not None:
        batch.timestamps_ns.extend(_timestamps(timestamps_ns, len(batch.lines)))
    return batch


class Producer:
    """PUSH samples (or log lines) to a daemon's ingest endpoint; numbers each stream's samples from 0.

    While the daemon is unreachable, sends queue here up to ZeroMQ's high-water mark (1,000
    batches) and return; past that a send waits. With `immediate=True` nothing queues while no
    connection is up: a send waits for one. With `send_timeout_ms` a send waits at most that long
    and raises TimeoutError, the batch unsent and the stream's sequence unchanged.

    `send` returns once the batch is queued, not sent: `close()` (or leaving the `with` block) waits
    until every queued batch has gone to the daemon, or `linger_ms` has passed (those still queued
    then are dropped). A script that ends without closing loses what is still queued. With a
    `context` of the caller's, close() does not wait: the batches go when that context is
    terminated."""

    def __init__(self, endpoint, context=None, linger_ms=5000, curve=None, send_timeout_ms=None, immediate=False):
        # A context of its own, terminated at close(): terminating is what waits for the queue.
        self._own_context = context is None
        self.context = context or zmq.Context()
        self.socket = self.context.socket(zmq.PUSH)
        self.socket.setsockopt(zmq.LINGER, linger_ms)
        if immediate:
            self.socket.setsockopt(zmq.IMMEDIATE, 1)
        if send_timeout_ms is not None:
            self.socket.setsockopt(zmq.SNDTIMEO, int(send_timeout_ms))
        if curve is not None:
            curve.apply(self.socket)
        _connect(self.socket, endpoint)
        self.sequences = {}

    def send(self, stream, samples, timestamps_ns=None, sequence=None):
        """Sends one batch; returns the sequence number of its first sample."""
        check_stream_name(stream)
        seq = self.sequences.get(stream, 0) if sequence is None else sequence
        batch = sample_batch(stream, samples, seq, timestamps_ns)
        self._send([stream.encode(), batch.SerializeToString()])
        self.sequences[stream] = seq + batch.count
        return seq

    def _send(self, frames):
        try:
            self.socket.send_multipart(frames)
        except zmq.Again:
            raise TimeoutError("the daemon did not take the batch within send_timeout_ms") from None

    def send_lines(self, stream, lines, timestamps_ns=None, sequence=None):
        """Sends log lines to a log stream (without their line terminators); returns the sequence
        number of the first. The daemon mines them into templates and scores each line."""
        check_stream_name(stream)
        seq = self.sequences.get(stream, 0) if sequence is None else sequence
        batch = line_batch(stream, lines, seq, timestamps_ns)
        if not batch.lines:
            raise ValueError("no lines to send (as send and send_labels refuse an empty batch)")
        self._send([stream.encode(), batch.SerializeToString()])
        self.sequences[stream] = seq + len(batch.lines)
        return seq

    def send_labels(self, stream, samples, labels):
        """Sends labelled samples for the stream's few-label head (a LabelBatch, SPEC 4.2): numpy
        (n, dim) and n labels; (n,) with n labels is n samples of one value, with one label one
        sample (a `stretches` row). Labels are text: bytes are sent as UTF-8, anything else as
        str(). The stream must exist and take labels (`max_labels`); its classes then come on
        `class/<stream>/`."""
        check_stream_name(stream)
        _not_one_string(labels, "labels")
        labels = [_label_text(label) for label in labels]
        x = np.asarray(samples, dtype="<f4")
        if x.ndim == 1:
            x = x[None, :] if len(labels) == 1 else x[:, None]
        if x.ndim != 2 or x.shape[0] == 0 or x.shape[0] != len(labels):
            raise ValueError(f"{len(labels)} labels for samples of shape {x.shape}: one label per sample")
        batch = pb.LabelBatch(stream=stream, labels=labels, dim=x.shape[1],
                              count=x.shape[0], values=x.tobytes())
        self._send([stream.encode(), batch.SerializeToString()])

    def close(self):
        """Closes the socket; with the producer's own context, waits until the queued batches are
        sent (at most `linger_ms`)."""
        self.socket.close()
        if self._own_context:
            self.context.term()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class HeartbeatParts:
    """Gathers a heartbeat published in parts (SPEC 7: a daemon with more streams than one message
    holds sends `parts` messages of one `time_ns`). `add` takes each Heartbeat as it comes and
    returns the whole heartbeat's parts, in order, once the last has come; a heartbeat one of whose
    parts was lost (a subscriber that fell behind) is dropped when a newer one completes.

        beats = HeartbeatParts()
        parts = beats.add(message)          # None until complete
        streams = [s for part in parts for s in part.streams]
    """

    # Heartbeats still waiting for parts: the newest few (a subscriber that lost parts of every
    # heartbeat would otherwise keep them all).
    KEPT = 8

    def __init__(self):
        self.pending = {}

    def add(self, heartbeat):
        parts = max(heartbeat.parts, 1)  # 0: a daemon from before parts, one message
        if heartbeat.part >= parts:
            return None  # not a part of this heartbeat (a damaged or foreign message)
        got = self.pending.setdefault(heartbeat.time_ns, {})
        for t in sorted(self.pending)[:-self.KEPT]:
            del self.pending[t]
        got[heartbeat.part] = heartbeat
        if len(got) < parts or heartbeat.time_ns not in self.pending:
            return None
        for t in [t for t in self.pending if t <= heartbeat.time_ns]:
            del self.pending[t]
        return [got[k] for k in range(parts)]


class Subscriber:
    """SUB to a daemon's publish endpoint; `recv` returns (topic, decoded message).

    Topics are prefixes, as ZeroMQ matches them: `topic("score", "ab")` (`score/ab/`) is one
    stream's scores, while `score/ab` takes stream `abc`'s too."""

    def __init__(self, endpoint, topics=("",), context=None, curve=None):
        if isinstance(topics, (str, bytes)):
            raise TypeError("topics is a list of topic prefixes, e.g. [\"alert/\"], not one string")
        self.context = context or zmq.Context.instance()
        self.socket = self.context.socket(zmq.SUB)
        if curve is not None:
            curve.apply(self.socket)
        self.topics = [t.encode() if isinstance(t, str) else bytes(t) for t in topics]
        for t in self.topics:
            self.socket.setsockopt(zmq.SUBSCRIBE, t)
        _connect(self.socket, endpoint)
        self._held = []

    def wait_ready(self, timeout_ms=5000):
        """Returns once a heartbeat (SPEC 7: every `heartbeat_seconds`) has arrived, so the
        subscription is live: ZeroMQ drops what a daemon publishes before a subscriber has
        connected and subscribed, so a script that subscribes and at once sends would miss the
        first scores. Messages of the subscribed topics that arrive meanwhile are kept for `recv`.
        Raises TimeoutError if no heartbeat comes within `timeout_ms`."""
        extra = not any(b"hb/".startswith(t) for t in self.topics)
        if extra:
            self.socket.setsockopt(zmq.SUBSCRIBE, b"hb/")
        try:
            end = time.monotonic() + timeout_ms / 1000
            while True:
                left = end - time.monotonic()
                if left <= 0 or not self.socket.poll(max(1, int(left * 1000))):
                    raise TimeoutError(f"no heartbeat within {timeout_ms} ms: is the daemon publishing here?")
                frames = self.socket.recv_multipart()
                if not extra or not frames[0].startswith(b"hb/") or any(frames[0].startswith(t) for t in self.topics):
                    self._held.append(frames)
                if frames[0].startswith(b"hb/"):
                    return
        finally:
            if extra:
                self.socket.setsockopt(zmq.UNSUBSCRIBE, b"hb/")

    def recv(self, timeout_ms=None):
        """The next message as (topic, message), or None after timeout_ms."""
        if self._held:
            return self._decode(self._held.pop(0))
        end = None if timeout_ms is None else time.monotonic() + timeout_ms / 1000
        while True:
            if end is not None and not self.socket.poll(max(0, int((end - time.monotonic()) * 1000))):
                return None
            frames = self.socket.recv_multipart()
            # A heartbeat `wait_ready` subscribed to for a moment may still be queued after it.
            if any(frames[0].startswith(t) for t in self.topics):
                return self._decode(frames)

    @staticmethod
    def _decode(frames):
        topic = frames[0].decode()
        kind = topic.split("/", 1)[0]
        message_type = MESSAGE_TYPES.get(kind)
        if message_type is None or len(frames) != 2:
            return topic, None
        return topic, message_type.FromString(frames[1])

    def close(self):
        self.socket.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Refusals:
    """What the daemon refuses of one stream's messages, as `eddy feed` and `eddy label` hear it
    (`Producer.send` does not wait for the daemon: a refusal is published on `error/<stream>/`).
    Open it before sending; `wait_ready` returns once a whole heartbeat has come, so no refusal of
    the first message is missed; `confirm` returns the refusals (Error messages) once the stream's
    heartbeats show every sample sent since `wait_ready` taken or refused (`samples`), or, for
    labels (which a stream does not count, `samples=None`), after two more whole heartbeats. A
    message refused before its samples could be counted (OVERSIZED: its size alone refused it;
    `samples` 0 in the Error) cannot be accounted for: once there is one, `confirm` returns after
    two whole heartbeats in which the stream took nothing more. It raises TimeoutError if the
    heartbeats do not confirm it within `timeout_ms` without progress.

        with Refusals(publish, "pump-7") as r, Producer(ingest) as p:
            r.wait_ready()
            p.send("pump-7", x)
            errors = r.confirm(samples=len(x))
    """

    def __init__(self, endpoint, stream, context=None, curve=None):
        self.stream = stream
        self.sub = Subscriber(endpoint, [topic("error", stream), "hb/"], context=context, curve=curve)
        self.errors, self.heartbeats, self.accepted, self.before = [], 0, None, 0

    def _read(self, timeout_ms):
        got = self.sub.recv(timeout_ms=timeout_ms)
        if got is None or got[1] is None:
            return
        t, m = got
        if t.startswith("hb/"):
            status = next((s for s in m.streams if s.stream == self.stream), None)
            if status is not None:
                self.accepted = status.accepted
            if m.part + 1 >= m.parts:  # a heartbeat in parts counts once, at its last
                self.heartbeats += 1
        else:
            self.errors.append(m)

    def _wait(self, done, progress, timeout_ms):
        last, quiet = progress(), time.monotonic()
        while not done():
            if time.monotonic() - quiet > timeout_ms / 1000:
                raise TimeoutError(f"the daemon's heartbeats did not confirm stream {self.stream}'s messages")
            self._read(50)
            if progress() != last:
                last, quiet = progress(), time.monotonic()

    def wait_ready(self, timeout_ms=5000):
        self._wait(lambda: self.heartbeats > 0, lambda: 0, timeout_ms)
        self.before = self.accepted or 0

    def confirm(self, samples=None, timeout_ms=5000):
        """The refusals since `wait_ready` or the last `confirm`, once the daemon has dealt with the
        `samples` sent since then (None: labels, two whole heartbeats)."""
        if samples is None:
            while self.sub.socket.poll(0):  # heartbeats that came before the last message
                self._read(0)
            seen = self.heartbeats
            self._wait(lambda: self.heartbeats >= seen + 2, lambda: self.heartbeats, timeout_ms)
        else:
            refused = lambda: sum(e.samples for e in self.errors)
            progress = lambda: ((self.accepted or 0), refused())
            last, beats_then = progress(), self.heartbeats  # the last progress, and the heartbeats at it

            def done():
                nonlocal last, beats_then
                if (self.accepted or 0) - self.before + refused() >= samples:
                    return True
                if progress() != last:
                    last, beats_then = progress(), self.heartbeats
                uncounted = any(e.samples == 0 for e in self.errors)
                return uncounted and self.heartbeats >= beats_then + 2

            self._wait(done, progress, timeout_ms)
        errors, self.errors, self.before = self.errors, [], self.accepted or 0
        return errors

    def close(self):
        self.sub.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@dataclass
class Snapshot:
    """A model's parameters as numpy arrays, with its forward pass (protocols/SPEC.md, section 6)."""
    message: object
    weights: list = field(default_factory=list)      # per layer, (outputs, inputs)
    biases: list = field(default_factory=list)       # per layer, (outputs,)
    activations: list = field(default_factory=list)  # per layer, "relu" or "identity"
    mean: np.ndarray = None
    variance: np.ndarray = None
    epsilon: float = 0.0

    ACTIVATIONS = {pb.ACTIVATION_RELU: "relu", pb.ACTIVATION_IDENTITY: "identity"}

    @classmethod
    def from_message(cls, m):
        """The snapshot in `m`, checked: its checksum, one tensor per name, every layer's weight and
        bias present and of shapes that chain from `input_dim`, activations this client knows, and
        a normaliser of `input_dim` values. A snapshot that fails any is refused (ValueError),
        never run with numpy's broadcasting filling the gaps."""
        crc = 0
        for t in m.tensors:
            crc = zlib.crc32(t.data, crc)
        if crc != m.checksum:
            raise ValueError(f"snapshot checksum {m.checksum:#x} does not match its tensors ({crc:#x})")
        tensors = {}
        for t in m.tensors:
            if t.name in tensors:
                raise ValueError(f"snapshot has two tensors named {t.name}")
            data = np.frombuffer(t.data, dtype="<f4")
            if data.size != int(np.prod(t.shape, dtype=np.int64)):
                raise ValueError(f"tensor {t.name} has {data.size} values for shape {list(t.shape)}")
            tensors[t.name] = data.reshape(tuple(t.shape))
        unknown = [a for a in m.activations if a not in cls.ACTIVATIONS]
        if unknown:
            raise ValueError(f"activation {unknown[0]} is not one this client knows (a newer daemon?)")
        weights, biases, width = [], [], m.input_dim
        for i in range(len(m.activations)):
            w, b = tensors.get(f"layers.{i}.weight"), tensors.get(f"layers.{i}.bias")
            if w is None or b is None:
                raise ValueError(f"snapshot lacks layer {i}'s weight or bias")
            if w.ndim != 2 or b.ndim != 1 or w.shape != (b.shape[0], width):
                raise ValueError(f"layer {i}: weight {w.shape} and bias {b.shape} do not take {width} inputs")
            weights.append(w)
            biases.append(b)
            width = w.shape[0]
        mean = np.asarray(m.normaliser_mean, dtype=np.float32)
        variance = np.asarray(m.normaliser_variance, dtype=np.float32)
        if len(mean) != m.input_dim or len(variance) != m.input_dim:
            raise ValueError(f"normaliser of {len(mean)} means and {len(variance)} variances for {m.input_dim} inputs")
        return cls(
            message=m,
            weights=weights,
            biases=biases,
            activations=[cls.ACTIVATIONS[a] for a in m.activations],
            mean=mean,
            variance=variance,
            epsilon=m.normaliser_epsilon,
        )

    def head(self):
        """The few-label head the daemon fitted on this MoCo snapshot (SPEC 6), or None: the same
        classes the daemon publishes on `class/<stream>/` for the samples it scores with this
        version, from `head.predict(snapshot.inputs(samples))`."""
        m = self.message
        if not m.head_classes:
            return None
        weights = np.frombuffer(m.head_weights.data, dtype="<f4").reshape(tuple(m.head_weights.shape))
        return Head(self, weights, np.asarray(m.head_bias, np.float32), np.asarray(m.head_mean, np.float32),
                    np.asarray(m.head_scale, np.float32), np.asarray(list(m.head_classes)))

    def inputs(self, samples):
        """The model's input rows for consecutive samples of the stream, as the daemon builds them.

        A stream's `transform` comes first (`log`: sign(x) * ln(1 + |x|) for each value). A stream
        without a window then takes its samples as they are. A windowed stream (section 4:
        `window` positions at each of `window_scales`, for each channel) gets one row per sample
        that has `window * max(window_scales) - 1` samples before it in `samples`: pass the stream's
        last samples before the ones to score, or accept fewer rows than samples.
        """
        m = self.message
        x = np.asarray(samples, dtype=np.float32)
        if m.input_transform == pb.INPUT_TRANSFORM_LOG:
            # The stream's `transform = log`, applied to each value before anything else.
            x = (np.sign(x) * np.log1p(np.abs(x))).astype(np.float32)
        if m.window == 0:
            # Rows, always: one sample of the model's width, or a univariate stream's values.
            if x.ndim == 1:
                if m.input_dim == 1:
                    return x[:, None]
                if len(x) == m.input_dim:
                    return x[None, :]
                raise ValueError(f"{len(x)} values: the model takes samples of {m.input_dim}, as (n, {m.input_dim})")
            return x
        if x.ndim == 1:
            x = x[:, None]
        w, scales = m.window, list(m.window_scales) or [1]
        channels = m.input_dim // (w * len(scales))
        if x.shape[1] != channels:
            raise ValueError(f"samples have {x.shape[1]} channels, the model's input {channels}")
        need = self.span
        n = x.shape[0] - need + 1
        if n <= 0:
            return np.zeros((0, m.input_dim), dtype=np.float32)
        newest = np.arange(need - 1, x.shape[0])            # the sample each row belongs to
        blocks = []
        for s in scales:
            # Each block's own mean (a running sum over the whole array would carry a large value's
            # rounding into every later block).
            block_means = np.lib.stride_tricks.sliding_window_view(x.astype(np.float64), s, axis=0).mean(axis=-1)
            ends = newest[:, None] + 1 - (w - 1 - np.arange(w))[None, :] * s   # (rows, w), exclusive
            means = block_means[ends - s]                                      # (rows, w, channels)
            blocks.append(means.transpose(0, 2, 1))                            # channel by channel
        return np.concatenate(blocks, axis=1).reshape(n, -1).astype(np.float32)

    @property
    def span(self):
        """Samples one labelled sample of this stream carries (SPEC 4.2): what a windowed stream's
        window reads, `window * max(window_scales)`; 1 for any other stream."""
        m = self.message
        return m.window * max(list(m.window_scales) or [1]) if m.window else 1

    def normalise(self, x):
        """The model's input rows `x` ((n, input_dim), as `inputs` builds them from samples), normalised."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.mean.shape[0]:
            raise ValueError(f"rows of shape {x.shape}, the model takes (n, {self.mean.shape[0]}): "
                             "build them from the stream's samples with Snapshot.inputs(samples)")
        return (x - self.mean) / np.sqrt(self.variance + np.float32(self.epsilon))

    def forward(self, x, layers=None):
        """Output of the first `layers` layers (all by default) on input rows `x` (`inputs(samples)`:
        a stream with a window or a transform does not take its samples as they are)."""
        h = self.normalise(x)
        for w, b, a in list(zip(self.weights, self.biases, self.activations))[:layers]:
            h = h @ w.T + b
            if a == "relu":
                h = np.maximum(h, 0)
        return h

    def reconstruction_errors(self, x):
        """Autoencoder: mean squared reconstruction error per sample, in normalised units."""
        return ((self.forward(x) - self.normalise(x)) ** 2).mean(axis=1)

    def representation(self, x):
        """MoCo: the encoder's output, the features a downstream head is fitted on."""
        return self.forward(x, layers=self.message.representation_layer + 1)


def stretches(samples, ends, span):
    """Labelled samples for a windowed stream (SPEC 4.2): for each index in `ends`, the `span`
    consecutive samples of `samples` that end at it, oldest first, a sample's channels together,
    as one row. `Producer.send_labels` sends them; the daemon classes the window ending at each."""
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim == 1:
        x = x[:, None]
    ends = np.asarray(ends, dtype=np.int64)
    if ends.size and (ends.min() < span - 1 or ends.max() >= len(x)):
        raise ValueError(f"each end needs {span - 1} samples before it within the {len(x)} given")
    index = ends[:, None] - (span - 1) + np.arange(span)[None, :]
    return x[index].reshape(len(ends), span * x.shape[1])


def representations(message):
    """A RepresentationBatch's values as a (count, dim) float32 array."""
    return np.frombuffer(message.values, dtype="<f4").reshape(message.count, message.dim)


def fetch_snapshot(endpoint, stream, model="autoencoder", timeout_ms=5000, context=None, curve=None, wait_s=0):
    """The latest snapshot of `stream`'s model from the daemon's snapshot endpoint. A stream's first
    snapshot comes once its model has trained and `snapshot_every_steps` (1,000) steps or
    `snapshot_every_seconds` (30) have passed; until then the daemon answers NOT_FOUND (a
    LookupError). With `wait_s` > 0 the request is repeated, once a second, until a snapshot comes
    or `wait_s` seconds have passed."""
    end = time.monotonic() + wait_s
    while True:
        try:
            return _fetch_snapshot(endpoint, stream, model, timeout_ms, context, curve)
        except LookupError as e:
            if not str(e).startswith("ERROR_CODE_NOT_FOUND") or time.monotonic() + 1 > end:
                raise
            time.sleep(1)


def _fetch_snapshot(endpoint, stream, model, timeout_ms, context, curve):
    context = context or zmq.Context.instance()
    socket = context.socket(zmq.REQ)
    socket.setsockopt(zmq.LINGER, 0)
    if curve is not None:
        curve.apply(socket)
    _connect(socket, endpoint)
    try:
        kinds = {"autoencoder": pb.MODEL_KIND_AUTOENCODER, "moco": pb.MODEL_KIND_MOCO}
        if model not in kinds:
            raise ValueError(f"model must be \"autoencoder\" or \"moco\", not {model!r}")
        kind = kinds[model]
        socket.send(pb.SnapshotRequest(stream=stream, kind=kind).SerializeToString())
        if not socket.poll(timeout_ms):
            raise TimeoutError(f"no snapshot reply from {endpoint} within {timeout_ms} ms")
        reply = pb.SnapshotReply.FromString(socket.recv())
    finally:
        socket.close()
    if reply.WhichOneof("result") != "snapshot":
        code = reply.error.code
        name = pb.ErrorCode.Name(code) if code in pb.ErrorCode.values() else f"error code {code}"
        raise LookupError(f"{name}: {reply.error.message}")
    return Snapshot.from_message(reply.snapshot)


@dataclass
class Head:
    """A linear softmax classifier over a MoCo snapshot's representation. `predict` and
    `probabilities` take the model's input rows, `snapshot.inputs(samples)`, as the snapshot's
    forward pass does (a stream with a window or a `transform` does not take its samples as they are)."""
    snapshot: Snapshot
    weights: np.ndarray   # (features, classes)
    bias: np.ndarray      # (classes,)
    mean: np.ndarray      # feature standardisation fitted on the labelled samples
    scale: np.ndarray
    classes: np.ndarray   # the label values, in column order

    def features(self, x):
        return (self.snapshot.representation(x) - self.mean) / self.scale

    def probabilities(self, x):
        z = self.features(x) @ self.weights + self.bias
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, x):
        return self.classes[np.argmax(self.probabilities(x), axis=1)]


def fit_softmax(features, labels, l2=1e-2, steps=500, learning_rate=0.5):
    """A linear softmax classifier on standardised `features`: full-batch gradient descent on the
    L2-regularised cross-entropy. Returns (weights, bias, mean, scale, classes)."""
    labels = np.asarray(labels)
    classes, y = np.unique(labels, return_inverse=True)
    r = np.asarray(features, dtype=np.float64)
    mean, scale = r.mean(axis=0), r.std(axis=0) + 1e-6
    f = (r - mean) / scale
    n, k = f.shape[0], len(classes)
    onehot = np.eye(k)[y]
    w, b = np.zeros((f.shape[1], k)), np.zeros(k)
    for _ in range(steps):
        z = f @ w + b
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        g = (p - onehot) / n
        w -= learning_rate * (f.T @ g + l2 * w)
        b -= learning_rate * g.sum(axis=0)
    return w.astype(np.float32), b.astype(np.float32), mean.astype(np.float32), scale.astype(np.float32), classes


def fit_head(snapshot, rows, labels, l2=1e-2, steps=500, learning_rate=0.5):
    """Fine-tunes on a few labels: a softmax head on the frozen encoder of a MoCo snapshot.

    `rows` are the model's input rows, `snapshot.inputs(samples)` (a stream with a window or a
    `transform` does not take its samples as they are: the raw samples of a stream with
    `transform = log` have the rows' width and would be taken without their transform). Labels are text, as the daemon takes them
    (bytes as UTF-8, anything else as str()), so the classes and their order are the daemon's.
    Full-batch gradient descent on the L2-regularised cross-entropy of standardised
    representations; a few dozen labelled samples are enough when the representation separates
    the classes. Returns a Head with `predict` and `probabilities` (which also take rows).
    """
    _not_one_string(labels, "labels")
    labels = [_label_text(label) for label in labels]
    if snapshot.message.kind != pb.MODEL_KIND_MOCO:
        raise ValueError("fit_head takes a MoCo snapshot (fetch_snapshot(endpoint, stream, \"moco\")): "
                         "its representation is what a head is fitted on")
    features = snapshot.representation(rows)
    if len(features) != len(labels):
        raise ValueError(f"{len(labels)} labels for {len(features)} rows: one label per row")
    if not np.all(np.isfinite(features)):
        raise ValueError("rows with values that are not finite (NaN or infinity): the head would be fitted on NaN")
    w, b, mean, scale, classes = fit_softmax(features, labels, l2, steps, learning_rate)
    return Head(snapshot, w, b, mean, scale, classes)
