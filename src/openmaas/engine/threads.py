"""How many threads a local engine uses — per host, per deployment, and as the host's load changes.

On a 2-core VM (``docs/benchmarks.md``, thread policy) decode with all cores is fastest on an idle host
(118 tokens/s) and collapses beside one busy core (37; 1–1.2 with the OpenMP build this project used
before), while one thread keeps 76 under that load but gives only 79 idle. No fixed setting keeps both,
and the gateway can see its host's load, so a plan has two thread counts: ``threads`` while the host is
calm and ``contended`` while other processes (the gateway's own work included) use about a core; the
engine pool switches between them (``engine.adapt``) when an engine is idle, its hot slots saved and
restored around the switch. ``openmaas engine tune`` measures the host, idle and beside a synthetic
load, and writes both counts into ``<data_dir>/engine-tune.json``, which every local deployment without
explicit ``threads`` then uses.

``wait_policy``: how idle worker threads wait — ``active`` polls (``--poll 50``, the engine default),
``passive`` sleeps at once (``--poll 0``; ``OMP_WAIT_POLICY=PASSIVE`` for an OpenMP build given as
``binary``).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

log = logging.getLogger("openmaas.engine")

WaitPolicy = Literal["active", "passive"]
TUNE_FILE = "engine-tune.json"


@dataclass(frozen=True)
class ThreadPlan:
    threads: int  # decode, host calm
    threads_batch: int  # prompt processing
    wait_policy: WaitPolicy | None = None  # None: the engine's default (active)
    contended: int | None = None  # decode threads while other processes use about a core (None: never switch)
    source: str = "default"  # "default", "tuned", "params"

    def args(self, contended: bool = False) -> list[str]:
        threads = self.contended if contended and self.contended else self.threads
        args = ["--threads", str(threads), "--threads-batch", str(max(threads, self.threads_batch))]
        if self.wait_policy is not None:
            args += ["--poll", "0" if self.wait_policy == "passive" else "50"]
        return args

    def env(self) -> dict[str, str]:
        return {"OMP_WAIT_POLICY": self.wait_policy.upper()} if self.wait_policy else {}

    @property
    def adaptive(self) -> bool:
        return self.contended is not None and self.contended != self.threads

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_plan(host_cores: int) -> ThreadPlan:
    """Every core while the host is calm, one fewer while it is contended (measured reasoning in
    ``docs/architecture.md``, thread policy)."""
    return ThreadPlan(host_cores, host_cores, None, host_cores - 1 if host_cores > 1 else None, "default")


def tune_path(data_dir: Path) -> Path:
    return data_dir / TUNE_FILE


def load_tuned(data_dir: Path) -> ThreadPlan | None:
    """The plan ``openmaas engine tune`` wrote for this host, or None (no file, another host, unreadable)."""
    path = tune_path(data_dir)
    try:
        data = json.loads(path.read_text())
        if int(data.get("cores", 0)) != cores():
            log.warning("%s was measured on a host with %s cores; ignoring it", path, data.get("cores"))
            return None
        plan = data["plan"]
        wait = plan.get("wait_policy")
        contended = plan.get("contended")
        return ThreadPlan(
            int(plan["threads"]),
            int(plan["threads_batch"]),
            wait if wait in ("active", "passive") else None,
            int(contended) if contended else None,
            "tuned",
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring %s: %s", path, exc)
        return None


def resolve(
    threads: int | None,
    threads_batch: int | None,
    wait_policy: WaitPolicy | None,
    data_dir: Path,
    engines: int = 1,
    contended: int | None = None,
) -> ThreadPlan:
    """A deployment's plan: its own ``threads`` when set (adaptive only if it sets ``contended`` too), else
    the tuned plan, else the default. Every engine process of a pool gets the whole plan: the engines of
    one deployment are rarely busy together (a plain and a speculative one take different requests), and
    dividing the cores would cost the single busy one a third of its speed (2 → 1 threads: 118 → 76)."""
    if threads is not None:
        return ThreadPlan(threads, threads_batch or threads, wait_policy, contended, "params")
    base = load_tuned(data_dir) or default_plan(cores())
    return replace(
        base,
        threads_batch=threads_batch or base.threads_batch,
        wait_policy=wait_policy or base.wait_policy,
        contended=contended or base.contended,
    )
