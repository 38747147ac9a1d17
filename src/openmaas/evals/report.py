"""The evaluation's outputs: a Markdown table, a JSON file, and a PNG chart of accuracy versus compute."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def table(summaries: list[dict[str, Any]]) -> str:
    lines = [
        "| task set | run | tasks | accuracy | by level | calls/task | tokens/task | cost/task (µUSD) | escalated |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        levels = " / ".join(f"{v:.2f}" for v in s["by_level"].values())
        lines.append(
            f"| {s['task_set']} | {s['run']} | {s['tasks']} | **{s['accuracy']:.3f}** | {levels} | "
            f"{s['calls_per_task']:.1f} | {s['tokens_per_task']:.0f} | {s['cost_usd_per_task'] * 1e6:.2f} | "
            f"{s['escalated']:.0%}{' · ' + str(s['errors']) + ' errors' if s['errors'] else ''} |"
        )
    return "\n".join(lines)


def cascade_table(calibrations: dict[str, dict[str, Any]]) -> str:
    lines = []
    for task_set, cal in calibrations.items():
        lines.append(
            f"\n**{task_set}** — cheap step `{cal.get('cheap_step', 'single')}`; strong (simulated) accuracy"
            f" {cal['strong_accuracy']:.3f}; target"
            f" {cal['target']:.0%} of it; calibrated threshold {cal['threshold']:.4g}"
        )
        lines.append("\n| threshold | escalated | accuracy | cost vs strong |\n|---|---|---|---|")
        points = cal["curve"]
        step = max(1, len(points) // 12)
        shown = points[::step] + ([points[-1]] if (len(points) - 1) % step else [])
        chosen = cal["chosen"]
        if chosen not in shown:
            shown = sorted([*shown, chosen], key=lambda p: p["threshold"])
        for p in shown:
            mark = " ← calibrated" if p == chosen else ""
            share, cost = f"{p['escalated']:.0%}", f"{p['relative_cost']:.0%}"
            label = "all (strong only)" if p["threshold"] > 1 else f"{p['threshold']:.4g}"
            lines.append(f"| {label} | {share} | {p['accuracy']:.3f} | {cost}{mark} |")
        considered = cal.get("considered") or {}
        if len(considered) > 1:
            lines.append(
                "\nCheap steps considered (each at its calibrated threshold): "
                + "; ".join(
                    f"`{k}` {v['accuracy']:.3f} at {v['relative_cost']:.0%} of strong cost"
                    for k, v in considered.items()
                )
                + "."
            )
        reached = chosen["accuracy"] >= cal["target"] * cal["strong_accuracy"] - 1e-12
        if not reached:
            lines.append(
                f"\n**No cascade reaches the target on this set**: the cheap step's verifier cannot tell enough wrong"
                f" answers from right ones. The most accurate calibrated cascade is shown; the strong model alone"
                f" ({cal['strong_accuracy']:.3f}) is the better choice here."
            )
        held = cal.get("held_out")
        if held:
            lines.append(
                f"\nHeld-out check (seed {held['seed']}, cascade through the endpoint at that threshold): accuracy"
                f" {held['accuracy']:.3f} vs strong {held['strong_accuracy']:.3f}"
                f" ({held['accuracy'] / max(held['strong_accuracy'], 1e-9):.0%} of it), cost"
                f" {held['relative_cost']:.0%} of strong, {held['escalated']:.0%} escalated."
            )
    return "\n".join(lines)


def chart(summaries: list[dict[str, Any]], calibrations: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(dict.fromkeys(s["task_set"] for s in summaries))
    rows = 2 if calibrations else 1
    fig, axes = plt.subplots(rows, len(sets), figsize=(5.2 * len(sets), 4.2 * rows), squeeze=False)
    for col, task_set in enumerate(sets):
        ax = axes[0][col]
        for s in [s for s in summaries if s["task_set"] == task_set and s["run"] != "strong"]:
            x = max(s["tokens_per_task"], 1.0)
            ax.scatter(x, s["accuracy"], s=36, zorder=3)
            ax.annotate(s["run"], (x, s["accuracy"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("tokens per task (all calls)")
        ax.set_ylabel("accuracy")
        ax.set_ylim(-0.02, 1.05)
        ax.set_title(task_set)
        ax.grid(alpha=0.3)
        if rows == 2:
            cax = axes[1][col]
            cal = calibrations.get(task_set)
            if not cal:
                cax.axis("off")
                continue
            curve = cal["curve"]
            cax.plot([p["relative_cost"] for p in curve], [p["accuracy"] for p in curve], marker=".", lw=1)
            cax.scatter([cal["chosen"]["relative_cost"]], [cal["chosen"]["accuracy"]], s=30, color="red", zorder=3)
            cax.axhline(cal["strong_accuracy"], ls=":", lw=0.8, color="grey")
            cax.set_xlabel("cost versus the strong model alone")
            cax.set_ylabel("accuracy")
            cax.set_ylim(-0.02, 1.05)
            cax.set_title(f"{task_set}: cascade curve (SIMULATED strong model)", fontsize=9)
            cax.grid(alpha=0.3)
    fig.suptitle("Accuracy versus compute")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
