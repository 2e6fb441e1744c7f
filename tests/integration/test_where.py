"""`initsweep results --where` on a real sweep: every operator, lists, the spec's spelling of
values, AND across flags, a filter that matches nothing, an unknown column; the same filters
through `scheduler.query.results` and the streamed formats."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.integration

SPEC = """\
name: where
seed: 3
trials: 8
configs:
  - {init: he_normal, activation: relu}
  - {init: {name: normal, std: 0.15}, activation: tanh}
  - {sigma_w: 1.5, activation: tanh, label: critical}
  - {sigma_w: 1.0, activation: linear}
fixed:
  depth: 2
  width: 4
  sampler: dense
"""

Row = dict[str, Any]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[Row]]:
    folder = tmp_path_factory.mktemp("where")
    (folder / "spec.yaml").write_text(SPEC)
    db = str(folder / "where.db")
    done = run_cli("run", str(folder / "spec.yaml"), "--db", db, "--workers", "1", "-q")
    assert done.returncode == 0, done.stderr
    everything = _json(db)
    assert len(everything) == 4 * (1 + 2 * 3)
    return db, everything


def _results(db: str, *args: str) -> Any:
    return run_cli("results", "1", "--db", db, "--format", "json", *args, timeout=120)


def _json(db: str, *args: str) -> list[Row]:
    done = _results(db, *args)
    assert done.returncode == 0, done.stderr
    rows: list[Row] = json.loads(done.stdout)
    return rows


def _keys(rows: list[Row]) -> list[tuple[str, int, str]]:
    return [(r["config_hash"], r["layer"], r["quantity"]) for r in rows]


CASES: list[tuple[list[str], Callable[[Row], bool]]] = [
    (["activation=tanh"], lambda r: r["activation"] == "tanh"),
    (["activation!=tanh"], lambda r: r["activation"] != "tanh"),
    (["sigma_w<1.5"], lambda r: r.get("sigma_w") is not None and r["sigma_w"] < 1.5),
    (["sigma_w <= 1.5"], lambda r: r.get("sigma_w") is not None),
    (["layer>1"], lambda r: r["layer"] > 1),
    (["layer>=1"], lambda r: r["layer"] >= 1),
    (["activation=relu,linear"], lambda r: r["activation"] in ("relu", "linear")),
    (["activation!=relu,linear"], lambda r: r["activation"] == "tanh"),
    (["width=4,8"], lambda r: True),
    # values as the spec wrote them
    (["init=normal"], lambda r: r["init"] == "normal(mean=0, std=0.15)"),
    (["init=normal(std=0.15)"], lambda r: r["init"] == "normal(mean=0, std=0.15)"),
    (["sigma_w=1.5"], lambda r: r.get("sigma_w") == 1.5),
    (["sigma_w=1"], lambda r: r.get("sigma_w") == 1.0),
    (["init=variance_scaling(scale=2.25)"], lambda r: r.get("sigma_w") == 1.5),
    (["label=critical"], lambda r: r.get("label") == "critical"),
    (["label=none"], lambda r: r.get("label") is None),
    # AND across repeated flags, and the last layer
    (["activation=tanh", "sigma_w=1.5"], lambda r: r.get("sigma_w") == 1.5),
    (
        ["layer=last", "quantity=gradient"],
        lambda r: r["layer"] == 2 and r["quantity"] == "gradient",
    ),
    (["mean_sq>0", "n_finite>=8"], lambda r: (r["mean_sq"] or 0) > 0 and r["n_finite"] >= 8),
]


@pytest.mark.parametrize(("where", "keep"), CASES, ids=[" ".join(w) for w, _ in CASES])
def test_where_keeps_exactly_the_rows_it_describes(
    sweep: tuple[str, list[Row]], where: list[str], keep: Callable[[Row], bool]
) -> None:
    db, everything = sweep
    expected = [r for r in everything if keep(r)]
    assert expected  # each case keeps something
    args = [a for w in where for a in ("--where", w)]
    done = _results(db, *args)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert _keys(json.loads(done.stdout)) == _keys(expected)


def test_a_filter_that_matches_nothing_says_so_on_stderr(sweep: tuple[str, list[Row]]) -> None:
    db, _ = sweep
    done = _results(db, "--where", "activation=selu", "--where", "layer>=1")
    assert done.returncode == 0 and json.loads(done.stdout) == []
    assert done.stderr == "sweep 1: no row matches --where activation=selu --where 'layer>=1'\n"
    done = run_cli("results", "1", "--db", db, "--format", "jsonl", "--where", "sigma_w>9")
    assert done.returncode == 0 and done.stdout == ""
    assert done.stderr == "sweep 1: no row matches --where 'sigma_w>9'\n"
    done = run_cli("results", "1", "--db", db, "--format", "csv", "--where", "init=orthogonal")
    assert done.returncode == 0 and done.stdout.count("\n") == 1  # the header
    assert "no row matches --where init=orthogonal" in done.stderr


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("sigma_ww=1.5", "--where sigma_ww: unknown column; did you mean 'sigma_w'?"),
        ("actvation=relu", "--where actvation: unknown column; did you mean 'activation'?"),
        ("layer>deep", "--where 'layer>deep': > compares numbers; expected a number"),
        ("relu", "--where 'relu': expected COLUMN OP VALUE"),
    ],
)
def test_bad_filters_are_one_located_line_and_exit_2(
    sweep: tuple[str, list[Row]], where: str, message: str
) -> None:
    db, _ = sweep
    for fmt in ("json", "jsonl"):
        done = run_cli("results", "1", "--db", db, "--format", fmt, "--where", where)
        assert done.returncode == 2 and done.stdout == "", (fmt, done.stderr)
        assert done.stderr.startswith(f"initsweep: error: {message}"), done.stderr
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_python_api_and_streams_filter_alike(sweep: tuple[str, list[Row]]) -> None:
    from scheduler.query import results

    db, everything = sweep
    expected = _keys([r for r in everything if r["activation"] == "tanh" and r["layer"] >= 1])
    for where in (
        "activation=tanh layer>=1",
        ["activation=tanh", "layer>=1"],
        {"activation": "tanh", "layer": [1, 2]},
    ):
        frame = results(1, db=db, where=where)
        got = list(zip(frame["config_hash"], frame["layer"], frame["quantity"], strict=True))
        assert got == expected, where
    done = run_cli(
        "results", "1", "--db", db, "--format", "jsonl", "--where", "activation=tanh",
        "--where", "layer>=1",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert _keys([json.loads(line) for line in done.stdout.splitlines()]) == expected
