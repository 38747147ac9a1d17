"""The eval report says plainly when no calibrated cascade reaches its target."""

from __future__ import annotations

from typing import Any

from openmaas.evals.report import cascade_table


def _calibration(accuracy: float) -> dict[str, Any]:
    chosen = {"threshold": 0.0, "escalated": 0.0, "accuracy": accuracy, "cost_usd": 1.0, "relative_cost": 0.15}
    everything = {"threshold": 1.000001, "escalated": 1.0, "accuracy": 0.9, "cost_usd": 8.0, "relative_cost": 1.15}
    return {
        "target": 0.95,
        "strong_accuracy": 0.9,
        "threshold": 0.0,
        "chosen": chosen,
        "curve": [chosen, everything],
        "cheap_step": "best-of-4",
    }


def test_a_cascade_short_of_its_target_is_called_so() -> None:
    short = cascade_table({"extraction": _calibration(0.55)})
    assert "No cascade reaches the target on this set" in short
    assert "| 0 | 0% | 0.550 | 15% ← calibrated |" in short
    assert "| all (strong only) | 100% | 0.900 | 115% |" in short
    reached = cascade_table({"instructions": _calibration(0.86)})  # 0.86 ≥ 0.95 × 0.9
    assert "No cascade reaches" not in reached
