"""``openmaas eval`` end to end: a real server subprocess, the official SDK, a fake cheap model and
the simulated strong one; checks the outputs and that the calibrated cascade holds on held-out tasks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

CONFIG = {
    "deployments": [
        {
            "name": "tiny",
            "backend": "fake",
            "locality": "local",
            # wrong answers; the confident one (-0.05) and the unsure one (-2.0) alternate
            "params": {"replies": ["The answer is 1.", "The answer is 2."], "logprobs": [-0.05, -2.0]},
            "pricing": {"input_per_mtok": 0.05, "output_per_mtok": 0.1},
        }
    ],
    "aliases": {},
}


def test_eval_writes_table_json_and_chart_and_calibrates_the_cascade(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "openmaas",
        "eval",
        "arithmetic",
        "--count",
        "6",
        "--model",
        "tiny",
        "--config",
        str(config),
        "--runs",
        "single,best-of-2,sc-3",
        "--calibrate",
        "--cheap",
        "single,best-of-2",
        "--strong-accuracy",
        "1.0",
        "--out",
        str(out),
    ]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SIMULATED" in run.stdout
    assert (out / "accuracy_vs_compute.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| arithmetic | best-of-2 |" in (out / "table.md").read_text()
    result = json.loads((out / "results.json").read_text())
    assert result["simulated_strong"] is True
    by_run = {s["run"]: s for s in result["summaries"]}
    assert by_run["single"]["calls_per_task"] == 1 and by_run["best-of-2"]["calls_per_task"] == 2
    assert by_run["sc-3"]["calls_per_task"] == 3
    assert by_run["best-of-2"]["tokens_per_task"] > by_run["single"]["tokens_per_task"]
    assert by_run["strong"]["accuracy"] == 1.0
    assert by_run["single"]["cost_usd_per_task"] < by_run["strong"]["cost_usd_per_task"]
    cal = result["calibrations"]["arithmetic"]
    assert cal["strong_accuracy"] == 1.0
    # the cheap model is always wrong: reaching 95 % of the strong model means escalating everything,
    # and then the cheaper cheap step (one answer, not two) wins
    assert cal["chosen"]["escalated"] == 1.0
    assert set(cal["considered"]) == {"single", "best-of-2"} and cal["cheap_step"] == "single"
    assert cal["considered"]["single"]["relative_cost"] < cal["considered"]["best-of-2"]["relative_cost"]
    held = cal["held_out"]
    assert held["accuracy"] >= 0.95 * held["strong_accuracy"]
    assert held["escalated"] == 1.0
    # each task's record carries the gold-scored answer and what it cost
    first = by_run["single"]["results"][0]
    assert first["answer"] in ("The answer is 1.", "The answer is 2.")
    assert first["confidence"] is not None and first["cost_usd"] > 0


def test_eval_refuses_unknown_runs_and_missing_task_sets(tmp_path: Path) -> None:
    bad = subprocess.run(
        [sys.executable, "-m", "openmaas", "eval", "arithmetic", "--runs", "beam-3", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode != 0 and "beam-3" in bad.stderr
    none = subprocess.run([sys.executable, "-m", "openmaas", "eval"], capture_output=True, text=True, timeout=60)
    assert none.returncode != 0 and "task set" in none.stderr
