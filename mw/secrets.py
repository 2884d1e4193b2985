"""The one masking function: every URL, DSN or message that the runtime, the plugin or the simulator prints or stores
passes through :func:`mask_secrets` first, so a password in ``MW_REDIS_URL`` or ``MW_MLT_DSN`` never reaches a log
line, an exception, a report or a metrics label.

Masked, with the value replaced by :data:`MASK`:

* a URL's password: ``redis://user:secret@host`` -> ``redis://user:***@host``. The password runs to the last ``@``
  before whitespace, so an unencoded ``@`` (or ``:``, ``/``, ``#``) in it leaks nothing after it, and a
  percent-encoded one is masked whole;
* key=value secrets in libpq DSNs and query strings (``password``, ``sslpassword``, ``passwd``, ``token``,
  ``secret``, ``api_key``, ``access_token``...), quoted values included: ``password='two words'``.

A user name stays visible: it names who connected, which a failure message needs.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["MASK", "mask_secrets", "masked"]

MASK = "***"

_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*):[^\s]*@")
_SECRET_NAMES = r"(?:ssl)?password|passwd|pwd|(?:access_|auth_|refresh_)?token|secret|api[_-]?key"
_PARAM_SECRET = re.compile(
    rf"(?P<head>(?<![A-Za-z0-9_])(?:{_SECRET_NAMES})\s*=\s*)(?:'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^\s&;,']+)",
    re.IGNORECASE,
)


def mask_secrets(text: str) -> str:
    """``text`` with every password or token in a URL, DSN or message replaced by ``***``."""
    masked_text = _URL_PASSWORD.sub(rf"\g<head>:{MASK}@", text)
    return _PARAM_SECRET.sub(rf"\g<head>{MASK}", masked_text)


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
