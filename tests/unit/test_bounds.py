"""The bounded edges: the spec reader (YAML 1.2, no aliases, bounds), bounded rendering, URL
masking and checks, and the closed-form memory and work sums."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.database import broker_problem, database_url, redact
from scheduler.errors import OptionError, SpecError
from scheduler.estimate import flops_per_trial, random_numbers_per_trial
from scheduler.formatting import printable
from scheduler.spec.reader import MAX_NESTING, load_yaml
from scheduler.spec.values import received, render
from worker.contract import Scheme, SimConfig
from worker.errors import MemoryBudgetError
from worker.memory import (
    LAYER_CHUNK_BYTES,
    check_budget,
    chunk_bytes,
    kernel_sizes,
    sub_batch_size,
    trial_bytes,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("12", 12),
        ("-3", -3),
        ("+4", 4),
        ("0", 0),
        ("0x1F", 31),
        ("0o17", 15),
        ("1.5", 1.5),
        ("1e-3", 0.001),
        ("1.", 1.0),
        (".5", 0.5),
        (".inf", math.inf),
        ("-.Inf", -math.inf),
        ("~", None),
        ("null", None),
        ("", None),
        ("true", True),
        ("False", False),
        ("yes", "yes"),
        ("on", "on"),
        ("2024-01-01", "2024-01-01"),
        ("'1:30'", "1:30"),
        ("!!str 12", "12"),
        ("!!float 3", 3.0),
        ("he_normal", "he_normal"),
    ],
)
def test_plain_scalars_follow_the_yaml_1_2_core_schema(text: str, value: object) -> None:
    assert load_yaml(f"a: {text}\n", "S.yaml") == {"a": value}


def test_nan_is_a_float() -> None:
    assert math.isnan(load_yaml("a: .nan\n")["a"])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "grid: {depth: [1:30]}\n",
            "S.yaml:1:16: grid.depth[0]: expected a YAML 1.2 number, or quoted text. Received: "
            "1:30, a base-60 number in YAML 1.1 (90) but text in YAML 1.2; write 90 for the "
            "number, or '1:30' for text",
        ),
        ("a: 012\n", "octal in YAML 1.1 (10) but decimal in YAML 1.2 (12); write 12"),
        ("a: 0b101\n", "a binary number in YAML 1.1 (5) but text in YAML 1.2; write 5"),
        ("a: 1_000\n", "digit separators in YAML 1.1 but text in YAML 1.2; write 1000"),
        ("a: &x 1\nb: *x\n", "S.yaml:1:4: a: expected values written out: YAML anchors"),
        ("a: [1, *x]\n", "S.yaml:1:8: a[1]: expected values written out"),
        ("a: " + "9" * 101 + "\n", "a: expected a number of at most 100 digits"),
        ("a: 1\na: 2\n", "S.yaml:2:1: invalid YAML: duplicate key 'a'"),
        ("{[1]: 2}\n", "invalid YAML: found unhashable key (while constructing a mapping)"),
        ("a: !!python/name:os.system x\n", "could not determine a constructor for the tag"),
        ("a: 1\n---\nb: 2\n", "S.yaml:2:1: invalid YAML: but found another document"),
    ],
)
def test_refused_yaml_is_one_located_message(text: str, message: str) -> None:
    with pytest.raises(SpecError) as info:
        load_yaml(text, "S.yaml")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_nesting_and_list_length_are_bounded() -> None:
    deep = "a: " + "[" * MAX_NESTING + "]" * MAX_NESTING + "\n"  # the top mapping counts
    with pytest.raises(SpecError, match=r"S\.yaml:1:\d+: a\[0\].*nested at most 32 deep"):
        load_yaml(deep, "S.yaml")
    fits = MAX_NESTING - 1
    assert load_yaml("a: " + "[" * fits + "]" * fits + "\n") is not None
    with pytest.raises(SpecError, match="expected a list of at most 100,000 items"):
        load_yaml("a: [" + "1," * 100_001 + "]\n", "S.yaml")
    with pytest.raises(SpecError, match=r"S\.yaml:1:\d+: expected lists and mappings nested"):
        load_yaml("a: " + "[" * 5000 + "]" * 5000 + "\n", "S.yaml")  # libyaml's own limit first


def test_render_is_bounded_and_matches_the_truncated_repr() -> None:
    values: list[object] = [[1] * 200, {"k" * 100: 1}, "x" * 10_000, (1,), [[[]]], 10**100, "'"]
    for value in values:
        full = repr(value)
        expected = full if len(full) <= 80 else full[:77] + "..."
        assert render(value) == expected
    huge: list[object] = [1] * 9
    for _ in range(8):
        huge = [huge] * 9  # 9**9 values, shared: repr() would build billions of characters
    assert render(huge).endswith("...") and len(render(huge)) == 80
    assert received(True) == "true (a boolean)" and received(None) == "nothing (null)"
    assert "digits" in render(10**5000)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:p@ss/w#rd@h:5432/x", "postgresql://u:***@h:5432/x"),
        ("redis://:pa/ss@host:6379/0", "redis://:***@host:6379/0"),
        ("redis://:pw@host:badport/0", "redis://:***@host:badport/0"),
        ("postgresql://u@h/x?password=secret&a=1", "postgresql://u@h/x?password=***&a=1"),
        ("sqlite:////tmp/a@b.db", "sqlite:////tmp/a@b.db"),
        ("sqlite:///x.db", "sqlite:///x.db"),
        ("://", "://"),
        ("postgresql://u:p\x1b[31m@h/x", "postgresql://u:***@h/x"),
        ("x\x1b[2J://h", "x\\x1b[2J://h"),
    ],
)
def test_redact_masks_the_password_even_when_the_url_does_not_parse(url: str, shown: str) -> None:
    assert redact(url) == shown


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("postgresql://u:p@h:notaport/x", "port 'notaport'"),
        ("postgresql://u:p@h:99999/x", "port '99999'"),
        ("://", "Could not parse"),
        ("nosuchdialect://h/x", "nosuchdialect"),
        ("postgresql://u:p@ss@h/x", "unencoded '@'"),
    ],
)
def test_malformed_database_urls_are_option_errors(url: str, why: str) -> None:
    with pytest.raises(OptionError, match=r"^--db: expected a database URL") as info:
        database_url(url)
    assert why in str(info.value)
    assert "p@ss" not in str(info.value)


def test_good_database_urls_pass() -> None:
    assert database_url("sweeps.db") == "sqlite:///sweeps.db"
    assert database_url("postgresql://u:p%40ss@h:5432/x").startswith("postgresql+psycopg://")


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("redis://:pw@host:badport/0", "port 'badport'"),
        ("redis://:p/w@host:6379/0", "unencoded '/'"),
        ("redis://:p#w@host:6379/0", "unencoded '#'"),
        ("localhost:6379", "expected a scheme"),
        ("redis://localhost:6379/0", None),
        ("redis://:p%2Fw@[::1]:6379/0", None),
    ],
)
def test_broker_url_problems(url: str, why: str | None) -> None:
    problem = broker_problem(url)
    assert problem == why if why is None else why in (problem or "")


def test_printable_escapes_control_characters_only() -> None:
    assert printable("relu · d=3 é") == "relu · d=3 é"
    assert printable("a\x1b[31mb\n\u202e") == "a\\x1b[31mb\\n\\u202e"


# --- closed-form sums ------------------------------------------------------------------------


def config(**kw: object) -> SimConfig:
    base = SimConfig(
        init=Scheme("he_normal"), activation=Scheme("relu"), depth=3, width=100, input_dim=50
    )
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


@settings(max_examples=100, deadline=None)
@given(
    depth=st.integers(1, 60),
    width=st.integers(1, 300),
    input_dim=st.integers(1, 300),
    batch=st.integers(1, 8),
    init=st.sampled_from(["he_normal", "orthogonal", "glorot_uniform"]),
)
def test_closed_forms_equal_the_per_layer_sums(
    depth: int, width: int, input_dim: int, batch: int, init: str
) -> None:
    c = config(depth=depth, width=width, input_dim=input_dim, batch=batch, init=Scheme(init))
    fans = [c.fans(layer) for layer in range(1, depth + 1)]
    assert kernel_sizes(c) == (sum(i * o for i, o in fans), max(i * o for i, o in fans))
    flops = sum(4 * batch * i * o for i, o in fans)
    if init == "orthogonal":
        flops += sum(4 * max(i, o) * min(i, o) ** 2 - (4 * min(i, o) ** 3) // 3 for i, o in fans)
    assert flops_per_trial(c) == flops
    assert random_numbers_per_trial(c) >= sum(i * o for i, o in fans)


def test_huge_depth_costs_nothing_to_model() -> None:
    c = config(depth=10**9, width=8, input_dim=8)
    assert trial_bytes(c) > 400 << 30
    assert flops_per_trial(c) == 4 * 64 * 10**9
    with pytest.raises(MemoryBudgetError, match="over the memory budget"):
        sub_batch_size(c, 10)


def test_per_layer_bookkeeping_bounds_deep_narrow_chunks() -> None:
    """Depth 100,000 at width 8 ran at 3.2 GB against a 1 GiB budget: now refused, with why."""
    deep = config(depth=100_000, width=8, input_dim=8)
    assert trial_bytes(deep) < 1 << 30  # the kernels alone fit ...
    assert chunk_bytes(deep, 1) > 100_000 * LAYER_CHUNK_BYTES  # ... the bookkeeping does not
    with pytest.raises(MemoryBudgetError, match=r"per-layer bookkeeping alone needs 3\.1 GiB"):
        check_budget(deep, 1 << 30)
    check_budget(deep, 8 << 30)
    assert chunk_bytes(deep, sub_batch_size(deep, 100, 8 << 30)) <= 8 << 30


def test_kernels_dominate_at_ordinary_depths() -> None:
    """There the sub-batch is budget // trial_bytes, as before (hence the same bits): for every
    configuration at the default budget, and for wide ones at any budget. (A narrow, deep one
    at a budget that its trials fill exactly gets fewer: its bookkeeping would not fit.)"""
    wide = (config(), config(depth=50, width=512, input_dim=512), config(depth=100, width=512))
    narrow = (config(depth=10, width=64), config(depth=100, width=64), config(depth=30, width=8))
    for c in wide + narrow:
        per = trial_bytes(c)
        budgets = (1 << 30, per * 7 + 3, per * 300) if c in wide else (1 << 30,)
        for budget in budgets:
            for n in (7, 300, 10**6):
                assert sub_batch_size(c, n, budget) == min(n, 4096, budget // per)


@settings(max_examples=200, deadline=None)
@given(
    depth=st.integers(1, 3000),
    width=st.integers(1, 512),
    n=st.integers(1, 10**5),
    budget=st.integers(1 << 16, 1 << 33),
)
def test_a_chunk_that_passes_the_check_fits(depth: int, width: int, n: int, budget: int) -> None:
    c = config(depth=depth, width=width, input_dim=width)
    try:
        check_budget(c, budget)
        size = sub_batch_size(c, n, budget)
    except MemoryBudgetError:
        return
    assert chunk_bytes(c, size) <= budget
