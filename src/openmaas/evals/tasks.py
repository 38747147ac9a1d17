"""Task sets for ``openmaas eval``: generated, seeded, each with a gold answer the strategies never see.

A task is a chat request (``messages``, ``max_tokens``), the verifier the *request itself* can
carry (its stated constraints, schema or examples — never the gold answer), and a scorer that
uses the gold answer. ``correct`` / ``wrong`` are what the simulated strong deployment answers.

* ``arithmetic`` — word problems with an exact integer answer, three difficulty levels
  (1: one step, 2: two steps, 3: three steps with a multiplication). The request carries no
  checker: self-consistency votes, best-of-N uses the model's own confidence (``logprob``).
* ``instructions`` — IFEval-style verifiable instructions: a short writing request plus 1–3
  constraints stated in words; the request's verifier is the ``checks`` list of the same
  constraints, and the score is whether all hold (as in IFEval, the constraints are the gold).
* ``extraction`` — a customer message → JSON with four fields; the request carries the JSON
  Schema (``json_schema`` verifier); the score compares every field with the gold record.
* ``humaneval`` — in :mod:`openmaas.evals.humaneval`.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from openmaas.evals import instruction_answers
from openmaas.ttc import checks
from openmaas.ttc.answers import final_answer, normalise
from openmaas.ttc.checks import strip_fences


@dataclass
class Task:
    id: str
    level: int
    messages: list[dict[str, Any]]
    max_tokens: int
    verifier: dict[str, Any] | None  # what the request carries for best-of / self-refine / cascade
    gold: Any
    scorer: Callable[[Task, str], bool] = field(repr=False)
    correct: str = ""
    wrong: str = ""

    def score(self, text: str) -> bool:
        return self.scorer(self, text)

    @property
    def question(self) -> str:
        return str(self.messages[-1]["content"])


# (a) arithmetic --------------------------------------------------------------------------------

NAMES = ["Sam", "Ana", "Leo", "Mia", "Ravi", "Yuki", "Omar", "Lena", "Tom", "Ines", "Kofi", "Zoe"]
ITEMS = ["apples", "marbles", "stickers", "pencils", "cookies", "stamps", "shells", "cards", "books", "coins"]
ARITHMETIC_SYSTEM = "You are a careful math tutor."
ARITHMETIC_FORMAT = "Solve it step by step. End with a line of the form: The answer is N."


def _arithmetic_problem(rng: random.Random, level: int) -> tuple[str, int]:
    name, other = rng.sample(NAMES, 2)
    item = rng.choice(ITEMS)
    start = rng.randint(3, 20)
    text, value = f"{name} has {start} {item}.", start
    if level >= 3:
        boxes, per = rng.randint(2, 5), rng.randint(2, 6)
        text = f"{name} buys {boxes} bags with {per} {item} in each bag."
        value = boxes * per
    steps = 1 if level == 1 else 2
    for i in range(steps):
        if rng.random() < 0.5 or value < 4:
            more = rng.randint(2, 15)
            text += (
                f" Then {name} gets {more} more {item} from {other}." if i else f" {other} gives {name} {more} more."
            )
            value += more
        else:
            less = rng.randint(1, value - 1)
            text += f" Then {name} gives {less} {item} to {other}." if i else f" {name} gives {less} to {other}."
            value -= less
    return f"{text} How many {item} does {name} have now?", value


def _arithmetic_score(task: Task, text: str) -> bool:
    return final_answer(text) == normalise(str(task.gold))


def arithmetic(count: int, seed: int = 0, levels: tuple[int, ...] = (1, 2, 3)) -> list[Task]:
    rng = random.Random(f"arithmetic:{seed}")
    tasks = []
    for i in range(count):
        level = levels[i % len(levels)]
        problem, answer = _arithmetic_problem(rng, level)
        tasks.append(
            Task(
                id=f"arith-{seed}-{i}",
                level=level,
                messages=[
                    {"role": "system", "content": ARITHMETIC_SYSTEM},
                    {"role": "user", "content": f"{problem}\n{ARITHMETIC_FORMAT}"},
                ],
                max_tokens=160,
                verifier=None,
                gold=answer,
                scorer=_arithmetic_score,
                correct=f"Working it out step by step gives {answer}.\nThe answer is {answer}.",
                wrong=f"Working it out step by step gives {answer + 1}.\nThe answer is {answer + 1}.",
            )
        )
    return tasks


# (b) verifiable instructions -------------------------------------------------------------------

TOPICS = [
    "the ocean",
    "a rainy day",
    "your favourite food",
    "a city at night",
    "learning to ride a bike",
    "the moon",
    "a good friend",
    "autumn leaves",
    "a busy market",
    "a quiet library",
    "coffee",
    "mountains",
    "a long train journey",
    "a small garden",
    "the first snow",
    "a lost cat",
]
KEYWORDS = ["blue", "happy", "light", "water", "green", "music", "warm", "home", "sun", "tree"]


def _instruction_checks(rng: random.Random, level: int) -> list[dict[str, Any]]:
    pool: list[Callable[[], dict[str, Any]]] = [
        lambda: {"kind": "max_words", "value": rng.choice([20, 30, 40])},
        lambda: {"kind": "min_words", "value": rng.choice([15, 25])},
        lambda: {"kind": "include", "value": [rng.choice(KEYWORDS)]},
        lambda: {"kind": "lowercase", "value": True},
        lambda: {"kind": "no_commas", "value": True},
        lambda: {"kind": "bullets", "value": rng.choice([2, 3])},
        lambda: {"kind": "ends_with", "value": rng.choice(["The end.", "Thank you."])},
        lambda: {"kind": "starts_with", "value": rng.choice(["Yes", "Today"])},
        lambda: {"kind": "title", "value": True},
        lambda: {"kind": "max_sentences", "value": rng.choice([2, 3])},
    ]
    chosen: dict[str, dict[str, Any]] = {}
    while len(chosen) < level:
        check = rng.choice(pool)()
        kinds = set(chosen) | {check["kind"]}
        if {"min_words", "max_words"} <= kinds or {"bullets", "quoted"} <= kinds:
            continue  # keep every task satisfiable
        chosen[check["kind"]] = check
    return list(chosen.values())


def _instructions_score(task: Task, text: str) -> bool:
    return all(checks.run(text, task.gold))


def instructions(count: int, seed: int = 0, levels: tuple[int, ...] = (1, 2, 3)) -> list[Task]:
    rng = random.Random(f"instructions:{seed}")
    tasks = []
    for i in range(count):
        level = levels[i % len(levels)]
        topic = rng.choice(TOPICS)
        constraints = _instruction_checks(rng, level)
        correct = instruction_answers.satisfying(topic, constraints)
        while correct is None:  # keep to constraint sets a rule-built answer can meet (for the strong model)
            constraints = _instruction_checks(rng, level)
            correct = instruction_answers.satisfying(topic, constraints)
        prompt = f"Write a short text about {topic}. " + " ".join(checks.describe(c) for c in constraints)
        tasks.append(
            Task(
                id=f"instr-{seed}-{i}",
                level=level,
                messages=[{"role": "user", "content": prompt}],
                max_tokens=96,
                verifier={"type": "checks", "checks": constraints},
                gold=constraints,
                scorer=_instructions_score,
                correct=correct,
                wrong=instruction_answers.violating(correct, constraints),
            )
        )
    return tasks


# (c) structured extraction ---------------------------------------------------------------------

PRODUCTS = ["chair", "lamp", "desk", "printer", "monitor", "kettle", "bicycle", "tent", "backpack", "heater"]
CITIES = ["Lyon", "Porto", "Dublin", "Oslo", "Krakow", "Seville", "Ghent", "Turin", "Bergen", "Malmo"]
PRIORITIES = ["low", "normal", "high"]
EXTRACTION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "product": {"type": "string"},
        "quantity": {"type": "integer"},
        "city": {"type": "string"},
        "priority": {"type": "string", "enum": PRIORITIES},
    },
    "required": ["product", "quantity", "city", "priority"],
}
_PRIORITY_WORDS = {"low": "there is no rush", "normal": "the usual delivery time is fine", "high": "it is urgent"}
_TEMPLATES = [
    "Hello, I would like to order {q} {p}s delivered to our office in {c}. {u}.",
    "Hi team. Please send {q} {p}s to {c}; {u}. Thanks!",
    "Good morning. Our shop in {c} needs {q} new {p}s, and {u}.",
    "We need {q} {p}s for the new site. Deliver them to {c}, {u}.",
]


EXTRACTION_SYSTEM = (
    "You extract orders from customer messages as JSON with the keys product (singular), quantity (integer),"
    " city and priority (low, normal or high). Reply with the JSON object only."
)
EXAMPLE_MESSAGE = "Please deliver 7 tables to our store in Vienna. There is no rush."
EXAMPLE_GOLD = {"product": "table", "quantity": 7, "city": "Vienna", "priority": "low"}


def _extraction_score(task: Task, text: str) -> bool:
    try:
        value = json.loads(strip_fences(text))
    except ValueError:
        return False
    if not isinstance(value, dict):
        return False
    gold = task.gold
    return (
        str(value.get("product", "")).strip().lower().rstrip("s") == gold["product"]
        and str(value.get("quantity", "")).strip() == str(gold["quantity"])
        and str(value.get("city", "")).strip().lower() == gold["city"].lower()
        and str(value.get("priority", "")).strip().lower() == gold["priority"]
    )


def extraction(count: int, seed: int = 0, levels: tuple[int, ...] = (1, 2)) -> list[Task]:
    """Level 1: the fields in a fixed order; level 2: any template, with a distracting number."""
    rng = random.Random(f"extraction:{seed}")
    tasks = []
    for i in range(count):
        level = levels[i % len(levels)]
        gold: dict[str, Any] = {
            "product": rng.choice(PRODUCTS),
            "quantity": rng.randint(2, 40),
            "city": rng.choice(CITIES),
            "priority": rng.choice(PRIORITIES),
        }
        template = _TEMPLATES[0] if level == 1 else rng.choice(_TEMPLATES[1:])
        message = template.format(
            q=gold["quantity"], p=gold["product"], c=gold["city"], u=_PRIORITY_WORDS[gold["priority"]]
        )
        message = message[0].upper() + message[1:]
        if level == 2:
            message += f" Our order number is {rng.randint(1000, 9999)}."
        prompt = f"Message: {message}"
        wrong = {**gold, "city": CITIES[(CITIES.index(gold["city"]) + 1) % len(CITIES)]}
        tasks.append(
            Task(
                id=f"extract-{seed}-{i}",
                level=level,
                messages=[
                    {"role": "system", "content": EXTRACTION_SYSTEM},
                    {"role": "user", "content": f"Message: {EXAMPLE_MESSAGE}"},
                    {"role": "assistant", "content": json.dumps(EXAMPLE_GOLD)},
                    {"role": "user", "content": prompt},
                ],
                max_tokens=64,
                verifier={"type": "json_schema", "schema": EXTRACTION_SCHEMA},
                gold=gold,
                scorer=_extraction_score,
                correct=json.dumps(gold),
                wrong=json.dumps(wrong),
            )
        )
    return tasks


TASK_SETS: dict[str, Callable[..., list[Task]]] = {
    "arithmetic": arithmetic,
    "instructions": instructions,
    "extraction": extraction,
}


def load(name: str, count: int, seed: int = 0) -> list[Task]:
    if name == "humaneval":
        from openmaas.evals.humaneval import humaneval

        return humaneval(count)
    if name not in TASK_SETS:
        raise ValueError(f"unknown task set {name!r}; known: {', '.join([*TASK_SETS, 'humaneval'])}")
    return TASK_SETS[name](count, seed)
