"""Row filters: the one grammar of `initsweep results --where`, `scheduler.query.results(where=)`
and the dashboard's filter box.

A filter is a list of terms `COLUMN OP VALUE`, all of which must hold (AND): one term per
`--where` flag, or several in one string separated by spaces (an `and` between them is allowed;
spaces around the operator are not significant). OP is one of `=`, `!=`, `<`, `<=`, `>`, `>=`
and `~` (contains, case-insensitive). `=`, `!=` and `~` take a comma-separated list, any of
which matches (`activation=relu,tanh`); a comma inside parentheses belongs to its value
(`init=normal(mean=0, std=1)`); quotes group a value with spaces.

Values are written as in the spec:
- a number equals a number column by value (`sigma_w=1.5`, `depth=10`, `bias_std=0`);
- a scheme by its name matches every configuration of it (`init=normal` matches
  `normal(mean=0, std=0.15)`, `activation=leaky_relu` every alpha), and with some of its
  parameters those with equal values (`init=normal(std=0.15)`; `scale=2` is `scale=2.0`);
- `none` (or `null`) matches a missing value, `true` / `false` a boolean column;
- `layer=last` (also `layer<last`, ...) is each configuration's last layer.
`<`, `<=`, `>`, `>=` compare numbers: a missing or non-finite value never satisfies them, and
`~` is for text columns. A term on a column there is not is a UserError with a did-you-mean
(`check_columns`); what matches nothing is the caller's to report.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

from scheduler.errors import UserError
from scheduler.spec.values import did_you_mean

__all__ = [
    "OPS",
    "Term",
    "Where",
    "check_columns",
    "describe",
    "is_number",
    "matches",
    "numeric_mask",
    "parse_where",
    "row_matches",
    "split_list",
    "unknown_column",
    "where_terms",
]

OPS = ("!=", "<=", ">=", "=", "<", ">", "~")
LIST_OPS = ("=", "!=", "~")
_TERM = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(!=|<=|>=|=|<|>|~)(.*)$", re.S)
_AROUND_OP = re.compile(r"\s*(!=|<=|>=|=|<|>|~)\s*")
_CALL = re.compile(r"^([A-Za-z_]\w*)\((.*)\)$", re.S)
_NAME = re.compile(r"^[A-Za-z_]\w*$")
_NULLS = ("none", "null", "—")
_LAST = "last"


@dataclass(frozen=True)
class Term:
    """One filter term: `key op value[,value...]` (one value for `<`, `<=`, `>`, `>=`)."""

    key: str
    op: str
    values: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.key}{self.op}{','.join(self.values)}"


Where = str | Sequence[str] | Mapping[str, Any] | Sequence[Term] | None
"""What a caller may pass as a filter: one string of terms, a list of them (one per `--where`),
a mapping {column: value} (each an `=` term, lists allowed), or parsed terms."""


def split_list(text: str) -> tuple[str, ...]:
    """Comma-separated values, commas inside parentheses kept (`normal(mean=0, std=1)`)."""
    out, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            out.append(text[start:i].strip())
            start = i + 1
    out.append(text[start:].strip())
    return tuple(v for v in out if v)


def _tokens(text: str, source: str) -> list[str]:
    """Split at spaces outside quotes and parentheses (`init=normal(mean=0, std=1)` is one)."""
    out: list[str] = []
    current: list[str] = []
    quote, depth = "", 0
    for ch in text:
        if quote:
            if ch == quote:
                quote = ""
            else:
                current.append(ch)
        elif ch in "\"'":
            quote = ch
        elif ch.isspace() and depth == 0:
            if current:
                out.append("".join(current))
                current = []
        else:
            depth += ch in "([{"
            depth -= ch in ")]}" and depth > 0
            current.append(ch)
    if quote:
        raise UserError(f"{source} {text!r}: no closing quotation mark")
    if current:
        out.append("".join(current))
    return out


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _term(key: str, op: str, raw: str, source: str, shown: str) -> Term:
    values = split_list(raw) if op in LIST_OPS else (raw.strip(),)
    if not values or not values[0]:
        raise UserError(f"{source} {shown!r}: expected a value after {op}")
    if op not in LIST_OPS and values[0].lower() != _LAST and _number(values[0]) is None:
        raise UserError(
            f"{source} {shown!r}: {op} compares numbers; expected a number after {op}. "
            f"Received: {values[0]!r}"
        )
    return Term(key, op, values)


def parse_where(text: str | None, source: str = "filter") -> list[Term]:
    """The terms of one filter string (the module docstring's grammar); a malformed term is a
    UserError that starts with `source` and quotes the term."""
    if not text or not text.strip():
        return []
    compact = _AROUND_OP.sub(r"\1", text.strip())  # `layer >= 5` reads as `layer>=5`
    terms = []
    for token in _tokens(compact, source):
        if token.lower() in ("and", "&", "&&"):
            continue
        match = _TERM.match(token)
        if match is None:
            raise UserError(
                f"{source} {token!r}: expected COLUMN OP VALUE with OP one of {' '.join(OPS)} "
                "(e.g. activation=relu,tanh layer>=5 sigma_w=1.5)"
            )
        key, op, raw = match.groups()
        terms.append(_term(key, op, raw, source, token))
    return terms


def where_terms(where: Where, source: str = "--where") -> list[Term]:
    """The terms of any `Where` (see its docstring), AND-ed in the order given."""
    if where is None:
        return []
    if isinstance(where, str):
        return parse_where(where, source)
    if isinstance(where, Mapping):
        out = []
        for key, value in where.items():
            raw = ",".join(map(str, value)) if isinstance(value, list | tuple) else str(value)
            if not isinstance(key, str) or _NAME.match(key) is None:
                raise UserError(f"{source}: expected column names as keys. Received: {key!r}")
            out.append(_term(key, "=", raw, source, f"{key}={raw}"))
        return out
    terms: list[Term] = []
    for item in where:
        terms.extend([item] if isinstance(item, Term) else parse_where(item, source))
    return terms


def describe(terms: Sequence[Term], flag: str = "--where") -> str:
    """The terms as the command line would repeat them: `--where a=1 --where 'b<2'`."""
    return " ".join(f"{flag} {shlex.quote(str(t))}" for t in terms)


def unknown_column(key: str, columns: Iterable[str], source: str = "--where") -> UserError:
    """The UserError for a column there is not: a did-you-mean, then the columns there are."""
    known = list(dict.fromkeys(columns))
    return UserError(
        f"{source} {key}: unknown column{did_you_mean(key, known)} (columns: {', '.join(known)})"
    )


def check_columns(terms: Sequence[Term], columns: Iterable[str], source: str = "--where") -> None:
    """UserError (`unknown_column`) for the first term on a column not among `columns`."""
    known = list(columns)
    for term in terms:
        if term.key not in known:
            raise unknown_column(term.key, known, source)


# ------------------------------------------------------------------------------- matching


def is_number(value: Any) -> bool:
    """An int or float, not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool)


@lru_cache(maxsize=4096)
def _scheme(text: str) -> tuple[str, tuple[tuple[str, str], ...]] | None:
    """`name(k=v, ...)` as (name, ((k, v), ...)), a bare name as (name, ()); else None."""
    text = text.replace(" ", "")
    if _NAME.match(text):
        return text, ()
    call = _CALL.match(text)
    if call is None:
        return None
    params = []
    for part in split_list(call.group(2)):
        key, eq, value = part.partition("=")
        if not eq:
            return None
        params.append((key, value))
    return call.group(1), tuple(params)


def _same_value(have: str, want: str) -> bool:
    a, b = _number(have), _number(want)
    return a == b if a is not None and b is not None else have == want


def _text_equal(have: str, want: str) -> bool:
    """`want` written as in the spec: the text itself, or a scheme with some of its params."""
    if have == want or have.replace(" ", "") == want.replace(" ", ""):
        return True
    h, w = _scheme(have), _scheme(want)
    if h is None or w is None or h[0] != w[0]:
        return False
    params = dict(h[1])
    return all(k in params and _same_value(params[k], v) for k, v in w[1])


def _equal(have: Any, want: str, last: float | None) -> bool:
    if have is None:
        return want.lower() in _NULLS
    if isinstance(have, bool):
        return want.lower() == str(have).lower()
    if is_number(have):
        if last is not None and want.lower() == _LAST:
            return float(have) == last
        number = _number(want)
        return number is not None and number == float(have)
    return _text_equal(str(have), want)


def _bound(term: Term, last: float | None) -> float | None:
    value = term.values[0]
    return last if value.lower() == _LAST else _number(value)


def matches(term: Term, have: Any, *, last: float | None = None) -> bool:
    """Whether a value `have` of column `term.key` satisfies `term` (`last`: the configuration's
    last layer, for `layer=last`)."""
    if term.op == "=":
        return any(_equal(have, v, last) for v in term.values)
    if term.op == "!=":
        return not any(_equal(have, v, last) for v in term.values)
    if term.op == "~":
        if is_number(have):
            raise UserError(f"{term}: ~ (contains) is for text columns; {term.key} is a number")
        text = "" if have is None else str(have).lower()
        return any(v.lower() in text for v in term.values)
    bound = _bound(term, last)
    if bound is None or not is_number(have) or not math.isfinite(float(have)):
        return False
    x = float(have)
    return {"<": x < bound, "<=": x <= bound, ">": x > bound, ">=": x >= bound}[term.op]


def row_matches(
    terms: Sequence[Term], row: Mapping[str, Any], *, last: float | None = None
) -> bool:
    """Whether a record satisfies every term (a column the row lacks is a missing value)."""
    return all(matches(t, row.get(t.key), last=last) for t in terms)


Floats = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]


def numeric_mask(term: Term, values: Floats, *, last: Floats | None = None) -> Mask:
    """`matches` over a numeric column at once (NaN: missing; `last`: per-row last layers)."""
    if term.op == "~":
        raise UserError(f"{term}: ~ (contains) is for text columns; {term.key} is a number")
    if term.op in ("=", "!="):
        hit = np.zeros(values.shape, dtype=bool)
        for v in term.values:
            if v.lower() == _LAST and last is not None:
                hit |= values == last
            elif v.lower() in _NULLS:
                hit |= np.isnan(values)
            elif (number := _number(v)) is not None:
                hit |= values == number
        return hit if term.op == "=" else ~hit
    bound: Floats | float | None = (
        last if term.values[0].lower() == _LAST else _number(term.values[0])
    )
    if bound is None:
        return np.zeros(values.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        hit = {
            "<": values < bound,
            "<=": values <= bound,
            ">": values > bound,
            ">=": values >= bound,
        }[term.op]
    return hit & np.isfinite(values)  # as `matches`: no non-finite value is ordered
