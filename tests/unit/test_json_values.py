"""`scheduler.store.json_values`: the values `json.loads` gives each text, decoded in batches."""

from __future__ import annotations

import json

import pytest

from scheduler.store import json_values


def test_the_values_of_each_text() -> None:
    texts = [json.dumps(v) for v in ({"a": 1.5, "b": [1, "x"]}, {}, {"c": None}, 7, "s", -0.0)]
    texts.append('{"nan": NaN, "big": 12345678901234567890}')
    assert json_values(texts) == [json.loads(t) for t in texts]
    assert json_values([]) == []


def test_texts_that_do_not_split_back_are_decoded_one_by_one() -> None:
    with pytest.raises(ValueError):
        json_values(['{"a": 1', '"b": 2}'])  # one value once joined: each alone is invalid
    with pytest.raises(ValueError):
        json_values(["1, 2"])
