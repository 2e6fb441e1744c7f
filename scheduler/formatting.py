"""How numbers, durations and configurations read in tables, reports and messages (one home each).

Pure functions of values (no I/O): the CLI's tables, the HTML report, the theory check and the
work estimate all print through these, so the same quantity reads the same everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["clock", "config_label", "duration", "number", "pm", "printable"]

MISSING = "—"


def printable(text: str) -> str:
    """`text` with every character that is not printable escaped as Python writes it (`\\x1b`,
    `\\n`, `\\u202e`): names and labels from a spec or a database can then neither move the
    terminal's cursor, recolour it, nor break a line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def number(x: Any, digits: int = 4) -> str:
    """A float to `digits` significant digits (`∞` for infinities), `—` for None, else `str`."""
    if x is None:
        return MISSING
    if isinstance(x, float):
        if math.isinf(x):
            return "∞" if x > 0 else "-∞"
        return f"{x:.{digits}g}"
    return str(x)


def pm(value: float | None, se: float | None) -> str:
    """`1.234 ± 0.021`: an estimate and its standard error; `—` when there is no value."""
    if value is None:
        return MISSING
    if se is None:
        return f"{value:.4g}"
    return f"{value:.4g} ± {se:.2g}"


def duration(seconds: float | None) -> str:
    """`0.4 s`, `42 s`, `12 min`, `3.5 h`; `—` when unknown."""
    if seconds is None:
        return MISSING
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def clock(seconds: float | None) -> str:
    """A countdown of fixed shape for live tables: `4m07s`, `2h05m`; `—` when unknown."""
    if seconds is None:
        return MISSING
    whole = int(seconds)
    if whole >= 3600:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 60}m{whole % 60:02d}s"


def config_label(columns: Mapping[str, Any]) -> str:
    """THE label of a configuration: `[label: ]init · activation · d=D · w=W[ · sigma_b=B][ · dtype]`.

    `columns` are a configuration's parameter columns and axis values (a result record is one).
    Where the sweep gave a `sigma_w` axis (the phase-diagram sugar) the init reads `sigma_w=...`,
    as the user wrote it, not the variance_scaling scheme it stands for; the bias reads
    `sigma_b=...` when it is not zero; the dtype shows when it is not float32; a `label` axis
    comes first.
    """
    init = str(columns["init"])
    if columns.get("sigma_w") is not None:
        init = f"sigma_w={number(columns['sigma_w'], 6)}"
    parts = [init, str(columns["activation"]), f"d={columns['depth']}", f"w={columns['width']}"]
    if columns.get("bias_std"):
        parts.append(f"sigma_b={number(columns['bias_std'], 6)}")
    if columns.get("dtype", "float32") != "float32":
        parts.append(str(columns["dtype"]))
    base = " · ".join(parts)
    label = columns.get("label")
    return f"{printable(str(label))}: {base}" if label else base
