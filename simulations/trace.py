"""Cache traces on disk: libCacheSim's oracleGeneral binary records and ``time,key[,size]`` CSV, read as a stream.

A trace is a sequence of :class:`Request` in time order. The readers yield one request at a time (a 1 GB trace is
never held in memory) and stop at the first bad record with a :class:`TraceError` naming the file, the record or line,
and the bad value: a replay must not run on a trace it misread.

oracleGeneral (libCacheSim ``oracleGeneralBin.h``): packed little-endian records of ``uint32 clock_time`` (seconds),
``uint64 obj_id``, ``uint32 obj_size`` (bytes), ``int64 next_access_vtime`` (index of the next request to the same
object, -1 if none): 24 bytes each, no header. The object id becomes the key in decimal.

CSV: ``time,key`` or ``time,key,size`` per line, optionally under a header line (a first line whose time is not a
number). ``time`` is in seconds (any finite float), ``size`` in bytes; every row has as many fields as the first.
"""

from __future__ import annotations

import csv
import math
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

from mw.errors import KeyGrammarError
from mw.keys import global_typed_key

FORMATS = ("oracle-general", "csv")

ORACLE_GENERAL = struct.Struct("<IQIq")
"""One oracleGeneral record: clock_time, obj_id, obj_size, next_access_vtime (24 bytes)."""

_CHUNK_RECORDS = 8192


class Request(NamedTuple):
    time: float
    key: str
    size: int | None
    """Bytes of the object, ``None`` when the trace does not say (a two-column CSV)."""


class TraceError(ValueError):
    """A trace that cannot be replayed as written; the message names the file, the record or line and the value."""

    def __init__(self, path: Path | str, where: str, problem: str) -> None:
        self.path = str(path)
        self.where = where
        self.problem = problem
        super().__init__(f"trace {self.path}: {where}: {problem}" if where else f"trace {self.path}: {problem}")


def guess_format(path: Path, given: str | None = None) -> str:
    """``given``, else the format the file name says (``*.csv``; ``*.bin`` or a name with ``oracleGeneral``)."""
    if given is not None:
        return given
    name = path.name.lower()
    if name.endswith((".zst", ".gz", ".xz", ".bz2")):
        raise TraceError(path, "", "compressed: decompress it first (e.g. zstd -d), the reader takes raw records")
    if name.endswith(".csv"):
        return "csv"
    if name.endswith(".bin") or "oraclegeneral" in name:
        return "oracle-general"
    raise TraceError(path, "", f"cannot tell the format from the name: give --format ({' or '.join(FORMATS)})")


def read_trace(path: Path, fmt: str) -> Iterator[Request]:
    """The requests of the trace at ``path`` in format ``fmt`` (one of :data:`FORMATS`), checked to be in time order."""
    if fmt == "oracle-general":
        return read_oracle_general(path)
    if fmt == "csv":
        return read_csv(path)
    raise TraceError(path, "", f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")


def read_oracle_general(path: Path) -> Iterator[Request]:
    size = ORACLE_GENERAL.size
    try:
        stream = path.open("rb")
    except OSError as exc:
        raise TraceError(path, "", f"cannot open: {exc.strerror or exc}") from exc
    with stream:
        index = 0
        last = -math.inf
        while True:
            chunk = stream.read(size * _CHUNK_RECORDS)
            if not chunk:
                return
            whole = len(chunk) - len(chunk) % size
            for clock_time, obj_id, obj_size, _next in ORACLE_GENERAL.iter_unpack(chunk[:whole]):
                if clock_time < last:
                    raise TraceError(path, f"record {index}", _backwards(clock_time, last))
                last = clock_time
                yield Request(float(clock_time), str(obj_id), obj_size)
                index += 1
            if whole < len(chunk):
                # A short read only happens at the end of the file: the rest of a record is missing.
                raise TraceError(
                    path,
                    f"record {index}",
                    f"truncated: {len(chunk) - whole} of {size} bytes at offset {index * size} (file ends there)",
                )


def read_csv(path: Path) -> Iterator[Request]:
    try:
        stream = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise TraceError(path, "", f"cannot open: {exc.strerror or exc}") from exc
    with stream:
        rows = csv.reader(stream)
        fields: int | None = None
        last = -math.inf
        line = 0
        try:
            for row in rows:
                line = rows.line_num
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if fields is None and line == 1 and not _is_number(row[0]):
                    continue  # a header
                if fields is None:
                    if len(row) not in (2, 3):
                        problem = f"{len(row)} fields in {_show(row)}: want time,key[,size]"
                        raise TraceError(path, f"line {line}", problem)
                    fields = len(row)
                request = _csv_request(path, line, row, fields)
                if request.time < last:
                    raise TraceError(path, f"line {line}", _backwards(request.time, last))
                last = request.time
                yield request
        except UnicodeDecodeError as exc:
            raise TraceError(path, f"after line {line}", f"not UTF-8 text ({exc.reason})") from exc
        except csv.Error as exc:
            raise TraceError(path, f"line {rows.line_num}", f"not CSV: {exc}") from exc


def _csv_request(path: Path, line: int, row: list[str], fields: int) -> Request:
    where = f"line {line}"
    if len(row) != fields:
        raise TraceError(path, where, f"{len(row)} fields in {_show(row)}, the first row has {fields}")
    text = row[0].strip()
    try:
        time = float(text)
    except ValueError:
        raise TraceError(path, where, f"time {text!r} is not a number") from None
    if not math.isfinite(time):
        raise TraceError(path, where, f"time {text!r} is not finite")
    key = row[1].strip()
    try:
        global_typed_key("trace", "key", key)
    except KeyGrammarError as exc:
        raise TraceError(path, where, f"key {key!r} cannot be an item id: {exc.reason}") from None
    size: int | None = None
    if fields == 3:
        raw = row[2].strip()
        if not raw.isdigit():
            raise TraceError(path, where, f"size {raw!r} is not a whole number of bytes")
        size = int(raw)
    return Request(time, key, size)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _show(row: list[str]) -> str:
    text = ",".join(row)
    return repr(text if len(text) <= 80 else text[:77] + "...")


def _backwards(time: float, last: float) -> str:
    return f"time {time:g} is before the previous request's {last:g}: a trace must be in time order"


# --- writers (tests, and converting a trace for the replay) ---------------------------------------------------------
def write_oracle_general(path: Path, requests: Iterable[Request]) -> int:
    """Write ``requests`` as oracleGeneral records (integer keys, whole seconds; size ``None`` is written as 1).

    Holds the requests in memory: ``next_access_vtime`` needs the future. Returns the number of records.
    """
    reqs = list(requests)
    following = [-1] * len(reqs)
    seen: dict[int, int] = {}
    for i in range(len(reqs) - 1, -1, -1):
        obj = int(reqs[i].key)
        following[i] = seen.get(obj, -1)
        seen[obj] = i
    with path.open("wb") as out:
        for r, nxt in zip(reqs, following, strict=True):
            out.write(ORACLE_GENERAL.pack(int(r.time), int(r.key), 1 if r.size is None else r.size, nxt))
    return len(reqs)


def write_csv(path: Path, requests: Iterable[Request], *, header: bool = True) -> int:
    """Write ``requests`` as ``time,key[,size]`` CSV (the size column when the first request has a size)."""
    n = 0
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        sized: bool | None = None
        for r in requests:
            if sized is None:
                sized = r.size is not None
                if header:
                    writer.writerow(["time", "key", "size"] if sized else ["time", "key"])
            writer.writerow([repr(r.time), r.key, r.size] if sized else [repr(r.time), r.key])
            n += 1
    return n
