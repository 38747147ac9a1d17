"""One evaluation: task sets × runs through the endpoint, optional cascade calibration, outputs.

``BENCHMARKS`` is the preset that produces the table and chart in ``docs/benchmarks.md``
(``openmaas eval --suite benchmarks``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai

from openmaas.evals import calibrate, report
from openmaas.evals.runner import Evaluator, Prices, RunSpec, summarise
from openmaas.evals.tasks import Task, load


@dataclass
class Plan:
    task_sets: list[str]
    runs: list[str]
    count: int = 30
    seed: int = 0
    calibrate: list[str] = field(default_factory=list)  # task sets whose cascade threshold is calibrated
    target: float = 0.95
    skip: dict[str, list[str]] = field(default_factory=dict)  # task set → runs that make no sense there


BENCHMARKS = Plan(
    task_sets=["arithmetic", "instructions", "extraction"],
    runs=["single", "best-of-4", "best-of-8", "sc-5", "sc-9", "refine-2"],
    count=30,
    calibrate=["arithmetic", "extraction"],
    # free text has no short final answer to vote on: self-consistency does not apply
    skip={"instructions": ["sc-5", "sc-9"]},
)


def tasks_for(plan: Plan) -> dict[str, tuple[list[Task], list[Task]]]:
    """Per task set: the evaluation tasks, and a held-out set (next seed) for checking a calibration."""
    out = {}
    for name in plan.task_sets:
        held = load(name, plan.count, plan.seed + 1) if name in plan.calibrate else []
        out[name] = (load(name, plan.count, plan.seed), held)
    return out


async def run_plan(
    plan: Plan,
    client: openai.AsyncOpenAI,
    model: str,
    prices: dict[str, tuple[float, float]],
    strong: str | None,
    concurrency: int,
    echo: Callable[[str], None],
) -> dict[str, Any]:
    evaluator = Evaluator(client, model, Prices(prices), strong, concurrency)
    sets = tasks_for(plan)
    summaries: list[dict[str, Any]] = []
    calibrations: dict[str, dict[str, Any]] = {}
    for name, (tasks, held) in sets.items():
        singles = None
        for run_name in plan.runs:
            if run_name in plan.skip.get(name, []):
                continue
            spec = RunSpec.parse(run_name)
            results = await evaluator.run(spec, tasks, want_confidence=spec.kind == "single")
            if spec.kind == "single":
                singles = results
            summaries.append(summarise(run_name, name, results))
            echo(report.table([summaries[-1]]).splitlines()[-1])
        if name in plan.calibrate:
            if strong is None:
                raise ValueError(
                    "calibration needs a strong model (--strong, or --strong-accuracy for the simulated one)"
                )
            single = RunSpec.parse("single")
            cheap = singles or await evaluator.run(single, tasks, want_confidence=True)
            strong_results = await evaluator.run(RunSpec.parse("strong"), tasks)
            summaries.append(summarise("strong", name, strong_results))
            echo(report.table([summaries[-1]]).splitlines()[-1])
            strong_accuracy = summaries[-1]["accuracy"]
            points = calibrate.curve(await calibrate.signals(tasks, cheap), cheap, strong_results)
            chosen = calibrate.choose(points, strong_accuracy, plan.target)
            cal = calibrate.report(points, chosen, strong_accuracy, plan.target)
            if held:
                cal["held_out"] = await held_out_check(evaluator, held, min(chosen.threshold, 1.0), plan.seed + 1, name)
                run = f"cascade@{min(chosen.threshold, 1.0):.4g}"
                summaries.append({**cal["held_out"]["summary"], "run": run + " (held-out)"})
                echo(report.table([summaries[-1]]).splitlines()[-1])
            calibrations[name] = cal
    return {
        "model": model,
        "strong": strong,
        "plan": plan.__dict__,
        "summaries": summaries,
        "calibrations": calibrations,
    }


async def held_out_check(
    evaluator: Evaluator, tasks: list[Task], threshold: float, seed: int, task_set: str
) -> dict[str, Any]:
    """The calibrated cascade, for real through the endpoint, on tasks the calibration never saw."""
    cascade = await evaluator.run(RunSpec("cascade", "cascade", 1, threshold), tasks)
    strong = await evaluator.run(RunSpec.parse("strong"), tasks)
    s_cascade, s_strong = summarise("cascade", "", cascade), summarise("strong", "", strong)
    return {
        "seed": seed,
        "threshold": threshold,
        "accuracy": s_cascade["accuracy"],
        "strong_accuracy": s_strong["accuracy"],
        "escalated": s_cascade["escalated"],
        "relative_cost": s_cascade["cost_usd_per_task"] / max(s_strong["cost_usd_per_task"], 1e-12),
        "summary": {**s_cascade, "task_set": task_set},
    }


def write(result: dict[str, Any], out: Path) -> str:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=2))
    text = report.table(result["summaries"])
    if result["calibrations"]:
        text += "\n" + report.cascade_table(result["calibrations"])
    (out / "table.md").write_text(text + "\n")
    report.chart(result["summaries"], result["calibrations"], out / "accuracy_vs_compute.png")
    return text
