"""Inbound dialects: one package per wire API (load → canonical, render ← canonical, errors).

Each package exposes ``routes`` (thin Starlette routes) and is registered in ``server/app.py`` with
one line. Chat completions, legacy completions and embeddings are still served by ``server/routes.py``
straight from the OpenAI shape, which is the pipeline's execution payload (docs/architecture.md)."""
