"""Building blocks for malformed platform payloads: nasty text, arbitrary JSON, and fields that
are usually right but sometimes missing or of the wrong type."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

# A field left out of the payload altogether.
MISSING: Any = object()

_surrogates = st.characters(categories=["Cs"])  # lone halves of UTF-16 pairs, legal in JSON
_controls = st.sampled_from(["\x00", "\x1b", "\u200b", "\u202e", "\ufeff", "\r\n", "\t"])
_markup = st.sampled_from(
    ["<b>", "</i>", "&amp;", "*", "_", "`", "```", "<@U0BOT>", "<!here>", "<#C1|x>", "<http://a>"]
)

# Short text, weighted toward what breaks parsers: markup, controls, lone surrogates, emoji.
short_text = st.one_of(
    st.text(max_size=40),
    st.lists(
        st.one_of(st.characters(), _surrogates, _controls, _markup, st.just("😀")), max_size=20
    ).map("".join),
)


@st.composite
def huge_text(draw: st.DrawFn) -> str:
    """Up to a few hundred kilobytes, cheaply: a short piece repeated."""
    piece = draw(st.text(min_size=1, max_size=6))
    return piece * draw(st.integers(min_value=1_000, max_value=60_000))


nasty_text = st.one_of(short_text, short_text, short_text, huge_text())

ints = st.one_of(
    st.integers(min_value=-(2**31), max_value=2**31),
    st.sampled_from([0, -1, 2**53 + 1, 2**63, -(2**63) - 1, 10**30]),
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    ints,
    st.floats(allow_nan=False, allow_infinity=False),
    short_text,
)

# Any JSON document, nested a few levels.
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(short_text, inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def payload(draw: st.DrawFn, fields: dict[str, st.SearchStrategy[Any]]) -> dict[str, Any]:
    """A dict with ``fields``: all well formed in a sane payload; in a broken one (one in
    eight, so that a payload of several nested parts is still often sane as a whole), each
    field is now and then missing or replaced by arbitrary JSON."""
    broken = draw(st.integers(min_value=0, max_value=7)) == 0
    out: dict[str, Any] = {}
    for name, valid in fields.items():
        value = draw(valid)
        if broken and draw(st.integers(min_value=0, max_value=3)) == 0:
            value = draw(st.one_of(st.just(MISSING), json_values))
        if value is not MISSING:
            out[name] = value
    if broken:
        out.update(draw(st.dictionaries(short_text, json_values, max_size=2)))
    return out


def sometimes(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """An optional field: present or absent."""
    return st.one_of(st.just(MISSING), strategy)


def rarely(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """An optional field that is usually absent (one that makes the bot ignore the payload)."""
    return st.one_of(st.just(MISSING), st.just(MISSING), st.just(MISSING), strategy)


def mostly(usual: st.SearchStrategy[Any], other: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``usual`` three times in four, else ``other``."""
    return st.one_of(usual, usual, usual, other)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place inside nested dicts and lists that holds a value."""
    found: list[tuple[Any, ...]] = []
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        found.append((*prefix, key))
        if isinstance(item, dict | list):
            found.extend(_paths(item, (*prefix, key)))
    return found


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    """A copy of ``value`` with the value at ``path`` replaced (or removed, for MISSING)."""
    head, *rest = path
    copy: Any = dict(value) if isinstance(value, dict) else list(value)
    if rest:
        copy[head] = _replace(copy[head], tuple(rest), new)
    elif new is MISSING:
        del copy[head]
    else:
        copy[head] = new
    return copy


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[Any]) -> Any:
    """A payload from ``base`` with one value somewhere inside replaced by arbitrary JSON or
    removed: the classic one-mutation fuzz, which reaches every nested field evenly."""
    value = draw(base)
    paths = _paths(value) if isinstance(value, dict | list) else []
    if not paths:
        return value
    path = draw(st.sampled_from(paths))
    return _replace(value, path, draw(st.one_of(st.just(MISSING), json_values)))
