"""The envelope codec: exact round trips for what databases hand us, never pickle, corrupt input named."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import pickle
import uuid
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mw.codec import HEADER_SIZE, Codec, dumps_json, loads_json, peek_expire_at
from mw.errors import CodecError, ValueTooLargeError

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=30)
    | st.binary(max_size=30)
    | st.datetimes(timezones=st.none() | st.timezones())
    | st.dates()
    | st.times()
    | st.timedeltas()
    | st.uuids()
    | st.decimals(allow_nan=False)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=10), inner, max_size=5)
        | st.dictionaries(st.integers(min_value=-(2**63), max_value=2**63 - 1), inner, max_size=3)
    ),
    max_leaves=20,
)


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
@given(value=values, expire_at=st.none() | st.floats(min_value=0, max_value=4e9))
def test_roundtrip_is_exact(fmt: str, value: Any, expire_at: float | None) -> None:
    codec = Codec(fmt, compress_min_bytes=64)
    data = codec.encode(value, expire_at)
    back, exp = codec.decode(data)
    assert back == value and type(back) is type(value)
    assert exp == expire_at and peek_expire_at(data) == expire_at
    assert codec.decode_full(codec.encode(value, expire_at, delta=0.25))[2] == 0.25


@given(st.dictionaries(st.sampled_from(["$dt", "$uuid", "$esc", "$tuple", "$x"]), st.text(max_size=5), max_size=2))
def test_user_dicts_that_look_like_tags_survive(value: dict[str, str]) -> None:
    assert loads_json(dumps_json(value)) == value


def test_database_row_types_roundtrip() -> None:
    row = {
        "id": uuid.uuid4(),
        "status": "running",
        "lease_expires_at": dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
        "cost": Decimal("12.3400"),
        "run_after": None,
        "attempts": 3,
        "tags": ("a", "b"),
    }
    codec = Codec()
    assert codec.decode(codec.encode(row, None))[0] == row


def test_compression_over_threshold_and_payload_never_pickle() -> None:
    codec = Codec(compress_min_bytes=100)
    big = {"text": "x" * 5000}
    data = codec.encode(big, 1.0)
    assert len(data) < 500, "a compressible payload is compressed"
    assert codec.decode(data)[0] == big
    small = codec.encode({"a": 1}, None)
    assert json.loads(small[HEADER_SIZE:]) == {"a": 1}


def test_max_value_size_is_a_clear_error() -> None:
    codec = Codec(max_value_bytes=100, compress_min_bytes=10**9)
    with pytest.raises(ValueTooLargeError) as info:
        codec.encode("y" * 200, None, key="global:item:doc:s:1")
    assert info.value.key == "global:item:doc:s:1" and info.value.size > 100 and info.value.limit == 100


@pytest.mark.parametrize("value", [{1, 2}, object(), lambda: 1, {"k": frozenset()}])
def test_unsupported_types_are_named(value: Any) -> None:
    with pytest.raises(CodecError, match="cannot encode"):
        Codec().encode(value, None)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"MW",
        pickle.dumps({"a": 1}),
        b"MW\x09\x00" + b"\x00" * 12 + b"{}",
        Codec().encode({"a": 1}, None)[:-2],
        Codec(compress_min_bytes=1).encode("z" * 100, None)[:-3],
        b"MW\x01\x06" + b"\x00" * 12 + b"{}",
        "a str",
    ],
)
def test_corrupt_or_foreign_bytes_raise_codec_error(data: Any) -> None:
    with pytest.raises(CodecError):
        Codec().decode(data)


@given(st.binary(max_size=64))
def test_random_bytes_never_raise_anything_but_codec_error(data: bytes) -> None:
    with contextlib.suppress(CodecError):
        Codec().decode(data)


def test_msgpack_refuses_ints_it_cannot_carry_with_codec_error() -> None:
    with pytest.raises(CodecError, match="cannot encode"):
        Codec("msgpack").encode(2**70, None)
    assert Codec("json").decode(Codec("json").encode(2**70, None))[0] == 2**70


@pytest.mark.parametrize("fold", [0, 1])
def test_named_zone_survives_even_in_a_dst_gap(fold: int) -> None:
    import zoneinfo

    value = dt.datetime(2000, 3, 26, 2, 0, tzinfo=zoneinfo.ZoneInfo("Poland"), fold=fold)
    back = Codec().decode(Codec().encode(value, None))[0]
    assert back == value and back.tzinfo == value.tzinfo and back.fold == fold
