"""Spec values checked one at a time: axis values, schemes, numbers, byte sizes, and the wording
every located `SpecError` shares (`where: expected ... Received: ...`, did-you-mean)."""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from scheduler.errors import SpecError
from scheduler.spec.model import (
    AXES,
    INT_AXES,
    INT_AXIS_MAX,
    MAX_MAGNITUDE,
    MAX_MEMORY_BUDGET,
    MIN_MAGNITUDE,
    REQUESTED_SAMPLERS,
    AxisValue,
)
from worker.contract import (
    ACTIVATIONS,
    BIAS_SCHEMES,
    DTYPES,
    FAN_MODES,
    INIT_SCHEMES,
    VS_DISTRIBUTIONS,
    ParamValue,
    Scheme,
)

_STRING_PARAMS: dict[str, tuple[str, ...]] = {"mode": FAN_MODES, "distribution": VS_DISTRIBUTIONS}
_POSITIVE_PARAMS = frozenset({"scale"})
_NON_NEGATIVE_PARAMS = frozenset({"std"})
_SIZE_UNITS: dict[str, int] = {
    "": 1,
    "b": 1,
    "kib": 1 << 10,
    "mib": 1 << 20,
    "gib": 1 << 30,
    "tib": 1 << 40,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)\s*$")


def axis_value(axis: str, value: Any, where: str) -> AxisValue:
    """Validate one value of `axis` found at `where` (raises a located SpecError)."""
    if axis == "init":
        return _scheme(value, "init", INIT_SCHEMES, where)
    if axis == "activation":
        return _scheme(value, "activation", ACTIVATIONS, where)
    if axis == "bias":
        return _scheme(value, "bias", BIAS_SCHEMES, where)
    if axis in INT_AXES:
        maximum, unit = INT_AXIS_MAX[axis]
        return positive_int(value, where, maximum=maximum, unit=unit)
    if axis == "dtype":
        return choice(value, DTYPES, "dtype", where)
    if axis == "sampler":
        return choice(value, REQUESTED_SAMPLERS, "sampler", where)
    if axis == "sigma_w":
        return number(value, where, positive=True)
    if axis == "sigma_b":
        return number(value, where, non_negative=True)
    if axis == "input_q":
        return number(value, where, positive=True)
    if axis == "input_corr":
        corr = number(value, where)
        if not -1.0 <= corr <= 1.0:
            raise SpecError(
                f"{where}: expected a correlation in [-1, 1]. Received: {render(value)}"
            )
        return corr
    raise SpecError(f"{where}: unknown axis {axis!r}; expected one of {', '.join(AXES)}")


def _scheme(
    value: Any, kind: str, registry: Mapping[str, Mapping[str, ParamValue]], where: str
) -> Scheme:
    example = {"init": "{name: normal, std: 0.05}", "activation": "{name: leaky_relu, alpha: 0.1}"}
    example_text = example.get(kind, "{name: normal, std: 0.1}")
    if isinstance(value, str):
        name, params = value, {}
    elif isinstance(value, Mapping):
        if "name" not in value:
            raise SpecError(
                f"{where}: expected a mapping with a 'name' key, e.g. {example_text}. "
                f"Received: {received(value)}"
            )
        name = value["name"]
        params = {k: v for k, v in value.items() if k != "name"}
        if not isinstance(name, str):
            raise SpecError(
                f"{where}.name: expected a {kind} name, one of {', '.join(registry)}. "
                f"Received: {received(name)}"
            )
    else:
        raise SpecError(
            f"{where}: expected a {kind} name or a mapping like {example_text}. "
            f"Received: {received(value)}"
        )
    if name not in registry:
        raise SpecError(
            f"{where}: unknown {kind} {render(name)}; expected one of {', '.join(registry)}"
            f"{did_you_mean(name, registry)}"
        )
    allowed = registry[name]
    checked: dict[str, ParamValue] = {}
    for key, param in params.items():
        at = f"{where}.{key_text(key)}"
        if key not in allowed:
            if not allowed:
                raise SpecError(
                    f"{at}: unknown parameter {show_key(key)} for {kind} {name!r}, which takes "
                    "no parameters"
                )
            raise SpecError(
                f"{at}: unknown parameter {show_key(key)} for {kind} {name!r}; expected one of "
                f"{', '.join(allowed)}{did_you_mean(key, allowed)}"
            )
        if isinstance(allowed[key], str):
            checked[key] = choice(param, _STRING_PARAMS.get(key, ()), key, at)
        else:
            checked[key] = number(
                param,
                at,
                positive=key in _POSITIVE_PARAMS,
                non_negative=key in _NON_NEGATIVE_PARAMS,
            )
    if "low" in allowed:
        low = checked.get("low", allowed["low"])
        high = checked.get("high", allowed["high"])
        assert isinstance(low, float) and isinstance(high, float)
        if not low < high:
            raise SpecError(f"{where}: expected low < high. Received: low={low:g}, high={high:g}")
    return Scheme(name, tuple(sorted(checked.items())))


def number(value: Any, where: str, *, positive: bool = False, non_negative: bool = False) -> float:
    """A finite number (positive or non-negative when asked) as a float, 0 or of magnitude in
    [MIN_MAGNITUDE, MAX_MAGNITUDE] (its square, times any fan, is finite and normal in float64)."""
    if positive:
        what = "a positive number"
    elif non_negative:
        what = "a non-negative number"
    else:
        what = "a finite number"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpecError(f"{where}: expected {what}. Received: {received(value)}")
    try:
        as_float = float(value)
    except OverflowError:  # an int beyond float range
        as_float = math.inf
    if (
        not math.isfinite(as_float)
        or (positive and as_float <= 0)
        or (non_negative and as_float < 0)
    ):
        raise SpecError(f"{where}: expected {what}. Received: {render(value)}")
    if abs(as_float) > MAX_MAGNITUDE:
        raise SpecError(
            f"{where}: expected {what} of magnitude at most {MAX_MAGNITUDE:g} (its square, "
            f"times a fan, must stay finite in float64). Received: {render(value)}"
        )
    if 0.0 < abs(as_float) < MIN_MAGNITUDE:
        raise SpecError(
            f"{where}: expected 0 or {what} of magnitude at least {MIN_MAGNITUDE:g} (its square "
            f"must not underflow float64). Received: {render(value)}"
        )
    return as_float


def positive_int(value: Any, where: str, *, maximum: int | None = None, unit: str = "") -> int:
    """An int >= 1, and <= `maximum` (counted in `unit`) when given; booleans are not integers."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecError(f"{where}: expected a positive integer. Received: {received(value)}")
    if maximum is not None and value > maximum:
        counted = f" {unit}" if unit else ""
        raise SpecError(
            f"{where}: expected at most {maximum:,}{counted}. Received: {received(value)}"
        )
    return value


def non_negative_int(value: Any, where: str, *, maximum: int) -> int:
    """An int in [0, maximum] (booleans are not integers here)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise SpecError(
            f"{where}: expected a non-negative integer below 2**63. Received: {received(value)}"
        )
    return value


def non_empty_text(value: Any, where: str) -> str:
    """A string with at least one non-blank character."""
    if not isinstance(value, str) or not value.strip():
        raise SpecError(f"{where}: expected a non-empty string. Received: {received(value)}")
    return value


def choice(value: Any, options: Sequence[str], what: str, where: str) -> str:
    """One of `options`, named `what` in messages."""
    if not isinstance(value, str):
        raise SpecError(
            f"{where}: expected a {what}, one of {', '.join(options)}. Received: {received(value)}"
        )
    if value not in options:
        raise SpecError(
            f"{where}: unknown {what} {render(value)}; expected one of {', '.join(options)}"
            f"{did_you_mean(value, options)}"
        )
    return value


def parse_byte_size(text: str | int) -> int:
    """`'512MiB'` → 536870912 (units B, KiB..TiB, KB..TB; plain ints are bytes)."""
    return byte_size(text, "memory_budget")


def byte_size(value: Any, where: str) -> int:
    """A positive whole number of bytes, from an int or a text such as `'2GiB'`."""
    expected = "expected a positive number of bytes, e.g. 1073741824, '512MiB' or '2GiB'"
    size: float | int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        if value > 0:
            size = value
    elif isinstance(value, str) and len(value) <= 64:
        match = _SIZE_RE.match(value)
        if match and match.group(2).lower() in _SIZE_UNITS:
            unit = _SIZE_UNITS[match.group(2).lower()]
            scaled = float(match.group(1)) * unit
            if scaled > MAX_MEMORY_BUDGET or (scaled >= 1 and (unit > 1 or scaled.is_integer())):
                size = scaled  # no fractional bytes; too large is refused below
    if size is None:
        raise SpecError(f"{where}: {expected}. Received: {received(value)}")
    if size > MAX_MEMORY_BUDGET:
        raise SpecError(
            f"{where}: expected at most {MAX_MEMORY_BUDGET:,} bytes (1 PiB). "
            f"Received: {received(value)}"
        )
    return int(size)


# --- wording ---------------------------------------------------------------------------------


def did_you_mean(word: Any, options: Iterable[str]) -> str:
    """`; did you mean 'relu'?` for a near miss among `options`, else an empty string."""
    if not isinstance(word, str) or not word:
        return ""
    choices = list(options)
    containing = [o for o in choices if len(word) >= 3 and word.lower() in o]
    if 1 < len(containing) <= 3:
        return f"; did you mean one of {', '.join(repr(o) for o in containing)}?"
    close = containing or difflib.get_close_matches(word, choices, n=1, cutoff=0.7)
    return f"; did you mean {close[0]!r}?" if close else ""


def show_key(key: Any) -> str:
    """A mapping key as written, with its type when it is not a string (`1 (int)`)."""
    return render(key) if isinstance(key, str) else f"{render(key)} ({type(key).__name__})"


def key_text(key: Any) -> str:
    """A mapping key as a path segment (`grid.<key>`): short printable text as is, else
    rendered (bounded, escaped)."""
    if isinstance(key, str) and key.isprintable() and len(key) <= 40:
        return key
    return render(key, limit=40)


def received(value: Any) -> str:
    """What a message says was received: repr, YAML words for booleans and null, at most 80."""
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if value is None:
        return "nothing (null)"
    return render(value)


def render(value: Any, limit: int = 80) -> str:
    """`repr(value)` cut to `limit` characters (`...` at the end when cut), built piece by piece
    so that a huge or deeply nested value costs only what is shown."""
    out: list[str] = []
    size = 0
    for piece in _repr_pieces(value, depth=0):
        out.append(piece)
        size += len(piece)
        if size > limit:
            break
    text = "".join(out)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _repr_pieces(value: Any, depth: int) -> Iterator[str]:
    """Pieces whose concatenation is `repr(value)` (containers lazily, up to a depth)."""
    if isinstance(value, list | tuple | dict) and depth >= 16:
        yield "..."
        return
    if isinstance(value, list | tuple):
        opening, closing = ("[", "]") if isinstance(value, list) else ("(", ")")
        yield opening
        for i, item in enumerate(value):
            if i:
                yield ", "
            yield from _repr_pieces(item, depth + 1)
        yield "," + closing if isinstance(value, tuple) and len(value) == 1 else closing
    elif isinstance(value, dict):
        yield "{"
        for i, (k, v) in enumerate(value.items()):
            if i:
                yield ", "
            yield from _repr_pieces(k, depth + 1)
            yield ": "
            yield from _repr_pieces(v, depth + 1)
        yield "}"
    elif isinstance(value, str) and len(value) > 256:
        yield repr(value[:256])[:-1]  # cut anyway: the closing quote would not be shown
    elif isinstance(value, int) and value.bit_length() > 512:
        yield f"<an integer of about {int(value.bit_length() * math.log10(2)) + 1:,} digits>"
    else:
        yield repr(value)


def one_line(text: str) -> str:
    """`text` with every run of whitespace, newlines included, as one space."""
    return " ".join(text.split())
