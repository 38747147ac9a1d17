"""What the answers of an ``openmaas eval`` run look like, beyond being scored right or wrong.

    python bench/ttc_answers.py bench/results/ttc/results.json

Per task set and run: accuracy, the share of *repetitive* answers (some four-word sequence
three times or more — a small model looping), and the mean length in words. Written for
``ttc.enforce``: a grammar can make answers pass format checks while the text degrades, and
the checks alone would not show it.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any


def repetitive(text: str, n: int = 4, times: int = 3) -> bool:
    words = re.findall(r"\w+", text.lower())
    grams = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    return bool(grams) and max(grams.values()) >= times


def rows(result: dict[str, Any]) -> list[str]:
    out = ["| task set | run | tasks | accuracy | repetitive | words/answer |", "|---|---|---|---|---|---|"]
    for s in result["summaries"]:
        answers = [r.get("answer", "") for r in s["results"]]
        n = len(answers) or 1
        rep = sum(repetitive(a) for a in answers) / n
        words = sum(len(re.findall(r"\w+", a)) for a in answers) / n
        out.append(f"| {s['task_set']} | {s['run']} | {s['tasks']} | {s['accuracy']:.3f} | {rep:.2f} | {words:.0f} |")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, nargs="?", default=Path("bench/results/ttc/results.json"))
    args = parser.parse_args()
    print("\n".join(rows(json.loads(args.results.read_text()))))


if __name__ == "__main__":
    main()
