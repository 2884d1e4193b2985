"""``mw.secrets.mask_secrets``: the one masking function. A planted password never survives it, raw or
percent-encoded, and what is not a secret (users, hosts, other parameters) is kept so messages stay useful."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mw import MwConfig
from mw.errors import ConfigError
from mw.secrets import mask_secrets, masked


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("redis://user:secret@host:6379/0", "redis://user:***@host:6379/0"),
        ("redis://:secret@host", "redis://:***@host"),
        ("rediss://u:p%40ss%3Aw%2Frd%23%25@host/1", "rediss://u:***@host/1"),  # p@ss:w/rd#% percent-encoded
        ("postgresql://u:p@ss@host/db", "postgresql://u:***@host/db"),  # an unencoded @ leaks nothing after it
        ("postgresql://u@host/db", "postgresql://u@host/db"),
        ("redis://host:6379", "redis://host:6379"),
        ("host=h user=u password=s3cret dbname=d", "host=h user=u password=*** dbname=d"),
        ("host=h password='two words'", "host=h password=***"),
        ("host=h password='it\\'s' dbname=d", "host=h password=*** dbname=d"),
        ("host=h sslpassword=k3y sslmode=verify-full", "host=h sslpassword=*** sslmode=verify-full"),
        ("postgresql://h/db?user=u&password=s3cret&sslmode=x", "postgresql://h/db?user=u&password=***&sslmode=x"),
        ("https://h/x?access_token=abc&b=1", "https://h/x?access_token=***&b=1"),
        ("L2 redis://u:pw@h:1 is down; retry redis://v:qq@g", "L2 redis://u:***@h:1 is down; retry redis://v:***@g"),
        ("passwordless=yes keys=1", "passwordless=yes keys=1"),
        ("redis://user@corp.com:hunter2@host:6379", "redis://user@corp.com:***@host:6379"),  # an @ in the user
        (
            "PGPASSWORD=hunter2 MW_REDIS_PASSWORD=hunter3 client_secret=zz",
            "PGPASSWORD=*** MW_REDIS_PASSWORD=*** client_secret=***",
        ),
        ("host=h password=ab;cd dbname=d", "host=h password=*** dbname=d"),
        ("host=h password=ab'cd dbname=d", "host=h password=*** dbname=d"),
        ("host=h password=ab\\ cd dbname=d", "host=h password=*** dbname=d"),
        ("{'password': 'hunter2', 'user': 'u'}", "{'password': '***', 'user': 'u'}"),
        ('{"api_key": "k3y", "n": 1}', '{"api_key": \'***\', "n": 1}'),
    ],
)
def test_examples(text: str, expected: str) -> None:
    assert mask_secrets(text) == expected


_SAFE = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=12)
# Any printable character a password may hold, URL-reserved ones included; no whitespace (a URL has none unencoded).
_PASSWORD = st.text(
    st.characters(min_codepoint=33, max_codepoint=0x2FF, blacklist_characters="'\"\\"), min_size=1, max_size=24
)


@given(scheme=st.sampled_from(["redis", "rediss", "postgresql", "postgres"]), user=_SAFE, host=_SAFE, pw=_PASSWORD)
def test_url_password_never_survives(scheme: str, user: str, host: str, pw: str) -> None:
    for shown in (pw, quote(pw, safe="")):
        text = f"cannot reach {scheme}://{user}:{shown}@{host}:6379/0 (refused)"
        assert mask_secrets(text) == f"cannot reach {scheme}://{user}:***@{host}:6379/0 (refused)"


@given(pw=st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), min_size=1, max_size=24))
def test_quoted_dsn_password_never_survives(pw: str) -> None:
    quoted = "'" + pw.replace("\\", "\\\\").replace("'", "\\'") + "'"
    assert mask_secrets(f"host=h password={quoted} dbname=d") == "host=h password=*** dbname=d"


def test_masked_walks_containers() -> None:
    value = {"redis://u:pw@h": ["postgresql://a:b@c/d", ("x", 1)], "n": None}
    assert masked(value) == {"redis://u:***@h": ["postgresql://a:***@c/d", ("x", 1)], "n": None}


def test_config_repr_and_errors_hide_passwords() -> None:
    config = MwConfig(redis_url="redis://u:p%40w0rd@h:1/0", mlt_dsn="postgresql://a:s3cr3t@c/d")
    shown = repr(config) + str(config)
    assert "p%40w0rd" not in shown and "s3cr3t" not in shown
    assert "redis://u:***@h:1/0" in shown and "postgresql://a:***@c/d" in shown
    with pytest.raises(ConfigError) as caught:
        MwConfig.from_env({"MW_REDIS_URL": "http://u:s3cr3t@h"})
    assert "s3cr3t" not in str(caught.value) and "s3cr3t" not in repr(caught.value.args)
    assert caught.value.value == "http://u:***@h"
