"""scheduler.where: the one filter grammar (CLI `--where`, `query.results(where=)`, dashboard)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scheduler.errors import UserError
from scheduler.where import (
    Term,
    check_columns,
    describe,
    matches,
    numeric_mask,
    parse_where,
    row_matches,
    where_terms,
)

pytestmark = pytest.mark.unit


def _one(text: str) -> Term:
    (term,) = parse_where(text)
    return term


def test_parse_splits_terms_lists_and_keeps_scheme_labels_whole() -> None:
    term = _one("init=normal(mean=0, std=1),he_normal")
    assert (term.key, term.op, term.values) == ("init", "=", ("normal(mean=0, std=1)", "he_normal"))
    assert [(t.key, t.op, t.values) for t in parse_where("a != 1 and b<=2 c>3 d~x e >= 4")] == [
        ("a", "!=", ("1",)),
        ("b", "<=", ("2",)),
        ("c", ">", ("3",)),
        ("d", "~", ("x",)),
        ("e", ">=", ("4",)),
    ]
    assert _one("label='a b'").values == ("a b",)
    assert parse_where("") == parse_where("   ") == parse_where(None) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("relu", "expected COLUMN OP VALUE"),
        ("=relu", "expected COLUMN OP VALUE"),
        ("activation=", "expected a value after ="),
        ("layer>deep", "> compares numbers; expected a number"),
        ("width<=", "expected a value after <="),
        ("label='open", "no closing quotation mark"),
    ],
)
def test_malformed_terms_are_one_located_user_error(text: str, message: str) -> None:
    with pytest.raises(UserError, match=message) as info:
        parse_where(text, "--where")
    assert str(info.value).startswith("--where ") and "\n" not in str(info.value)


def test_where_terms_of_every_form_agree() -> None:
    want = [Term("activation", "=", ("relu", "tanh")), Term("sigma_w", "=", ("1.5",))]
    assert where_terms("activation=relu,tanh sigma_w=1.5") == want
    assert where_terms(["activation=relu,tanh", "sigma_w = 1.5"]) == want
    assert where_terms({"activation": ["relu", "tanh"], "sigma_w": 1.5}) == want
    assert where_terms({"activation": "relu,tanh", "sigma_w": "1.5"}) == want
    assert where_terms(want) == want and where_terms(None) == []
    with pytest.raises(UserError, match="column names as keys"):
        where_terms({"not a column": 1})


@pytest.mark.parametrize(
    ("op", "bound", "below", "at", "above"),
    [
        ("=", 1.5, False, True, False),
        ("!=", 1.5, True, False, True),
        ("<", 1.5, True, False, False),
        ("<=", 1.5, True, True, False),
        (">", 1.5, False, False, True),
        (">=", 1.5, False, True, True),
    ],
)
def test_every_comparison_at_and_around_its_bound(
    op: str, bound: float, below: bool, at: bool, above: bool
) -> None:
    term = _one(f"sigma_w{op}{bound}")
    assert [matches(term, v) for v in (math.nextafter(bound, 0), bound, 2.0)] == [below, at, above]
    assert [matches(term, v) for v in (1, 2)] == [below, above]  # ints compare as numbers


def test_numbers_compare_by_value_as_the_spec_wrote_them() -> None:
    assert matches(_one("sigma_w=1.5"), 1.5) and matches(_one("sigma_w=1.50"), 1.5)
    assert matches(_one("depth=10"), 10) and matches(_one("depth=1e1"), 10)
    assert matches(_one("bias_std=0"), 0.0) and not matches(_one("bias_std=0"), 1e-300)
    assert not matches(_one("depth=ten"), 10)


def test_lists_match_any_and_not_equal_matches_none_of_them() -> None:
    term = _one("activation=relu,tanh")
    assert [matches(term, a) for a in ("relu", "tanh", "linear")] == [True, True, False]
    term = _one("activation!=relu,tanh")
    assert [matches(term, a) for a in ("relu", "tanh", "linear")] == [False, False, True]
    assert matches(_one("width=8,16"), 16) and not matches(_one("width=8,16"), 12)


def test_schemes_match_by_name_and_by_the_parameters_written() -> None:
    label = "normal(mean=0, std=0.15)"
    for want in ("normal", "normal(std=0.15)", "normal(mean=0,std=0.15)", label, "normal(std=.15)"):
        assert matches(_one(f"init={want}"), label), want
    for want in ("normal(std=0.2)", "normal(sd=0.15)", "uniform", "norm", "he_normal"):
        assert not matches(_one(f"init={want}"), label), want
    vs = "variance_scaling(distribution=untruncated_normal, mode=fan_in, scale=2)"
    assert matches(_one("init=variance_scaling(scale=2.0,mode=fan_in)"), vs)
    assert not matches(_one("init=variance_scaling(mode=fan_out)"), vs)
    assert matches(_one("activation=leaky_relu"), "leaky_relu(alpha=0.2)")
    assert not matches(_one("activation=relu"), "leaky_relu(alpha=0.2)")
    assert matches(_one("init!=normal"), "he_normal") and not matches(_one("init!=normal"), label)


def test_missing_booleans_and_non_finite_values() -> None:
    assert matches(_one("mean=none"), None) and matches(_one("mean=null"), None)
    assert not matches(_one("mean=0"), None) and matches(_one("mean!=0"), None)
    for op in ("<", "<=", ">", ">="):
        for have in (None, math.nan, math.inf, -math.inf, "relu"):
            assert not matches(_one(f"mean{op}0"), have), (op, have)
    assert matches(_one("complete=true"), True) and matches(_one("complete=False"), False)
    assert not matches(_one("complete=1"), True)


def test_last_layer_and_contains() -> None:
    assert matches(_one("layer=last"), 6, last=6) and not matches(_one("layer=last"), 5, last=6)
    assert matches(_one("layer<last"), 5, last=6) and not matches(_one("layer=last"), 6)
    assert matches(_one("init~NORMAL"), "he_normal") and not matches(_one("init~uni"), None)
    with pytest.raises(UserError, match="text columns"):
        matches(_one("layer~3"), 3)


def test_row_matches_ands_terms_and_reads_absent_columns_as_missing() -> None:
    row = {"activation": "tanh", "sigma_w": 1.5, "layer": 3}
    assert row_matches(parse_where("activation=tanh sigma_w>=1.5 layer=last"), row, last=3)
    assert not row_matches(parse_where("activation=tanh sigma_w>1.5"), row)
    assert row_matches(parse_where("label=none"), row) and not row_matches(
        parse_where("label=x"), row
    )
    assert row_matches([], row)


@pytest.mark.parametrize(
    "text",
    [
        "x=1",
        "x!=1",
        "x=1,2,none",
        "x!=none",
        "x<1",
        "x<=1",
        "x>1",
        "x>=1",
        "x=last",
        "x>=last",
        "x=abc",
    ],
)
def test_numeric_mask_is_matches_over_a_column(text: str) -> None:
    rng = np.random.default_rng(0)
    values = rng.choice([0.0, 1.0, 2.0, np.nan, np.inf, -np.inf, 0.5], size=200)
    last = rng.choice([1.0, 2.0], size=200)
    term = _one(text)
    got = numeric_mask(term, values, last=last)

    def one(v: float, lv: float) -> bool:
        return matches(term, None if math.isnan(v) else v, last=lv)

    assert got.tolist() == [one(v, lv) for v, lv in zip(values, last, strict=True)]


def test_unknown_columns_get_a_did_you_mean_and_the_columns() -> None:
    columns = ["init", "activation", "sigma_w", "layer", "mean"]
    check_columns(parse_where("sigma_w=1 layer=2"), columns)
    with pytest.raises(UserError) as info:
        check_columns(parse_where("layer=1 sigma_ww=1.5"), columns)
    message = str(info.value)
    assert message.startswith("--where sigma_ww: unknown column; did you mean 'sigma_w'?")
    assert "columns: init, activation, sigma_w, layer, mean" in message
    with pytest.raises(UserError) as info:
        check_columns(parse_where("zzz=1"), columns)
    assert "did you mean" not in str(info.value)


def test_describe_repeats_the_command_line() -> None:
    terms = parse_where("activation=relu,tanh layer>=5 init='normal(std=1)'")
    assert (
        describe(terms)
        == "--where activation=relu,tanh --where 'layer>=5' --where 'init=normal(std=1)'"
    )
    assert describe([]) == ""
