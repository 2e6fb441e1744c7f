"""Options and output helpers shared by the command groups."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

MAX_ID = (1 << 31) - 1  # ids are INTEGER columns: 32-bit on PostgreSQL


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(inf|nan)", re.I)


class SweepRef(click.ParamType[int | str]):
    """A sweep by id (a positive integer the database can hold, so a huge or negative id is a
    usage error, not an overflow deep in a driver) or by name (`sweep_id_of` resolves it). What
    reads as a number but not as an id (`1e3`, `-1`, `1.5`) is a usage error, never a name."""

    name = "sweep"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> int | str:
        text = str(value).strip()
        if text.lstrip("+-").isdigit():
            return int(click.IntRange(min=1, max=MAX_ID).convert(int(text), param, ctx))
        if not text or _NUMBER.fullmatch(text):
            self.fail(
                f"expected a sweep id (a positive integer) or a sweep's name. Received: {text!r}",
                param,
                ctx,
            )
        return text


SWEEP_ID = SweepRef()
"""The click type of every SWEEP_ID argument and --sweep option: an id or a sweep's name."""


def sweep_id_of(db: str | None, ref: int | str) -> int:
    """The id of the sweep `ref` (an id as it is; a name looked up read-only in `db`)."""
    if isinstance(ref, int):
        return ref
    from models.db import session_scope
    from scheduler.database import open_database
    from scheduler.sweeps import resolve_sweep

    with open_database(db, read_only=True) as factory, session_scope(factory) as session:
        return resolve_sweep(session=session, ref=ref)


FORMAT_OPTION = click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="table for people, json for programs (the same fields).",
)
LAYER = click.IntRange(min=0, max=MAX_ID)
MAX_MESSAGE = 2000  # characters of one error line


class OutputFile(click.ParamType[Path]):
    """A file to write: its directory must exist and be writable, checked before any work."""

    name = "file"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Path:
        path = Path(value)
        parent = path.parent if str(path.parent) else Path(".")
        if path.is_dir():
            self.fail(
                f"{click.format_filename(path)!r} is a directory; expected a file", param, ctx
            )
        if not parent.is_dir():
            self.fail(
                f"the directory {click.format_filename(parent)!r} of "
                f"{click.format_filename(path)!r} does not exist",
                param,
                ctx,
            )
        if not os.access(parent, os.W_OK | os.X_OK):
            self.fail(
                f"the directory {click.format_filename(parent)!r} is not writable", param, ctx
            )
        return path


OUTPUT_FILE = OutputFile()


def write_output(path: Path, text: str) -> None:
    """Write `text` to `path`; an OSError (disk full, permissions changed) is one OptionError."""
    from scheduler.errors import OptionError

    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise OptionError(
            f"--output: cannot write {click.format_filename(path)!r}: {exc.strerror or exc}"
        ) from exc


DB_OPTION = click.option(
    "--db",
    "db",
    default=None,
    metavar="URL",
    help="SQLAlchemy URL or SQLite file (default: $INITSWEEP_DATABASE_URL or ./initsweep.db).",
)
WORKERS_OPTION = click.option(
    "--workers",
    "-w",
    type=click.IntRange(min=1),
    default=None,
    help="Local worker processes (default: one per core, but no more than the sweep's work "
    "is worth: a small sweep runs on one; `initsweep validate` says how many).",
)
QUIET_OPTION = click.option("-q", "--quiet", is_flag=True, help="Print only the sweep id.")

_POLICY_OPTIONS = (
    click.option(
        "--stale-after",
        type=float,
        default=60.0,
        show_default=True,
        help="Seconds without heartbeat before a running chunk is presumed lost.",
    ),
    click.option(
        "--requeue-after",
        type=float,
        default=900.0,
        show_default=True,
        help="Seconds before an enqueued, unclaimed chunk is sent again.",
    ),
    click.option(
        "--max-in-flight",
        type=click.IntRange(min=1),
        default=64,
        show_default=True,
        help="Tasks kept enqueued or running at once (bounds the broker queue); a task is one "
        "chunk, or several small ones.",
    ),
    click.option(
        "--task-seconds",
        type=click.FloatRange(min=0.0),
        default=1.0,
        show_default=True,
        help="Nominal seconds of work small chunks are grouped to per task (0: a task per chunk).",
    ),
)


def policy_options(f: F) -> F:
    """The reconciler's --stale-after, --requeue-after, --max-in-flight and --task-seconds."""
    for option in reversed(_POLICY_OPTIONS):
        f = option(f)
    return f


def policy(
    stale_after: float, requeue_after: float, max_in_flight: int, task_seconds: float = 1.0
) -> Any:
    """The ReconcilePolicy of those options."""
    from scheduler.reconcile import ReconcilePolicy

    return ReconcilePolicy(
        stale_after_s=stale_after,
        requeue_after_s=requeue_after,
        max_in_flight=max_in_flight,
        task_seconds=task_seconds,
    )


def echo_error(message: str) -> None:
    """`initsweep: error: MESSAGE` on stderr: one line, printable characters only, bounded."""
    from scheduler.formatting import printable

    line = printable(message)
    if len(line) > MAX_MESSAGE:
        line = line[: MAX_MESSAGE - 3] + "..."
    click.echo(f"initsweep: error: {line}", err=True)
