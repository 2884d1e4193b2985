"""The byte format of every value in L1, L2 and Mlt: a small versioned envelope around JSON (or msgpack).

Never pickle: whoever can write to a pickled cache can run code in every reader (defect 11). The
envelope is::

    b"MW" | version (1 byte) | flags (1 byte) | expire_at (float64, NaN = never) | delta (float32) | payload

``expire_at`` is absolute epoch seconds and travels with the value, so a copy in L0 or L1 can never
outlive the item it copies, and a reader can tell an expired copy from the header alone. ``delta`` is
how long the value took to load (0 = unknown): early refresh (XFetch) needs it wherever the value is
read, so it travels too.

The payload is a JSON-model tree. Values JSON cannot carry (datetime, with its zone name when it has
one, date, time, timedelta, UUID, Decimal, bytes, tuple, dicts with non-str keys) are tagged as one-key
objects such as ``{"$uuid": "..."}``; a user dict that merely looks like a tag is escaped, so every
supported value round-trips exactly. The payload is zlib-compressed over a threshold. Anything else
raises :class:`CodecError` naming the type, and so does a value nested deeper than :data:`MAX_DEPTH`
(or containing itself) or holding a string UTF-8 cannot encode (a lone surrogate): bad input never
escapes as ``RecursionError`` or ``UnicodeEncodeError``. Decoding raises only :class:`CodecError`.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import struct
import uuid
import zlib
import zoneinfo
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from mw.errors import CodecError, ValueTooLargeError

MAGIC = b"MW"
VERSION = 1
_HEADER = struct.Struct(">2sBBdf")
HEADER_SIZE = _HEADER.size

FLAG_COMPRESSED = 0x01
FORMAT_JSON = 0x00
FORMAT_MSGPACK = 0x02
_FORMAT_MASK = 0x06

_SCALARS = (str, int, float, bool, type(None))


MAX_DEPTH = 100
"""How deeply containers may nest in a cached value (a dict in a list is depth 2). Deeper values, and
values that contain themselves, raise :class:`CodecError` instead of exhausting the interpreter's stack
(``RecursionError``) on encode; on decode, an entry nested deeper is corrupt (a counted miss)."""


def too_deep(value: Any) -> CodecError:
    """The error for a container at depth :data:`MAX_DEPTH` (encode here, L0's private copies)."""
    # Never repr the value: what is left below this level may itself be too deep to repr.
    return CodecError(
        f"cannot cache a value nested deeper than MAX_DEPTH={MAX_DEPTH} (or one that contains itself): "
        f"a {type(value).__name__} at depth {MAX_DEPTH}"
    )


def to_plain(value: Any, depth: int = 0) -> Any:
    """Turn a value into a JSON-model tree with tagged special types (containers at most :data:`MAX_DEPTH` deep)."""
    t = type(value)
    if t in _SCALARS:
        return value
    if t is dict:
        if depth >= MAX_DEPTH:
            raise too_deep(value)
        depth += 1
        if all(type(k) is str for k in value):
            out = {k: to_plain(v, depth) for k, v in value.items()}
            if len(out) == 1 and next(iter(out)).startswith("$"):
                # A pair, not a dict: json's object_hook decodes inner dicts first and would see the tag.
                return {"$esc": next(iter(out.items()))}
            return out
        return {"$map": [[to_plain(k, depth), to_plain(v, depth)] for k, v in value.items()]}
    if t is list:
        if depth >= MAX_DEPTH:
            raise too_deep(value)
        return [to_plain(v, depth + 1) for v in value]
    if t is tuple:
        if depth >= MAX_DEPTH:
            raise too_deep(value)
        return {"$tuple": [to_plain(v, depth + 1) for v in value]}
    if t is dt.datetime:
        if isinstance(value.tzinfo, zoneinfo.ZoneInfo):
            # A named zone survives as a name (an offset alone loses DST rules and gap/fold identity).
            return {"$dtz": [value.replace(tzinfo=None).isoformat(), value.tzinfo.key, value.fold]}
        return {"$dt": value.isoformat()}
    if t is dt.date:
        return {"$date": value.isoformat()}
    if t is dt.time:
        return {"$time": value.isoformat()}
    if t is dt.timedelta:
        return {"$td": [value.days, value.seconds, value.microseconds]}
    if t is uuid.UUID:
        return {"$uuid": str(value)}
    if t is Decimal:
        return {"$dec": str(value)}
    if t is bytes:
        return {"$b64": base64.b64encode(value).decode("ascii")}
    # Subclasses (IntEnum, str-enums, OrderedDict...) are stored as their base type's value.
    for base, conv in ((bool, bool), (int, int), (float, float), (str, str)):
        if isinstance(value, base):
            return conv(value)
    if isinstance(value, dict):
        return to_plain(dict(value), depth)
    if isinstance(value, (list, tuple)):
        return to_plain(list(value), depth)
    raise CodecError(f"cannot encode a value of type {t.__module__}.{t.__qualname__}: {value!r:.80}")


_DECODERS: dict[str, Callable[[Any], Any]] = {
    "$esc": lambda v: {v[0]: v[1]},
    "$map": lambda v: {_hashable(k): x for k, x in v},
    "$tuple": tuple,
    "$dt": dt.datetime.fromisoformat,
    "$dtz": lambda v: dt.datetime.fromisoformat(v[0]).replace(tzinfo=zoneinfo.ZoneInfo(v[1]), fold=v[2]),
    "$date": dt.date.fromisoformat,
    "$time": dt.time.fromisoformat,
    "$td": lambda v: dt.timedelta(days=v[0], seconds=v[1], microseconds=v[2]),
    "$uuid": uuid.UUID,
    "$dec": Decimal,
    "$b64": lambda v: base64.b64decode(v.encode("ascii"), validate=True),
}


def _hashable(k: Any) -> Any:
    return tuple(_hashable(x) for x in k) if isinstance(k, list) else k


def _object_hook(obj: dict[str, Any]) -> Any:
    if len(obj) == 1:
        ((tag, payload),) = obj.items()
        decoder = _DECODERS.get(tag)
        if decoder is not None:
            return decoder(payload)
    return obj


_DECODER = json.JSONDecoder(object_hook=_object_hook)
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
"""Made once: ``json.loads``/``json.dumps`` with options build a new coder on every call."""


def from_plain(tree: Any) -> Any:
    """Inverse of :func:`to_plain` for trees that did not come through ``json.loads`` (msgpack)."""
    t = type(tree)
    if t is dict:
        return _object_hook({k: from_plain(v) for k, v in tree.items()})
    if t is list:
        return [from_plain(v) for v in tree]
    return tree


def dumps_json(value: Any) -> str:
    """Tagged JSON text; what Mlt stores in its value columns (always text UTF-8 can encode)."""
    tree = to_plain(value)
    try:
        text = _ENCODER.encode(tree)
        text.encode("utf-8")  # a lone surrogate would fail later, in the database driver
    except (TypeError, ValueError, OverflowError) as exc:
        raise CodecError(f"cannot encode value: {exc}") from exc
    return text


def loads_json(text: str | bytes) -> Any:
    try:
        return _DECODER.decode(text if isinstance(text, str) else text.decode("utf-8"))
    except RecursionError:
        raise CodecError("not a valid tagged JSON value: nested too deep to decode") from None
    except Exception as exc:  # ValueError, KeyError, decimal.InvalidOperation...: all mean "corrupt".
        raise CodecError(f"not a valid tagged JSON value: {type(exc).__name__}: {exc}") from exc


class Codec:
    """Encodes values into envelopes and back. One per cluster; stateless after construction."""

    __slots__ = ("_msgpack", "compress_min_bytes", "fmt", "max_value_bytes")

    def __init__(self, fmt: str = "json", compress_min_bytes: int = 1024, max_value_bytes: int = 1 << 20) -> None:
        if fmt not in ("json", "msgpack"):
            raise CodecError(f"unknown codec format {fmt!r}: expected json or msgpack")
        self.fmt = fmt
        self.compress_min_bytes = compress_min_bytes
        self.max_value_bytes = max_value_bytes
        self._msgpack: Any = None
        if fmt == "msgpack":
            try:
                import msgpack
            except ImportError as exc:
                raise CodecError(
                    "MW_CODEC=msgpack needs the msgpack package: pip install 'pytest-mw[msgpack]'"
                ) from exc
            self._msgpack = msgpack

    def encode(self, value: Any, expire_at: float | None, key: str = "?", delta: float = 0.0) -> bytes:
        return self.encode_sized(value, expire_at, key, delta)[0]

    def encode_sized(
        self, value: Any, expire_at: float | None, key: str = "?", delta: float = 0.0
    ) -> tuple[bytes, int]:
        """The envelope and the size of its uncompressed payload (what an in-process copy roughly costs)."""
        tree = to_plain(value)
        flags = FORMAT_JSON
        try:
            if self._msgpack is not None:
                flags = FORMAT_MSGPACK
                payload = self._msgpack.packb(tree, use_bin_type=True)
            else:
                payload = _ENCODER.encode(tree).encode("utf-8")
        except (TypeError, ValueError, OverflowError) as exc:
            raise CodecError(f"cannot encode value for {key!r}: {exc}") from exc
        raw_size = len(payload)
        if len(payload) >= self.compress_min_bytes:
            packed = zlib.compress(payload, 1)
            if len(packed) < len(payload):
                payload, flags = packed, flags | FLAG_COMPRESSED
        size = HEADER_SIZE + len(payload)
        if size > self.max_value_bytes:
            raise ValueTooLargeError(key, size, self.max_value_bytes)
        exp = math.nan if expire_at is None else float(expire_at)
        header: bytes = _HEADER.pack(MAGIC, VERSION, flags, exp, delta)
        return header + bytes(payload), raw_size

    def decode(self, data: bytes) -> tuple[Any, float | None]:
        """Return ``(value, expire_at)``; raise :class:`CodecError` for anything that is not our envelope."""
        value, expire_at, _ = self.decode_full(data)
        return value, expire_at

    def decode_full(self, data: bytes) -> tuple[Any, float | None, float]:
        """Return ``(value, expire_at, delta)``."""
        value, expire_at, delta, _ = self.decode_sized(data)
        return value, expire_at, delta

    def decode_sized(self, data: bytes) -> tuple[Any, float | None, float, int]:
        """Return ``(value, expire_at, delta, size of the uncompressed payload)``."""
        expire_at, flags, delta = _read_header(data)
        payload = memoryview(data)[HEADER_SIZE:]
        try:
            raw = zlib.decompress(payload) if flags & FLAG_COMPRESSED else bytes(payload)
            fmt = flags & _FORMAT_MASK
            if fmt == FORMAT_JSON:
                value = _DECODER.decode(raw.decode("utf-8"))
            elif fmt == FORMAT_MSGPACK:
                packer: Any = self._msgpack
                if packer is None:
                    import msgpack

                    packer = msgpack
                value = from_plain(packer.unpackb(raw, raw=False, strict_map_key=False))
            else:
                raise CodecError(f"unknown payload format flag {fmt:#x}")
        except CodecError:
            raise
        except RecursionError:
            raise CodecError("corrupt envelope payload: nested too deep to decode") from None
        except Exception as exc:  # zlib.error, ValueError, msgpack errors: all mean "corrupt".
            raise CodecError(f"corrupt envelope payload: {type(exc).__name__}: {exc}") from exc
        return value, expire_at, delta, len(raw)


def _read_header(data: bytes) -> tuple[float | None, int, float]:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CodecError(f"expected bytes, got {type(data).__name__}")
    if len(data) < HEADER_SIZE:
        raise CodecError(f"envelope too short ({len(data)} bytes)")
    magic, version, flags, exp, delta = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise CodecError(f"not an Mw envelope (starts with {bytes(data[:8])!r})")
    if version != VERSION:
        raise CodecError(f"unsupported envelope version {version}")
    if math.isnan(delta) or delta < 0:
        raise CodecError(f"bad load-time field {delta!r}")
    return (None if math.isnan(exp) else exp), flags, delta


def peek_expire_at(data: bytes) -> float | None:
    """The envelope's expiry without decoding its payload."""
    return _read_header(data)[0]
