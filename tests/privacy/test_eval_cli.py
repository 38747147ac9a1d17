"""``openmaas privacy eval`` runs offline from the installed package and fails when a target is missed."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from openmaas.cli import main
from openmaas.privacy import training


def test_the_eval_reports_every_language_and_meets_the_targets(tmp_path: Path) -> None:
    out = tmp_path / "privacy.json"
    result = CliRunner().invoke(main, ["privacy", "eval", "--latency-runs", "5", "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())["report"]
    assert set(report) >= {"en", "zh"}
    for lang in ("en", "zh"):
        assert report[lang]["recall"] >= training.TARGET_RECALL
        assert report[lang]["fpr_general_and_everyday"] <= training.TARGET_FPR
    assert "recall HEALTH" in result.output and "latency" in result.output


def test_the_check_fails_when_a_target_is_missed() -> None:
    report = {
        "en": {"recall": 0.9, "fpr_general_and_everyday": 0.0},
        "zh": {"recall": 1.0, "fpr_general_and_everyday": 0.2},
    }
    assert training.check(report) == ["en: recall 0.9 < 0.95", "zh: false positives 0.2 > 0.05"]
