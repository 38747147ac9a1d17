"""Train and evaluate the disclosure classifier (``privacy.sensitivity``) from the committed data.

The data (``privacy/data/disclosures_*.tsv``, written for this project) holds disclosures per category and
language, general questions on the same topics, everyday prompts and hard negatives (fiction, news,
hypotheticals, professionals asking without personal data). Each example's split is fixed by a digest of
its text (a quarter goes to the held-out test set), so training never sees the test set, whoever runs it.
Training needs scikit-learn (the ``train`` extra); evaluation and the gateway do not.
"""

from __future__ import annotations

import gc
import gzip
import hashlib
import json
import statistics
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from openmaas.privacy.sensitivity import CATEGORIES, MODEL_FILE, NONE, Sensitivity, features

DATA_FILES = ("disclosures_en.tsv", "disclosures_zh.tsv")
OTHER_FILE = "disclosures_other.tsv"  # other languages: evaluated, never trained on
TARGET_RECALL = 0.95
TARGET_FPR = 0.05
TRAINING_RECALL = 0.97  # the threshold is chosen for this recall on cross-validated training predictions
C = 4.0


@dataclass(frozen=True)
class Example:
    lang: str
    kind: str  # disclosure | general | everyday | hard_negative
    label: str  # HEALTH | FINANCE | PRIVATE_LIFE | NONE
    text: str

    @property
    def split(self) -> str:
        digest = hashlib.blake2b(self.text.encode(), digest_size=4).digest()
        return "test" if digest[0] % 4 == 0 else "train"


def load(name: str) -> list[Example]:
    raw = resources.files("openmaas").joinpath("privacy", "data", name).read_text(encoding="utf-8")
    out = []
    for line in raw.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        lang, kind, label, text = line.split("\t")
        if label not in (*CATEGORIES, NONE) or (kind == "disclosure") != (label != NONE):
            raise ValueError(f"bad example in {name}: {line!r}")
        out.append(Example(lang, kind, label, text))
    return out


def examples() -> list[Example]:
    return [e for name in DATA_FILES for e in load(name)]


def train(data: list[Example]) -> dict[str, Any]:
    """The model file's content, from the training split of ``data``."""
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    rows = [e for e in data if e.split == "train"]
    x_dicts = [dict.fromkeys(features(e.text), 1) for e in rows]
    y = [e.label for e in rows]
    vectorizer = DictVectorizer()
    x = vectorizer.fit_transform(x_dicts)
    model = LogisticRegression(C=C, max_iter=5000, class_weight="balanced")
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    proba = cross_val_predict(model, x, y, cv=folds, method="predict_proba")
    model.fit(x, y)
    classes = [str(c) for c in model.classes_]
    order = [classes.index(NONE)] + [i for i, c in enumerate(classes) if c != NONE]
    none_col = classes.index(NONE)
    disclosed = sorted(1.0 - p[none_col] for p, e in zip(proba, rows, strict=True) if e.label != NONE)
    # the highest threshold that keeps TRAINING_RECALL of the (cross-validated) disclosures
    threshold = disclosed[int(len(disclosed) * (1 - TRAINING_RECALL))] if disclosed else 0.5
    names = vectorizer.get_feature_names_out()
    coef = model.coef_
    weights = {}
    for j, name in enumerate(names):
        w = [round(float(coef[i, j]), 4) for i in order]
        if any(abs(v) >= 1e-4 for v in w):
            weights[str(name)] = w
    return {
        "classes": [classes[i] for i in order],
        "intercept": [round(float(model.intercept_[i]), 4) for i in order],
        "threshold": round(float(threshold), 4),
        "weights": dict(sorted(weights.items())),
        "meta": {"trained_on": len(rows), "C": C, "training_recall": TRAINING_RECALL},
    }


def write(model: dict[str, Any], path: Path) -> None:
    # mtime=0: the same model gives the same bytes
    path.write_bytes(gzip.compress(json.dumps(model, ensure_ascii=False).encode(), mtime=0))


def default_path() -> Path:
    return Path(str(resources.files("openmaas").joinpath("privacy", "data", MODEL_FILE)))


def _rate(hits: int, total: int) -> float | None:
    return round(hits / total, 4) if total else None


def evaluate(model: Sensitivity, data: list[Example]) -> dict[str, Any]:
    """Recall on disclosures (any category flagged; and the right category), false-positive rates on
    general, everyday and hard-negative prompts, per language, on the held-out split."""
    report: dict[str, Any] = {}
    for lang in sorted({e.lang for e in data}):
        rows = [e for e in data if e.lang == lang]
        verdicts = [(e, model.judge(e.text)) for e in rows]
        out: dict[str, Any] = {"examples": len(rows)}
        disclosures = [(e, v) for e, v in verdicts if e.kind == "disclosure"]
        out["recall"] = _rate(sum(v.category is not None for _, v in disclosures), len(disclosures))
        out["category_accuracy"] = _rate(sum(v.category == e.label for e, v in disclosures), len(disclosures))
        for category in CATEGORIES:
            of = [v for e, v in disclosures if e.label == category]
            out[f"recall_{category}"] = _rate(sum(v.category is not None for v in of), len(of))
        for kind in ("general", "everyday", "hard_negative"):
            of = [v for e, v in verdicts if e.kind == kind]
            out[f"fpr_{kind}"] = _rate(sum(v.category is not None for v in of), len(of))
        plain = [v for e, v in verdicts if e.kind in ("general", "everyday")]
        out["fpr_general_and_everyday"] = _rate(sum(v.category is not None for v in plain), len(plain))
        out["missed"] = [e.text for e, v in disclosures if v.category is None]
        out["false_positives"] = [e.text for e, v in verdicts if e.kind != "disclosure" and v.category is not None]
        report[lang] = out
    return report


def latency(model: Sensitivity, tokens: int = 2000, runs: int = 200) -> dict[str, float]:
    """Milliseconds to judge a new ~``tokens``-token prompt, p50 and p99: English at 4 characters a token
    (8,000 characters), Chinese at one (2,000). As in the gateway: objects built so far are frozen out of the
    collector's passes (``gc.freeze``, which ``create_app`` does at start-up)."""
    gc.collect()
    gc.freeze()
    english = " ".join(e.text for e in load(DATA_FILES[0]))
    chinese = "".join(e.text for e in load(DATA_FILES[1]))
    out: dict[str, float] = {}
    for lang, text, chars_per_token in (("en", english, 4), ("zh", chinese, 1)):
        size = int(tokens * chars_per_token)
        body = (text * (size // len(text) + 1))[:size]
        wall, cpu = [], []
        for i in range(runs):
            prompt = f"[{i}] " + body  # a new text each time: no cache hit
            started, started_cpu = time.perf_counter(), time.thread_time()
            model.judge(prompt)
            cpu.append((time.thread_time() - started_cpu) * 1000)
            wall.append((time.perf_counter() - started) * 1000)
        for kind, times in (("", wall), ("_cpu", cpu)):  # CPU time leaves out what the VM steals
            times.sort()
            out[f"{lang}{kind}_p50_ms"] = round(statistics.median(times), 3)
            out[f"{lang}{kind}_p99_ms"] = round(times[int(len(times) * 0.99) - 1], 3)
    return out


def check(report: dict[str, Any]) -> list[str]:
    """What misses the targets (recall ≥ 0.95 on disclosures, ≤ 5 % false positives on general and everyday
    prompts) in English and Chinese."""
    problems = []
    for lang in ("en", "zh"):
        r = report[lang]
        if r["recall"] is None or r["recall"] < TARGET_RECALL:
            problems.append(f"{lang}: recall {r['recall']} < {TARGET_RECALL}")
        if r["fpr_general_and_everyday"] is None or r["fpr_general_and_everyday"] > TARGET_FPR:
            problems.append(f"{lang}: false positives {r['fpr_general_and_everyday']} > {TARGET_FPR}")
    return problems
