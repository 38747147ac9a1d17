"""``openmaas`` command line: serve, models, chat, engine."""

from __future__ import annotations

import asyncio
import gc
import json
import sys
from pathlib import Path
from typing import Any

import click

from openmaas.settings import Settings, load_settings


def _settings(config: str | None) -> Settings:
    try:
        return load_settings(config)
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"cannot load settings: {exc}") from exc


@click.group()
@click.version_option(package_name="openmaas")
def main() -> None:
    """OpenMaaS: one OpenAI-compatible endpoint over local and cloud models."""


@main.command()
@click.option("--config", "-c", type=click.Path(exists=True, dir_okay=False), help="openmaas.yaml")
@click.option("--host", help="override server.host")
@click.option("--port", type=int, help="override server.port")
def serve(config: str | None, host: str | None, port: int | None) -> None:
    """Start the gateway (and the local engines it supervises)."""
    import uvicorn

    from openmaas.server import create_app

    settings = _settings(config)
    if host:
        settings.server.host = host
    if port is not None:
        settings.server.port = port
    from openmaas.observability.logs import configure

    configure(settings.server.log_level, settings.server.log_format)
    app = create_app(settings)
    # What is loaded by now (modules, settings, the app) lives as long as the process: frozen out of the
    # collector's generations, the full collections that request garbage triggers no longer walk it. And the
    # youngest generation is collected every 10,000 allocations instead of 700: a request's objects mostly die
    # by reference count before a collection would traverse them (measured: 1,397 k → 1,324 k instructions
    # per chat request, docs/benchmarks.md §g; the young generation holds a few MB at most).
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)
    uvicorn.run(
        app,
        host=settings.server.host,
        port=settings.server.port,
        loop="uvloop",
        http="httptools",
        log_level=settings.server.log_level,
        access_log=False,
        timeout_graceful_shutdown=10,
        proxy_headers=False,
        server_header=False,
    )


@main.command()
@click.option("--config", "-c", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def models(config: str | None, as_json: bool) -> None:
    """List the models (deployments and aliases) the config serves."""
    settings = _settings(config)
    rows: list[dict[str, Any]] = [
        {
            "name": d.name,
            "backend": d.backend,
            "locality": d.locality,
            "context": d.context_length,
            "price_in": d.pricing.input_per_mtok,
            "price_out": d.pricing.output_per_mtok,
            "alias_of": "",
        }
        for d in settings.deployments
    ]
    rows += [
        {
            "name": a,
            "backend": "",
            "locality": "",
            "context": "",
            "price_in": "",
            "price_out": "",
            "alias_of": ",".join(x.name for x in t.targets),
        }
        for a, t in settings.aliases.items()
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'MODEL':<24}{'BACKEND':<15}{'LOCALITY':<10}{'CONTEXT':<9}{'$/M IN':<8}{'$/M OUT':<8}ALIAS OF")
    for r in rows:
        click.echo(
            f"{r['name']:<24}{r['backend']:<15}{r['locality']:<10}{r['context']!s:<9}"
            f"{r['price_in']!s:<8}{r['price_out']!s:<8}{r['alias_of']}"
        )


@main.command()
@click.argument("question")
@click.option("--model", "-m", default="default", show_default=True)
@click.option("--base-url", default="http://127.0.0.1:8000/v1", show_default=True)
@click.option("--api-key", envvar="OPENMAAS_API_KEY", default="none")
@click.option("--max-tokens", type=int, default=256, show_default=True)
def chat(question: str, model: str, base_url: str, api_key: str, max_tokens: int) -> None:
    """Ask a running gateway one question; the answer streams to the terminal."""
    asyncio.run(_chat(question, model, base_url.rstrip("/"), api_key, max_tokens))


async def _chat(question: str, model: str, base_url: str, api_key: str, max_tokens: int) -> None:
    import aiohttp

    body = {
        "model": model,
        "stream": True,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": question}],
    }
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                base_url + "/chat/completions", json=body, headers={"authorization": f"Bearer {api_key}"}
            ) as resp,
        ):
            if resp.status >= 400:
                error = (await resp.json(content_type=None)).get("error", {})
                raise click.ClickException(f"HTTP {resp.status}: {error.get('message')}")
            async for line in resp.content:
                if not line.startswith(b"data: ") or line.strip() == b"data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    raise click.ClickException(chunk["error"].get("message", "stream failed"))
                for choice in chunk.get("choices", []):
                    sys.stdout.write(choice.get("delta", {}).get("content") or "")
                    sys.stdout.flush()
    except aiohttp.ClientConnectionError as exc:
        raise click.ClickException(f"cannot reach {base_url} (is `openmaas serve` running?)") from exc
    sys.stdout.write("\n")


@main.group()
def engine() -> None:
    """The local llama.cpp engine."""


@engine.command("build")
def engine_build() -> None:
    """Build llama-server from the registry sdist (cached; a no-op when built)."""
    from openmaas.engine import build

    click.echo(build.build())


@engine.command("tune")
@click.option("--config", "-c", default=None, help="Settings file (its data_dir receives engine-tune.json).")
@click.option("--load", default=1, show_default=True, help="Busy processes beside the engine in the loaded runs.")
@click.option("--runs", default=3, show_default=True, help="Decodes per setting and condition (median).")
@click.option("--model", default="builtin:smollm2-135m", show_default=True, help="The GGUF to measure with.")
def engine_tune(config: str | None, load: int, runs: int, model: str) -> None:
    """Measure decode speed per thread count, idle and beside a synthetic load; write the host's plan."""
    from openmaas.backends.llamacpp import engine_binary
    from openmaas.engine import threads, tune
    from openmaas.engine.models import resolve_model_path

    settings = _settings(config)
    report = tune.run(engine_binary(None), resolve_model_path(model), Path(settings.data_dir), load=load, runs=runs)
    for row in report["measured"]:
        click.echo(f"threads {row['threads']}: {row['idle']} tokens/s idle, {row['loaded']} beside {load} busy core(s)")
    plan = report["plan"]
    click.echo(f"plan: {plan['threads']} threads while calm, {plan['contended']} while contended")
    click.echo(f"written to {threads.tune_path(Path(settings.data_dir))}")


@engine.command("path")
def engine_path() -> None:
    """Print where the cached llama-server binary lives."""
    from openmaas.engine import build

    click.echo(build.binary_path())


def _register_admin() -> None:
    from openmaas import cli_admin

    cli_admin.register(main)
    from openmaas import cli_eval

    cli_eval.register(main)
    from openmaas import cli_kb

    cli_kb.register(main)
    from openmaas import cli_privacy

    cli_privacy.register(main)
    from openmaas import cli_agents

    cli_agents.register(main)


_register_admin()
