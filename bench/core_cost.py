"""What the typed canonical core costs chat completions: the code before it against the code that completed it.

The comparison ``bench/dialects.py`` makes (chat now against the code before the core) no longer isolates the
core: later issues added features to every request. This one compares two fixed commits instead —

- ``before`` (``--before``, default ``7250679``): the last commit before the canonical core, with the OpenAI chat
  wire format as the internal currency;
- ``core`` (``--core``, default ``0390400``): the commit that completed it (canonical request and view,
  dialects as adapters, the lifecycle and one settle path, typed backend params, ``RequestHead``) and nothing
  of a later issue, with the one feature it had that ``before`` lacked switched off (the disclosure classifier,
  ``privacy.topics``; priced in §d);
- ``control``: a second gateway running ``before`` again — the method's own spread (process to process, run
  to run).

Method (as bench/dialects.py): one fast OpenAI-compatible upstream and ``hey`` share one core, the gateway under
test has the other; every gateway runs one worker with metering on, SQLite. Each round measures the three
gateways in a rotating order (``--seconds`` each, concurrency 16), so neither drift nor order favours one. Per
round: requests/s ratio and gateway CPU time per request (``/proc``) of ``core`` and ``control`` against the
``before`` of the same round; reported: the quartiles (median in the middle) of those per-round ratios, for
requests/s and for CPU per request (steadier on a VM than wall-clock rates). Raw rounds:
``bench/results/core_cost-<core commit>.json``.

With ``--instructions N`` it counts instead of timing: each gateway runs under ``valgrind --tool=callgrind``
(instrumentation switched on after a 300-request warm-up), ``hey`` sends N requests at the same concurrency, and
the figure is the whole process's user-space instructions per request — what a VM's neighbours cannot move
(``bench/metering_instructions.py`` has the method; it counts no system calls and no cache misses). Results:
``bench/results/core_instructions-<core commit>.json``. ``--before-gc 10000,20,20`` starts the code before (and the
control) with the collector threshold ``openmaas serve`` now sets: the typed core's cost like for like.
``--no-rollups`` also leaves out, in ``core``, the console's hourly and daily ledger rollups (a later issue's
feature, ``c6d8458``, kept on the ledger thread with every import and without a setting of their own, since the
console's and the admin API's figures are read from them): a ``sitecustomize`` makes ``rollups.sqlite_add`` a no-op.

Usage: python bench/core_cost.py [--rounds 9] [--seconds 5] [--before 7250679] [--core 0390400] [--off privacy.topics]
       [--instructions 1000] [--before-gc 10000,20,20] [--no-rollups]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, cores, free_port, python, start, stop, wait_http, warm_up
from metering_instructions import counted

from dialects import BODIES, measured

ROOT = Path(__file__).resolve().parents[1]


def quartiles(values: list[float]) -> tuple[float, float, float]:
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return round(q1, 3), round(q2, 3), round(q3, 3)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--before", default="7250679")
    parser.add_argument("--core", default="0390400")
    # what ``--core`` has and ``--before`` lacked, switched off (dotted settings); for a later commit also
    # metrics.enabled,server.access_log,mcp.endpoint,mcp.builtin_tools,console.enabled
    parser.add_argument("--off", default="privacy.topics")
    parser.add_argument("--instructions", type=int, default=0, help="count N requests under callgrind instead")
    # like for like: the code before started with the collector setting ``openmaas serve`` now applies
    parser.add_argument("--before-gc", default="", help="e.g. 10000,20,20: gc.set_threshold for before and control")
    parser.add_argument("--no-rollups", action="store_true", help="core without the console's ledger rollups")
    args = parser.parse_args()
    args.core = subprocess.run(  # a commit, not a moving name like HEAD: the results name what was measured
        ["git", "-C", str(ROOT), "rev-parse", "--short", args.core], check=True, capture_output=True, text=True
    ).stdout.strip()
    args.instructions -= args.instructions % args.concurrency  # hey sends requests // concurrency per worker
    gw_core, other = cores()
    tmp = Path(tempfile.mkdtemp(prefix="openmaas-bench-core-"))
    trees = {ref: tmp / f"tree-{ref}" for ref in (args.before, args.core)}
    for ref, tree in trees.items():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), ref], check=True)
    up_port = free_port()
    deployment = {"name": "bench", "backend": "openai_compat", "params": {"base_url": f"http://127.0.0.1:{up_port}/v1"}}
    base = {"server": {"log_level": "warning"}, "deployments": [deployment], "aliases": {}}
    core_config: dict[str, Any] = json.loads(json.dumps(base))
    for dotted in filter(None, args.off.split(",")):
        section, key = dotted.split(".")
        core_config.setdefault(section, {})[key] = False
    configs = {"before": base, "core": core_config}
    gateways = {"before": args.before, "core": args.core, "control": args.before}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    urls: dict[str, str] = {}
    rows: list[dict[str, Any]] = []
    upstream = start([python(), "bench/upstream.py", str(up_port)], other, tmp / "upstream.log")
    try:
        for name, ref in gateways.items():
            config = tmp / f"{name}.yaml"
            config.write_text(json.dumps(configs.get(name, base)))
            data = tmp / f"data-{name}"
            data.mkdir()
            port = free_port()
            cmd = [python(), "-m", "openmaas", "serve", "--config", str(config), "--port", str(port)]
            if args.instructions:
                (tmp / f"callgrind-{name}").mkdir()
                out = f"--callgrind-out-file={tmp}/callgrind-{name}/callgrind.out.%p"
                cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--collect-systime=no", out, *cmd]
            env = {"OPENMAAS_DATA_DIR": str(data), "PYTHONPATH": str(trees[ref] / "src")}
            site_code = ""  # a sitecustomize the interpreter imports at start-up
            if args.before_gc and name != "core":
                site_code = f"import gc\ngc.set_threshold({args.before_gc})\n"
            if args.no_rollups and name == "core":
                site_code = "import openmaas.store.rollups as r\nr.sqlite_add = lambda conn, rows: None\n"
            if site_code:
                site = tmp / f"site-{name}"
                site.mkdir()
                (site / "sitecustomize.py").write_text(site_code)
                env["PYTHONPATH"] += f":{site}"
            procs[name] = start(cmd, gw_core, tmp / f"{name}.log", env)
            urls[name] = f"http://127.0.0.1:{port}/v1/chat/completions"
        body = json.dumps(BODIES["chat"][1])
        for url in urls.values():
            wait_http(url.replace("/v1/chat/completions", "/readyz"), 600 if args.instructions else 120)
            warm_up(url, body, {}, 300 if args.instructions else 200)
        names = list(gateways)
        if args.instructions:
            for name in names:
                dumps = tmp / f"callgrind-{name}"
                per = counted(procs[name].pid, urls[name], body, {}, args.instructions, args.concurrency, other, dumps)
                rows.append({"gateway": name, "instructions_per_request": round(per)})
                print(json.dumps(rows[-1]), flush=True)
        else:
            for n in range(args.rounds):
                order = names[n % 3 :] + names[: n % 3]
                row: dict[str, Any] = {"round": n, "order": order}
                for name in order:
                    row[name] = measured(urls[name], body, procs[name].pid, args, other, {})
                print(json.dumps({k: (v["rps"], v["cpu_us_per_request"]) for k, v in row.items() if k in gateways}))
                rows.append(row)
    finally:
        for proc in [*procs.values(), upstream]:
            stop(proc)
        for tree in trees.values():
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)
    RESULTS.mkdir(exist_ok=True)
    if args.instructions:
        per_request = {r["gateway"]: r["instructions_per_request"] for r in rows}
        result = {
            "method": vars(args),
            "instructions_per_request": per_request,
            "ratio_to_before": {k: round(v / per_request["before"], 3) for k, v in per_request.items()},
        }
        tag = f"-before-gc-{args.before_gc.replace(',', '-')}" if args.before_gc else ""
        tag += "-no-rollups" if args.no_rollups else ""
        (RESULTS / f"core_instructions-{args.core}{tag}.json").write_text(json.dumps(result, indent=2))
        print(json.dumps(result, indent=2))
        return
    summary: dict[str, Any] = {"method": vars(args), "runs": rows}
    for name in ("core", "control"):
        rps = [r[name]["rps"] / r["before"]["rps"] for r in rows]
        cpu = [r["before"]["cpu_us_per_request"] / r[name]["cpu_us_per_request"] for r in rows]
        summary[name] = {
            "rps_ratio_quartiles": quartiles(rps),
            "cpu_ratio_quartiles": quartiles(cpu),  # before's CPU per request / this one's: < 1 = costlier
            "rounds_rps_ratio_at_least_0.97": sum(x >= 0.97 for x in rps),
            "median_cpu_us_per_request": statistics.median(r[name]["cpu_us_per_request"] for r in rows),
            "median_rps": statistics.median(r[name]["rps"] for r in rows),
        }
    summary["before"] = {
        "median_cpu_us_per_request": statistics.median(r["before"]["cpu_us_per_request"] for r in rows),
        "median_rps": statistics.median(r["before"]["rps"] for r in rows),
    }
    (RESULTS / f"core_cost-{args.core}.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: summary[k] for k in ("before", "core", "control")}, indent=2))


if __name__ == "__main__":
    main()
