"""``openmaas privacy train|eval``: the disclosure classifier from its committed data, and its figures."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.group("privacy")
def privacy() -> None:
    """The disclosure classifier (health, finance, private life)."""


@privacy.command("train")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="where to write (default: the package)")
def train(out: Path | None) -> None:
    """Train on the committed data's training split (needs scikit-learn: the dev extra)."""
    from openmaas.privacy import training

    model = training.train(training.examples())
    path = out or training.default_path()
    training.write(model, path)
    click.echo(f"{path}: {len(model['weights'])} features, threshold {model['threshold']}")


@privacy.command("eval")
@click.option("--model", "model_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="also write the report as JSON")
@click.option("--latency-runs", type=int, default=200, show_default=True)
@click.option("--check/--no-check", default=True, show_default=True, help="exit 1 when a target is missed")
def evaluate(model_path: Path | None, out: Path | None, latency_runs: int, check: bool) -> None:
    """Recall and false-positive rate on the held-out split, per language and category, and latency."""
    from openmaas.privacy import training
    from openmaas.privacy.sensitivity import CATEGORIES, Sensitivity

    model = Sensitivity.load(model_path)
    held_out = [e for e in training.examples() if e.split == "test"] + training.load(training.OTHER_FILE)
    report = training.evaluate(model, held_out)
    timing = training.latency(model, runs=latency_runs)
    click.echo(f"held-out examples: {len(held_out)}; threshold {model.threshold}")
    header = [
        "lang",
        "n",
        "recall",
        *(f"recall {c}" for c in CATEGORIES),
        "category",
        "FP general+everyday",
        "FP hard negatives",
    ]
    click.echo(" | ".join(header))
    for lang, r in report.items():
        row = [
            lang,
            r["examples"],
            r["recall"],
            *(r[f"recall_{c}"] for c in CATEGORIES),
            r["category_accuracy"],
            r["fpr_general_and_everyday"],
            r["fpr_hard_negative"],
        ]
        click.echo(" | ".join("-" if v is None else str(v) for v in row))
    click.echo("latency of a new 2,000-token prompt (ms): " + ", ".join(f"{k} {v}" for k, v in timing.items()))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(
            json.dumps(
                {"report": report, "latency_ms": timing, "threshold": model.threshold}, indent=2, ensure_ascii=False
            )
        )
    problems = training.check(report)
    for problem in problems:
        click.echo(f"target missed: {problem}", err=True)
    if check and problems:
        raise SystemExit(1)


def register(main: click.Group) -> None:
    main.add_command(privacy)
