"""Settings of a llamacpp deployment: n-gram speculation's sizes, checked when the config loads."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from openmaas.backends.llamacpp_params import SpeculativeParams


def test_ngram_mod_drafts_short_by_default_and_sizes_are_passed_to_their_own_type() -> None:
    assert SpeculativeParams.model_validate("on").args() == [
        "--spec-type", "ngram-mod", "--spec-ngram-mod-n-match", "8",
        "--spec-ngram-mod-n-min", "4", "--spec-ngram-mod-n-max", "16",
    ]  # fmt: skip
    longer = SpeculativeParams.model_validate({"mode": "on", "n_max": 64}).args()
    assert longer[longer.index("--spec-ngram-mod-n-max") + 1] == "64"
    assert longer[longer.index("--spec-ngram-mod-n-match") + 1] == "8"
    simple = SpeculativeParams.model_validate({"mode": "on", "type": "ngram-simple", "size_n": 4}).args()
    assert simple == ["--spec-type", "ngram-simple", "--spec-ngram-simple-size-n", "4"]  # the engine's own others


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ({"type": "ngram-simple", "n_match": 4}, "n_match do not apply to speculative type 'ngram-simple'"),
        ({"size_m": 16}, "size_m do not apply to speculative type 'ngram-mod'"),
        ({"n_min": 32}, r"n_min \(32\) is above n_max \(16\)"),
    ],
)
def test_sizes_of_another_type_or_out_of_order_are_refused_at_load(given: dict[str, Any], says: str) -> None:
    # not an engine that dies on an unknown flag at start
    with pytest.raises(ValidationError, match=says):
        SpeculativeParams.model_validate({"mode": "on", **given})
