"""The one masking function: every URL, DSN or message that the runtime, the plugin or the simulator prints or stores
passes through :func:`mask_secrets` first, so a password in ``MW_REDIS_URL`` or ``MW_MLT_DSN`` never reaches a log
line, an exception, a report or a metrics label.

Masked, with the value replaced by :data:`MASK`:

* a URL's password: ``redis://user:secret@host`` -> ``redis://user:***@host``. The user info runs to the last
  ``@`` before whitespace, so an unencoded ``@`` (in the user name too) or ``:``, ``/``, ``#`` in the password leaks
  nothing, and a percent-encoded one is masked whole;
* key=value secrets in libpq DSNs, query strings and environment lines (any name ending in ``password``, ``passwd``,
  ``pwd``, ``token``, ``secret`` or ``api_key``: ``sslpassword``, ``PGPASSWORD``, ``client_secret``...), quoted
  values included (``password='two words'``), and quoted ``'password': '...'`` pairs (JSON, a dict's repr).

A user name stays visible: it names who connected, which a failure message needs.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["MASK", "mask_secrets", "masked"]

MASK = "***"

# A URL's user info runs to the last ``@`` before (ASCII) whitespace: an unencoded ``@`` in the user name or the
# password, or ``/``, ``#``, ``:`` in the password, leaks nothing. Everything after its first ``:`` is the password.
_URL_USERINFO = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^\s]*)@", re.ASCII)
# key=value (libpq, query strings, env lines: PGPASSWORD=..., MW_REDIS_PASSWORD=...) and quoted key: value (JSON, a
# dict's repr). An unquoted value runs to whitespace or ``&`` (libpq allows ``;``, ``,`` and ``'`` in one; ``\ `` is
# an escaped space).
_SECRET_NAMES = r"[A-Za-z0-9_]*(?:password|passwd|pwd|token|secret|api[_-]?key)"
_QUOTED = r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\""
_PARAM_SECRET = re.compile(
    rf"(?P<head>(?<![A-Za-z0-9_])(?:{_SECRET_NAMES})\s*=\s*)(?:{_QUOTED}|(?:\\.|[^\s&\\])+)"
    rf"|(?P<qhead>['\"](?:{_SECRET_NAMES})['\"]\s*:\s*)(?:{_QUOTED})",
    re.IGNORECASE | re.ASCII,
)


def _userinfo(match: re.Match[str]) -> str:
    user, colon, _ = match["userinfo"].partition(":")
    return f"{match['head']}{user}:{MASK}@" if colon else match.group(0)


def _param(match: re.Match[str]) -> str:
    if match["head"] is not None:
        return f"{match['head']}{MASK}"
    return f"{match['qhead']}'{MASK}'"


def mask_secrets(text: str) -> str:
    """``text`` with every password or token in a URL, DSN or message replaced by ``***``."""
    return _PARAM_SECRET.sub(_param, _URL_USERINFO.sub(_userinfo, text))


def masked(value: Any) -> Any:
    """``value`` with every string in it (mapping keys too; lists and tuples walked) passed through
    :func:`mask_secrets`."""
    if isinstance(value, str):
        return mask_secrets(value)
    if isinstance(value, dict):
        return {masked(k): masked(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(masked(v) for v in value)
    return value
