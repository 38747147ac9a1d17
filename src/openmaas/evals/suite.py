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
from openmaas.evals.runner import Evaluator, Prices, RunSpec, TaskResult, summarise
from openmaas.evals.tasks import Task, load


@dataclass
class Plan:
    task_sets: list[str]
    runs: list[str]
    count: int = 30
    seed: int = 0
    counts: dict[str, int] = field(default_factory=dict)  # task set → tasks, overriding ``count``
    # task set → the runs that may be the cascade's cheap step ("single", "best-of-N"): each one's threshold is
    # calibrated, and the cheapest step reaching the target is chosen
    calibrate: dict[str, list[str]] = field(default_factory=dict)
    target: float = 0.95
    skip: dict[str, list[str]] = field(default_factory=dict)  # task set → runs that make no sense there


BENCHMARKS = Plan(
    task_sets=["arithmetic", "instructions", "extraction"],
    runs=["single", "best-of-4", "best-of-8", "sc-5", "sc-9", "refine-2", "single+enforce", "best-of-8+enforce"],
    # sized so the whole suite runs in about 30 minutes on 2 cores (SmolLM2, 4 llama.cpp slots); 48 instruction
    # tasks because one task in 24 (0.04) is too coarse for the 2x best-of-8 target
    counts={"arithmetic": 16, "instructions": 48, "extraction": 20},
    # the cascade's cheap step: one greedy local answer or the local best-of-4/8, written freely or under the
    # request's verifier (+enforce) — chosen per task set by calibration (the cheapest that reaches the
    # target), then the strong model
    calibrate={
        "arithmetic": ["single", "best-of-4", "best-of-8"],
        **{
            name: ["single", "best-of-4", "best-of-8", "single+enforce", "best-of-4+enforce", "best-of-8+enforce"]
            for name in ("instructions", "extraction")
        },
    },
    # free text has no short final answer to vote on: self-consistency does not apply; arithmetic requests
    # carry no verifier, so there is nothing to enforce
    skip={"instructions": ["sc-5", "sc-9"], "arithmetic": ["single+enforce", "best-of-8+enforce"]},
)


def tasks_for(plan: Plan) -> dict[str, tuple[list[Task], list[Task]]]:
    """Per task set: the evaluation tasks, and a held-out set (next seed) for checking a calibration."""
    out = {}
    for name in plan.task_sets:
        count = plan.counts.get(name, plan.count)
        held = load(name, count, plan.seed + 1) if name in plan.calibrate else []
        out[name] = (load(name, count, plan.seed), held)
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
        done: dict[str, list[TaskResult]] = {}
        for run_name in plan.runs:
            if run_name in plan.skip.get(name, []):
                continue
            spec = RunSpec.parse(run_name)
            done[run_name] = await evaluator.run(spec, tasks, want_confidence=spec.kind == "single")
            summaries.append(summarise(run_name, name, done[run_name]))
            echo(report.table([summaries[-1]]).splitlines()[-1])
        if name in plan.calibrate:
            if strong is None:
                raise ValueError(
                    "calibration needs a strong model (--strong, or --strong-accuracy for the simulated one)"
                )
            strong_results = await evaluator.run(RunSpec.parse("strong"), tasks)
            summaries.append(summarise("strong", name, strong_results))
            echo(report.table([summaries[-1]]).splitlines()[-1])
            strong_accuracy = summaries[-1]["accuracy"]
            options: dict[str, tuple[RunSpec, list[calibrate.Point], calibrate.Point]] = {}
            for step in plan.calibrate[name]:
                run = RunSpec.parse(step)
                cheap = done.get(run.name) or await evaluator.run(run, tasks, want_confidence=True)
                points = calibrate.curve(await calibrate.signals(tasks, cheap), cheap, strong_results)
                options[run.name] = (run, points, calibrate.choose(points, strong_accuracy, plan.target))
            best = calibrate.pick({k: v[2] for k, v in options.items()}, strong_accuracy, plan.target)
            cheap_run, points, chosen = options[best]
            cal = calibrate.report(points, chosen, strong_accuracy, plan.target)
            cal["considered"] = {
                k: {"threshold": p.threshold, "accuracy": p.accuracy, "relative_cost": p.relative_cost}
                for k, (_, _, p) in options.items()
            }
            cal["cheap_step"] = cheap_run.name
            if held:
                label = f"cascade-{cheap_run.n}" + ("+enforce" if cheap_run.enforce else "")
                cascade = RunSpec(label, "cascade", cheap_run.n, chosen.threshold, cheap_run.enforce)
                cal["held_out"] = await held_out_check(evaluator, held, cascade, plan.seed + 1, name)
                summaries.append(
                    {**cal["held_out"]["summary"], "run": f"{cascade.name}@{cascade.threshold:.4g} (held-out)"}
                )
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
    evaluator: Evaluator, tasks: list[Task], run: RunSpec, seed: int, task_set: str
) -> dict[str, Any]:
    """The calibrated cascade, for real through the endpoint, on tasks the calibration never saw."""
    cascade = await evaluator.run(run, tasks)
    strong = await evaluator.run(RunSpec.parse("strong"), tasks)
    s_cascade, s_strong = summarise("cascade", "", cascade), summarise("strong", "", strong)
    return {
        "seed": seed,
        "threshold": run.threshold,
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
