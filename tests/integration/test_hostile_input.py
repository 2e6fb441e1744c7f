"""Hostile and extreme input through the real CLI: one located line, exit 2, nothing written,
bounded time and memory.

Every case runs the CLI in its own process under an address-space limit (RLIMIT_AS,
MEMORY_LIMIT) and a wall-clock timeout, as a user (or an attacker) would run it: forked from a
server that has imported the CLI (`tests.forked_cli`: the exit status, output and limits of
`python -m scheduler.cli`, without an interpreter start per case). Before
these bounds, the worst cases ran for minutes at gigabytes: a 521-byte alias bomb, 100,001
`configs` entries (409 s), `depth: [1000000000]` (MemoryError after 25 s at 2.8 GB), `trials:
100000000` with `chunk_trials: 1` (one plan object per chunk, 2 GB), `/dev/zero`.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.forked_cli import ForkedCli

pytestmark = pytest.mark.integration

MEMORY_LIMIT = 1536 << 20  # address space of the CLI process: validate never imports TensorFlow
TIMEOUT_S = 60.0  # the subprocess is killed past this: a hang fails, it does not block the suite
FAST_S = 20.0  # what "refused at once" means on a loaded CI machine (about 2-5 s measured)
GRID = "grid: {init: [he_normal], activation: [relu], depth: [2], width: [4]}\n"


_CLI = ForkedCli(
    {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "OPENBLAS_NUM_THREADS": "1",  # thread buffers would count against RLIMIT_AS
        "OMP_NUM_THREADS": "1",
    },
    ROOT,
)


@pytest.fixture(scope="module", autouse=True)
def _forking_server() -> Iterator[None]:
    """The module's CLI server, stopped after its last test."""
    yield
    _CLI.close()


def run_bounded(
    *args: str, env: Mapping[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], float]:
    """`initsweep ARGS` under MEMORY_LIMIT and TIMEOUT_S, and its wall time."""
    start = time.perf_counter()
    proc = _CLI.run(*args, env=env, timeout=TIMEOUT_S, limit=MEMORY_LIMIT)
    return proc, time.perf_counter() - start


def assert_one_located_line(
    proc: subprocess.CompletedProcess[str], located: str, *, code: int = 2
) -> str:
    """Exit `code`, exactly one stderr line `initsweep: error: ...` naming `located`, no trace."""
    assert proc.returncode == code, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr[-2000:]
    line = lines[0]
    assert line.startswith("initsweep: error: "), line
    assert located in line, line
    assert len(line) < 2100 and line.isprintable(), line
    return line


# --- specs: (text or a writer, the location the one line must name) -------------------------


def _alias_bomb(levels: int = 10, fan: int = 9) -> str:
    """[&a0 [1 x fan], &a1 [*a0 x fan], ...]: `fan ** levels` values from a few hundred bytes."""
    items = ["&a0 [" + ",".join(["1"] * fan) + "]"]
    items += [f"&a{i} [" + ",".join([f"*a{i - 1}"] * fan) + "]" for i in range(1, levels)]
    return "[" + ", ".join(items) + "]"


BOMB_BATCH = "name: bomb\ntrials: 10\n" + GRID + f"fixed: {{batch: {_alias_bomb()}}}\n"
BOMB_TRIALS = f"name: bomb\ntrials: {_alias_bomb()}\n" + GRID
NARROW = "grid: {init: [he_normal], activation: [relu], width: [8]}\n"
CONFIGS_100001 = (
    "name: many\ntrials: 10\nfixed: {init: he_normal, activation: relu, width: 4}\nconfigs:\n"
    + "".join(f"- {{depth: {i % 50 + 1}}}\n" for i in range(100_001))
)

SPECS: dict[str, tuple[str, str]] = {
    "alias_bomb_in_fixed_batch": (BOMB_BATCH, "spec.yaml:4:17: fixed.batch[0]: "),
    "alias_bomb_in_trials": (BOMB_TRIALS, "spec.yaml:2:10: trials[0]: "),
    "alias": ("name: a\ntrials: &t 10\nseed: *t\n" + GRID, "spec.yaml:2:9: trials: "),
    "depth_1e9": ("trials: 10\n" + NARROW + "fixed: {depth: 1000000000}\n", "fixed.depth: "),
    "depth_over_cap": ("trials: 10\n" + NARROW + "fixed: {depth: 100001}\n", "fixed.depth: "),
    "depth_1e5_over_budget": (
        "trials: 10\n" + NARROW + "fixed: {depth: 100000}\n",
        "grid (init=he_normal, activation=relu, width=8): one trial needs about 3.1 GiB",
    ),
    "width_over_cap": (
        "trials: 1\ngrid: {init: [he_normal], activation: [relu], depth: [2], width: [2097152]}\n",
        "grid.width[0]: ",
    ),
    "trials_1e8_chunk_1": (
        "trials: 100000000\nchunk_trials: 1\n" + GRID,
        "chunk_trials: expected at most 1,000,000 chunks",
    ),
    "trials_over_cap": ("trials: 10000000000\n" + GRID, "trials: expected at most"),
    "configs_100001": (CONFIGS_100001, "spec.yaml:100005:12: configs: "),
    "nested_brackets_10kb": ("name: n\ntrials: " + "[" * 5000 + "]" * 5000 + "\n", "spec.yaml:2:"),
    "nested_mappings": ("trials: 1\nfixed: " + "{a: " * 40 + "1" + "}" * 40 + "\n", "spec.yaml:2:"),
    "sexagesimal_depth": (
        "trials: 10\ngrid: {init: [he_normal], activation: [relu], depth: [1:30], width: [4]}\n",
        "spec.yaml:2:55: grid.depth[0]: expected a YAML 1.2 number",
    ),
    "octal_with_leading_zero": ("trials: 010\n" + GRID, "spec.yaml:1:9: trials: "),
    "binary": ("trials: 0b1010\n" + GRID, "spec.yaml:1:9: trials: "),
    "digit_separators": ("trials: 1_000\n" + GRID, "spec.yaml:1:9: trials: "),
    "integer_of_5000_digits": ("trials: " + "9" * 5000 + "\n" + GRID, "spec.yaml:1:9: trials: "),
    "memory_budget_of_60_digits": (
        "trials: 1\nmemory_budget: '" + "9" * 60 + " GiB'\n" + GRID,
        "memory_budget: ",
    ),
    "huge_key": ("trials: 1\n? " + "k" * 100_000 + "\n: 1\n" + GRID, "unknown key 'kkkk"),
    "huge_implicit_key": ("trials: 1\n" + "k" * 100_000 + ": 1\n" + GRID, "spec.yaml:2:"),
    "python_tag": ("trials: !!python/object/apply:os.system [echo]\n" + GRID, "spec.yaml:1:9: "),
    "target_negative_se": (
        "trials: 10\ntarget: {statistic: std, quantity: activation, se: -1}\n" + GRID,
        "target.se: expected a positive number. Received: -1",
    ),
    "target_layer_past_depth": (
        "trials: 10\ntarget: {statistic: std, quantity: activation, layer: 3, se: 1}\n" + GRID,
        "target.layer: expected a layer of every configuration",
    ),
    "target_min_over_trials": (
        "trials: 10\ntarget: {statistic: std, quantity: gradient, rel_se: 0.1, min_trials: 11}\n"
        + GRID,
        "target.min_trials: expected at most trials",
    ),
}


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize("case", sorted(SPECS))
def test_hostile_spec_is_one_located_line(case: str, command: str, tmp_path: Path) -> None:
    text, located = SPECS[case]
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    db = tmp_path / "never.db"
    args = [command, str(spec)] + (["--db", str(db)] if command == "run" else [])
    proc, seconds = run_bounded(*args)
    assert_one_located_line(proc, located)
    assert seconds < FAST_S, f"{case}: {seconds:.1f} s"
    assert not db.exists(), "nothing may be written for a bad spec"


def test_yaml_1_2_hex_and_octal_are_numbers(tmp_path: Path) -> None:
    """The stated choice: YAML 1.2 core schema, where 0x10 and 0o20 are 16."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "trials: 0x10\ngrid: {init: [he_normal], activation: [relu], depth: [0o20], width: [4]}\n"
    )
    proc, _ = run_bounded("validate", str(spec))
    assert proc.returncode == 0, proc.stderr
    assert "  trials           16\n" in proc.stdout


@pytest.mark.parametrize("path", ["/dev/zero", "huge"])
def test_huge_spec_file_is_refused_without_reading_it(path: str, tmp_path: Path) -> None:
    if path == "huge":
        huge = tmp_path / "huge.yaml"
        with huge.open("w") as f:
            f.write("trials: 1\n" + GRID)
            f.write(("#" * 1023 + "\n") * (10 * 1024 + 1))  # a comment just over 10 MiB
        path = str(huge)
    elif not Path(path).exists():
        pytest.skip("no /dev/zero")
    db = tmp_path / "never.db"
    for args in (["validate", path], ["run", path, "--db", str(db)]):
        proc, seconds = run_bounded(*args)
        assert_one_located_line(proc, f"{path}: expected a spec file of at most 10,485,760 bytes")
        assert seconds < FAST_S
    assert not db.exists()


# --- command line ------------------------------------------------------------------------------

SWEEP_ID_COMMANDS = [
    ["results"],
    ["status"],
    ["resume"],
    ["cancel"],
    ["check"],
    ["plot", "-o", "x.png"],
    ["report", "-o", "x.html"],
    ["reproduction"],
]


@pytest.mark.parametrize("sweep_id", [str(1 << 63), str(1 << 31), "0", "-1", "1e3"])
@pytest.mark.parametrize("command", SWEEP_ID_COMMANDS, ids=lambda c: c[0])
def test_out_of_range_sweep_id(command: list[str], sweep_id: str, tmp_path: Path) -> None:
    db = tmp_path / "never.db"
    proc, _ = run_bounded(command[0], "--db", str(db), *command[1:], "--", sweep_id)
    assert_one_located_line(proc, "SWEEP_ID]'" if command == ["status"] else "'SWEEP_ID'")
    assert not db.exists()


def test_out_of_range_scheduler_sweep_and_layer(tmp_path: Path) -> None:
    db = tmp_path / "never.db"
    proc, _ = run_bounded("scheduler", "--db", str(db), "--sweep", str(1 << 63))
    assert_one_located_line(proc, "'--sweep'")
    proc, _ = run_bounded("results", "1", "--db", str(db), "--layer", str(1 << 63))
    assert_one_located_line(proc, "'--layer'")
    assert not db.exists()


@pytest.mark.parametrize(
    "command",
    [
        ["report", "1", "-o", "/nonexistent/dir/x.html"],
        ["plot", "1", "-o", "/nonexistent/dir/x.png"],
        ["results", "1", "--format", "csv", "-o", "/nonexistent/dir/x.csv"],
        ["report", "1", "-o", "/"],
    ],
    ids=["report", "plot", "results", "a_directory"],
)
def test_output_in_a_missing_directory(command: list[str], tmp_path: Path) -> None:
    db = tmp_path / "never.db"
    proc, _ = run_bounded(*command, "--db", str(db))
    assert_one_located_line(proc, "'--output'")
    assert not db.exists()


MALFORMED_DB = [
    ("postgresql://u:s3cret@h:notaport/x", "port 'notaport'"),
    ("://", "Could not parse"),
    ("nosuchdialect://u@h/x", "nosuchdialect"),
    ("postgresql://u:s3c@ret@h/x", "unencoded '@'"),
]


@pytest.mark.parametrize(("url", "why"), MALFORMED_DB, ids=[u for u, _ in MALFORMED_DB])
@pytest.mark.parametrize("source", ["option", "environment"])
def test_malformed_database_url(url: str, why: str, source: str, tmp_path: Path) -> None:
    spec = tmp_path / "ok.yaml"
    spec.write_text("trials: 2\n" + GRID)
    located = "--db: " if source == "option" else "$INITSWEEP_DATABASE_URL: "
    for args in (["sweeps"], ["status"], ["run", str(spec)], ["db", "upgrade"]):
        if source == "option":
            proc, _ = run_bounded(*args, "--db", url)
        else:
            proc, _ = run_bounded(*args, env={"INITSWEEP_DATABASE_URL": url})
        line = assert_one_located_line(proc, located)
        assert why in line, line
        assert "s3c" not in proc.stderr + proc.stdout
    assert list(tmp_path.iterdir()) == [spec]


@pytest.mark.parametrize(
    "url",
    ["redis://:s3cret@host:badport/0", "redis://:s3/cret@host:6379/0", "nonsense"],
)
def test_malformed_broker_url(url: str, tmp_path: Path) -> None:
    spec = tmp_path / "ok.yaml"
    spec.write_text("trials: 2\n" + GRID)
    db = tmp_path / "never.db"
    proc, _ = run_bounded("submit", str(spec), "--db", str(db), env={"INITSWEEP_BROKER_URL": url})
    assert_one_located_line(proc, "$INITSWEEP_BROKER_URL: ")
    assert "s3" not in proc.stderr + proc.stdout
    assert not db.exists(), "nothing is recorded before the broker URL is known to be usable"


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("postgresql+psycopg://alice:pa/ss#wo?rd@127.0.0.1:1/nowhere", ("pa/ss", "wo?rd", "ss#")),
        ("postgresql+psycopg://alice@127.0.0.1:1/nowhere?password=hunter2", ("hunter2",)),
    ],
    ids=["slash_hash_question", "query"],
)
def test_unreachable_database_never_shows_the_password(
    url: str, secret: tuple[str, ...], tmp_path: Path
) -> None:
    spec = tmp_path / "ok.yaml"
    spec.write_text("trials: 2\n" + GRID)
    proc, _ = run_bounded("run", str(spec), "--db", url)
    assert_one_located_line(proc, "cannot open database postgresql+psycopg://alice", code=1)
    for piece in secret:
        assert piece not in proc.stderr + proc.stdout


def test_unreachable_broker_never_shows_the_password(tmp_path: Path) -> None:
    spec = tmp_path / "ok.yaml"
    spec.write_text("trials: 2\n" + GRID)
    db = tmp_path / "never.db"
    url = "redis://:se%2Fcr%23et@127.0.0.1:1/0"
    proc, _ = run_bounded("submit", str(spec), "--db", str(db), env={"INITSWEEP_BROKER_URL": url})
    assert_one_located_line(proc, "cannot reach the broker redis://:***@127.0.0.1:1/0", code=1)
    assert "se%2F" not in proc.stderr + proc.stdout and "cr%23" not in proc.stderr
    assert not db.exists()


# --- output ------------------------------------------------------------------------------------

EVIL_NAME = "evil\x1b[31mRED\x1b[0m\x1b]0;title\x07 [bold]x[/bold] [/nope] \u202e\rend"


def _record_sweep(db: Path, name: str, label: str) -> None:
    """A sweep row (no run: TensorFlow is not needed to list or show it)."""
    from models.db import make_engine, make_session_factory, upgrade
    from scheduler.chunking import plan_sweep
    from scheduler.spec.parse import spec_from_json
    from scheduler.sweeps import record

    url = f"sqlite:///{db}"
    upgrade(url)
    spec = spec_from_json(
        {
            "name": name,
            "trials": 2,
            "configs": [
                {"label": label, "init": "he_normal", "activation": "relu", "depth": 1, "width": 4}
            ],
        }
    )
    engine = make_engine(url)
    try:
        record(make_session_factory(engine), plan_sweep(spec))
    finally:
        engine.dispose()


@pytest.mark.parametrize("command", [["sweeps"], ["status"], ["status", "1"], ["results", "1"]])
def test_names_and_labels_print_as_printable_text(command: list[str], tmp_path: Path) -> None:
    db = tmp_path / "evil.db"
    _record_sweep(db, EVIL_NAME, "lab\x1b[2Jel [/x]")
    proc, _ = run_bounded(*command, "--db", str(db), env={"COLUMNS": "400"})
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    for raw in ("\x1b", "\x07", "\u202e", "\r"):
        assert raw not in out, (raw, out)
    if command[0] != "results":
        assert "evil\\x1b[31mRED\\x1b[0m\\x1b]0;title\\x07 [bold]x[/bold] [/nope]" in out
        assert "\\u202e\\rend" in out
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT name FROM sweeps").fetchone()[0] == EVIL_NAME


def test_error_lines_escape_what_they_quote(tmp_path: Path) -> None:
    proc, _ = run_bounded("validate", str(tmp_path / "bad\x1b[31m\nname.yaml"))
    assert_one_located_line(proc, "bad\\x1b[31m\\nname.yaml: no such file")
    assert "\x1b" not in proc.stderr
