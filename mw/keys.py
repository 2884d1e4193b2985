"""The key grammar. Every key the runtime reads, writes or deletes is built by a function in this module.

The origin system wrote task rows under ``global:item:task:by_id:X`` and read them under ``task:by_id:X``
(defect 1). Here write, read and delete of an item all call the same builder, so they cannot disagree.

Grammar::

    global:item:{kind}:{scope}:{id}     typed global item (the sanctioned global write)
    global:item:{id}                    untyped global item (set_global_item)
    organ:{organ_id}:item:{kind}:{id}   an agent's typed item (L0 only)
    organ:{organ_id}:item:{id}          an agent's untyped item (set_item, L0 only)
    mw:neg:{key}                        internal: "known absent" marker of {key}
    mw:lease:{key}                      internal: in-flight load lease of {key}

``kind``, ``scope`` and ``organ_id`` may not contain ``:``; an ``id`` may (it is the last component),
but may not itself start with a reserved prefix, so no key is ever prefixed twice.

The plugin, the linter and the simulator read keys with :func:`parse_key` (the inverse of the
builders) and the constants below; nothing else restates the grammar. An untyped id with two
colons reads as a typed key (``set_global_item("task:by_id:1")`` writes the key of
``set_global_item_typed("task", "by_id", "1", ...)``): :attr:`ParsedKey.key` gives the same text back.

Every part must be text that UTF-8 can carry: a lone surrogate (``"\\ud800"``, what ``surrogateescape``
makes of undecodable bytes) is refused here, before a sequence number is spent or a tier is touched,
not by redis-py halfway through a write. Call sites build keys with these functions and never
re-validate.
"""

from __future__ import annotations

import re
import uuid
from typing import NamedTuple

from mw.errors import KeyGrammarError

GLOBAL_ROOT = "global:"
GLOBAL_PREFIX = GLOBAL_ROOT + "item:"
ORGAN_PREFIX = "organ:"
INTERNAL_PREFIX = "mw:"
NEGATIVE_PREFIX = INTERNAL_PREFIX + "neg:"
LEASE_PREFIX = INTERNAL_PREFIX + "lease:"
RESERVED_PREFIXES = (GLOBAL_PREFIX, GLOBAL_ROOT, ORGAN_PREFIX, INTERNAL_PREFIX)
DOUBLE_PREFIX = GLOBAL_PREFIX + GLOBAL_PREFIX
INV_CHANNEL = INTERNAL_PREFIX + "inv"
"""The bus channel of invalidation messages (under the namespace, as every Redis name)."""
LANDED_CHANNEL = INTERNAL_PREFIX + "landed"
"""The channel a fill announces its key on, for the callers waiting on its lease."""
ORGAN_ITEM = ":item:"

TEMPLATES: dict[str, str] = {
    "global_typed": GLOBAL_PREFIX + "{kind}:{scope}:{id}",
    "global": GLOBAL_PREFIX + "{id}",
    "organ_typed": ORGAN_PREFIX + "{organ_id}" + ORGAN_ITEM + "{kind}:{id}",
    "organ": ORGAN_PREFIX + "{organ_id}" + ORGAN_ITEM + "{id}",
    "negative": NEGATIVE_PREFIX + "{key}",
    "lease": LEASE_PREFIX + "{key}",
}
"""Every key family, as the docs and failure messages show it."""

MAX_COMPONENT_LEN = 256
MAX_KEY_LEN = 1024

MAX_NAMESPACE_LEN = 64

_CONTROL = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")
_CONTROL_OR_COLON = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff:]")
_UNENCODABLE = re.compile(r"[\ud800-\udfff]")
"""The only code points a ``str`` can hold that UTF-8 cannot encode: the surrogates."""
_NAMESPACE_BAD = re.compile(r"[\x00-\x20\x7f\ud800-\udfff]|\s")


def _what(char: str) -> str:
    if char == ":":
        return "':'"
    if _UNENCODABLE.match(char):
        return f"the lone surrogate {char!r}, which UTF-8 cannot encode"
    if char.isspace() and char >= " ":
        return f"whitespace {char!r}"
    return f"control character {char!r}"


def check_component(part: str, value: object, *, colon_ok: bool = False) -> str:
    """Return ``value`` if it is a valid key component, else raise :class:`KeyGrammarError` naming it."""
    if not isinstance(value, str):
        raise KeyGrammarError(part, value, f"must be a str, not {type(value).__name__}")
    if not value:
        raise KeyGrammarError(part, value, "must not be empty")
    if len(value) > MAX_COMPONENT_LEN:
        raise KeyGrammarError(part, value[:40] + "...", f"longer than {MAX_COMPONENT_LEN} characters")
    bad = (_CONTROL if colon_ok else _CONTROL_OR_COLON).search(value)
    if bad:
        raise KeyGrammarError(part, value, f"contains {_what(bad.group())}")
    return value


def check_text(part: str, value: object) -> str:
    """Return ``value`` if it is a ``str`` UTF-8 can encode (what Redis and the databases are sent)."""
    if not isinstance(value, str):
        raise KeyGrammarError(part, value, f"must be a str, not {type(value).__name__}")
    bad = _UNENCODABLE.search(value)
    if bad:
        raise KeyGrammarError(part, value if len(value) <= 80 else value[:40] + "...", f"contains {_what(bad.group())}")
    return value


def check_namespace(value: object) -> str:
    """``MW_NAMESPACE``, the prefix of every Redis key and bus channel: printable, no whitespace, short."""
    if not isinstance(value, str):
        raise KeyGrammarError("namespace", value, f"must be a str, not {type(value).__name__}")
    if len(value) > MAX_NAMESPACE_LEN:
        raise KeyGrammarError("namespace", value[:40] + "...", f"longer than {MAX_NAMESPACE_LEN} characters")
    bad = _NAMESPACE_BAD.search(value)
    if bad:
        raise KeyGrammarError("namespace", value, f"contains {_what(bad.group())}")
    return value


def _check_id(value: object) -> str:
    item_id = check_component("item_id", value, colon_ok=True)
    if item_id.startswith(RESERVED_PREFIXES):
        raise KeyGrammarError("item_id", item_id, "starts with a reserved prefix; pass the bare id")
    return item_id


def _build_global_typed(kind: object, scope: object, item_id: object) -> str:
    return f"{_typed_prefix(kind, scope)}{_check_id(item_id)}"


_PREFIXES: dict[tuple[str, str], str] = {}
_PREFIX_CACHE_MAX = 4096
_KEYS: dict[str, dict[str, str]] = {}
"""Per validated prefix, the keys already built from a checked id: a read of a known id costs two dict lookups
and hands back the same ``str`` (its hash computed once), not a new string checked again."""
_KEYS_PER_PREFIX_MAX = 65536


def global_typed_prefix(kind: str, scope: str) -> str:
    """``global:item:{kind}:{scope}:``, validated: what every key of one kind and scope starts with."""
    return _typed_prefix(kind, scope)


def _typed_prefix(kind: object, scope: object) -> str:
    prefix = f"{GLOBAL_PREFIX}{check_component('kind', kind)}:{check_component('scope', scope)}:"
    if len(_PREFIXES) < _PREFIX_CACHE_MAX:
        _KEYS.setdefault(prefix, {})
        _PREFIXES[(kind, scope)] = prefix  # type: ignore[index]
    return prefix


def global_typed_key(kind: str, scope: str, item_id: str) -> str:
    """``global:item:{kind}:{scope}:{id}``, validated.

    This is on every typed read's hot path, so the common case is checked with C-level string
    methods (a validated ``kind:scope`` prefix is remembered; a printable id needs no regex), a key
    built once is remembered (bounded), and anything unusual goes through the full checks, which
    name the bad part.
    """
    try:
        prefix = _PREFIXES.get((kind, scope))
    except TypeError:  # unhashable kind or scope
        prefix = None
    if prefix is not None and type(item_id) is str:
        built = _KEYS[prefix]
        key = built.get(item_id)
        if key is not None:
            return key
        if (
            0 < len(item_id) <= MAX_COMPONENT_LEN
            and item_id.isprintable()
            and not item_id.startswith(RESERVED_PREFIXES)
        ):
            key = prefix + item_id
            if len(built) < _KEYS_PER_PREFIX_MAX:
                built[item_id] = key
            return key
    return _build_global_typed(kind, scope, item_id)


def organ_typed_key(organ_id: str, kind: str, item_id: str) -> str:
    """``organ:{organ_id}:item:{kind}:{id}``: an agent's private typed item."""
    return (
        f"{ORGAN_PREFIX}{check_component('organ_id', organ_id)}:item:"
        f"{check_component('kind', kind)}:{_check_id(item_id)}"
    )


def organ_key(organ_id: str, item_id: str) -> str:
    """``organ:{organ_id}:item:{id}``: what :meth:`MwManager.set_item` writes."""
    if isinstance(item_id, str) and item_id.startswith(f"{ORGAN_PREFIX}{organ_id}:item:"):
        return check_component("item_id", item_id, colon_ok=True)
    return f"{ORGAN_PREFIX}{check_component('organ_id', organ_id)}:item:{_check_id(item_id)}"


def global_key(item_id: str, *, is_global: bool = False) -> str:
    """The global key of an id: prefixed once, never twice.

    ``is_global=True`` says the caller passes a full global key: it is used as given (and must be one).
    An id that already carries the prefix is not prefixed again either.
    """
    key = check_component("item_id", item_id, colon_ok=True)
    if key.startswith(GLOBAL_PREFIX):
        if key.startswith(DOUBLE_PREFIX):
            raise KeyGrammarError("item_id", key, "is double-prefixed")
        if len(key) == len(GLOBAL_PREFIX):
            raise KeyGrammarError("item_id", key, "has a prefix but no id")
        return key
    if is_global:
        raise KeyGrammarError("item_id", key, f"is_global=True but the key does not start with {GLOBAL_PREFIX!r}")
    if key.startswith(RESERVED_PREFIXES):
        raise KeyGrammarError("item_id", key, "starts with a reserved prefix")
    return GLOBAL_PREFIX + key


def task_id_str(task_id: object) -> str:
    """Task ids come as str, int or UUID from databases; the key always uses their canonical text."""
    if isinstance(task_id, bool) or task_id is None:
        raise KeyGrammarError("task_id", task_id, "must be a str, int or UUID")
    if isinstance(task_id, (int, uuid.UUID)):
        return str(task_id)
    return check_component("task_id", task_id, colon_ok=True)


def task_key(task_id: object) -> str:
    """``global:item:task:by_id:{id}``: the one key of a cached task row, for write, read and delete."""
    return global_typed_key("task", "by_id", task_id_str(task_id))


class ParsedKey(NamedTuple):
    """A key read back into the parts its builder took; :attr:`key` builds the same text again."""

    family: str
    """One of :data:`TEMPLATES`: ``global_typed``, ``global``, ``organ_typed``, ``organ``, ``negative``, ``lease``."""
    item_id: str
    """The id (``negative``/``lease``: the id of the key they mark)."""
    kind: str | None = None
    scope: str | None = None
    organ_id: str | None = None
    target: ParsedKey | None = None
    """What a ``negative`` marker or a ``lease`` is of."""

    @property
    def key(self) -> str:
        if self.target is not None:
            return (NEGATIVE_PREFIX if self.family == "negative" else LEASE_PREFIX) + self.target.key
        if self.family == "global_typed":
            return f"{GLOBAL_PREFIX}{self.kind}:{self.scope}:{self.item_id}"
        if self.family == "global":
            return GLOBAL_PREFIX + self.item_id
        middle = f"{self.kind}:" if self.family == "organ_typed" else ""
        return f"{ORGAN_PREFIX}{self.organ_id}{ORGAN_ITEM}{middle}{self.item_id}"

    @property
    def item(self) -> ParsedKey:
        """The item key itself: ``self`` for an item, the marked key for a marker or lease."""
        return self if self.target is None else self.target.item

    @property
    def internal(self) -> bool:
        """A negative marker or a lease: never an item, never demand for hot items."""
        return self.target is not None

    @property
    def display(self) -> str:
        """How the key shows in telemetry (:func:`display_name`)."""
        return display_name(self.key)


def _colon_free(text: str) -> bool:
    return bool(text) and _CONTROL_OR_COLON.search(text) is None


def _id_ok(text: str) -> bool:
    return bool(text) and _CONTROL.search(text) is None and not text.startswith(RESERVED_PREFIXES)


def parse_key(key: str) -> ParsedKey:
    """The parts of any key the builders make; :class:`KeyGrammarError` for a key they cannot make.

    Typed first: a global key whose remainder has a colon-free ``kind`` and ``scope`` and a valid id
    is ``global_typed`` (as is ``organ_typed`` for an agent's key with a colon-free ``kind``).
    """
    found = try_parse_key(key)
    if found is None:
        shown = key if not isinstance(key, str) or len(key) <= 80 else key[:40] + "..."
        raise KeyGrammarError("key", shown, f"is none of {', '.join(TEMPLATES.values())}")
    return found


def try_parse_key(key: str) -> ParsedKey | None:
    """:func:`parse_key`, or ``None`` for a key outside the grammar."""
    if not isinstance(key, str):
        return None
    for prefix, family in ((NEGATIVE_PREFIX, "negative"), (LEASE_PREFIX, "lease")):
        if key.startswith(prefix):
            target = try_parse_key(key[len(prefix) :])
            if target is None or target.internal:
                return None
            return ParsedKey(family, target.item_id, target.kind, target.scope, target.organ_id, target)
    if key.startswith(GLOBAL_PREFIX):
        rest = key[len(GLOBAL_PREFIX) :]
        if not rest or rest.startswith(GLOBAL_PREFIX) or _CONTROL.search(rest):
            return None
        parts = rest.split(":", 2)
        if len(parts) == 3 and _colon_free(parts[0]) and _colon_free(parts[1]) and _id_ok(parts[2]):
            return ParsedKey("global_typed", parts[2], parts[0], parts[1])
        return ParsedKey("global", rest)
    if key.startswith(ORGAN_PREFIX):
        organ_id, sep, rest = key[len(ORGAN_PREFIX) :].partition(ORGAN_ITEM)
        if not sep or not _colon_free(organ_id) or not rest or _CONTROL.search(rest):
            return None
        kind, colon, item_id = rest.partition(":")
        if colon and _colon_free(kind) and _id_ok(item_id):
            return ParsedKey("organ_typed", item_id, kind, organ_id=organ_id)
        return ParsedKey("organ", rest, organ_id=organ_id)
    return None


def parse_typed(key: str) -> tuple[str, str, str] | None:
    """``(kind, scope, id)`` of a typed global key, else ``None``."""
    found = try_parse_key(key)
    if found is None or found.family != "global_typed":
        return None
    return (str(found.kind), str(found.scope), found.item_id)


def negative_key(key: str) -> str:
    return NEGATIVE_PREFIX + key


def lease_key(key: str) -> str:
    return LEASE_PREFIX + key


def is_internal(key: str) -> bool:
    """Internal probes (negative markers, leases) never count as demand for hot items."""
    return key.startswith(INTERNAL_PREFIX)


def display_name(key: str) -> str:
    """How a key shows in telemetry: ``task:by_id:123`` for ``global:item:task:by_id:123``."""
    return key[len(GLOBAL_PREFIX) :] if key.startswith(GLOBAL_PREFIX) else key


def check_full_key(key: str) -> str:
    """Validate a key handed in whole (e.g. to ``try_set_inflight``): text UTF-8 can encode, bounded."""
    if isinstance(key, str) and len(key) > MAX_KEY_LEN:
        raise KeyGrammarError("key", key[:40] + "...", f"longer than {MAX_KEY_LEN} characters")
    return check_text("key", key)
