"""Hot prefixes that survive restarts: an engine's slots saved to disk and restored when it starts.

``llama-server --slot-save-path DIR`` writes a slot's KV cache to a file (``POST /slots/{id}?action=save``)
and loads it back (``action=restore``): 1.4 k tokens are ~32 MB, saved in ~13 ms, restored in ~6 ms, and a
request after a restart then reuses them instead of recomputing its prompt (seconds on a CPU).

What is saved: a slot whose prompt is at least ``min_tokens`` long, after the engine served a request that
reused a long cached prefix (a prefix used more than once is hot), at most every ``interval`` seconds, and
when the engine stops. Busy slots are left alone. The folder is kept within ``budget_bytes`` (oldest files
go first). A file is only ever restored when its manifest entry matches it: its size and BLAKE2 digest
(the engine aborts on a truncated or corrupt file — measured — so it never sees one) and the engine's
fingerprint (model file, context per slot, binary, kernels): anything else is skipped with a warning. Slot files
hold the prompt in another form: they live in the data directory, never in logs.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger("openmaas.engine")


class EngineAPI(Protocol):
    async def get_json(self, path: str) -> Any: ...

    async def post_json(self, path: str, body: dict[str, Any], timeout: float = ...) -> tuple[int, Any]: ...


def digest(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def fingerprint(
    model: Path, binary: Path, context: int, batch_invariant: bool = False, attention: str | None = None
) -> str:
    """What a slot file depends on: the model file, the engine binary, the context per slot and the kernels (a KV
    cache computed by the fast kernels, restored into a batch-invariant engine, would answer its first request
    differently from the same prompt recomputed there; without flash attention the V cache is stored
    transposed)."""
    parts = []
    for path in (model, binary):
        try:
            st = path.stat()
            parts.append(f"{path.resolve()}:{st.st_size}:{int(st.st_mtime)}")
        except OSError:
            parts.append(str(path))
    parts.append(str(context))
    if batch_invariant:
        parts.append("batch-invariant")
    if attention is not None:
        parts.append(f"flash-attn-{attention}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


class SlotStore:
    def __init__(
        self,
        folder: Path,
        name: str,
        fingerprint: str,
        slots: int,
        *,
        budget_bytes: int = 1 << 30,
        min_tokens: int = 512,
        interval: float = 30.0,
    ) -> None:
        self.folder = folder
        self.name = name  # one engine process: "<deployment>-e<index>"
        self.fingerprint = fingerprint
        self.slots = slots
        self.budget_bytes = budget_bytes
        self.min_tokens = min_tokens
        self.interval = interval
        self.dirty = False  # a long cached prefix was reused since the last save
        self.last_save = 0.0
        self.folder.mkdir(parents=True, exist_ok=True)

    @property
    def manifest_path(self) -> Path:
        return self.folder / f"{self.name}.json"

    def _manifest(self) -> dict[str, Any]:
        try:
            data = json.loads(self.manifest_path.read_text())
            return data if isinstance(data, dict) and isinstance(data.get("files"), dict) else {"files": {}}
        except FileNotFoundError:
            return {"files": {}}
        except (OSError, ValueError) as exc:
            log.warning("slot manifest %s unreadable (%s); starting a new one", self.manifest_path.name, exc)
            return {"files": {}}

    def _write_manifest(self, manifest: dict[str, Any]) -> None:
        staging = self.manifest_path.with_suffix(".tmp")
        staging.write_text(json.dumps(manifest))
        staging.replace(self.manifest_path)

    def note_cached(self, cached_tokens: int) -> None:
        if cached_tokens >= self.min_tokens:
            self.dirty = True

    def due(self) -> bool:
        return self.dirty and time.monotonic() - self.last_save >= self.interval

    async def save(self, engine: EngineAPI) -> int:
        """Save every idle slot holding at least ``min_tokens``; returns how many were saved."""
        self.dirty, self.last_save = False, time.monotonic()
        try:
            slots = await engine.get_json("/slots")
        except Exception as exc:  # the engine may be restarting
            log.warning("engine %s: cannot list slots to save them (%s)", self.name, exc)
            return 0
        manifest = self._manifest()
        manifest["fingerprint"] = self.fingerprint
        saved = 0
        for slot in slots if isinstance(slots, list) else []:
            sid = slot.get("id")
            if not isinstance(sid, int) or slot.get("is_processing"):
                continue
            if int(slot.get("n_prompt_tokens") or 0) < self.min_tokens:
                continue
            filename = f"{self.name}-s{sid}.bin"
            status, body = await engine.post_json(f"/slots/{sid}?action=save", {"filename": filename})
            if status != 200 or not isinstance(body, dict):
                log.warning("engine %s: saving slot %s failed (%s)", self.name, sid, status)
                continue
            path = self.folder / filename
            tokens = int(body.get("n_saved") or 0)
            if tokens < self.min_tokens:
                continue
            entry = {
                "slot": sid,
                "tokens": tokens,
                "bytes": path.stat().st_size,
                "digest": await asyncio.to_thread(digest, path),
                "saved_at": time.time(),
            }
            manifest["files"][filename] = entry
            saved += 1
        self._write_manifest(manifest)
        self.enforce_budget()
        return saved

    def enforce_budget(self) -> None:
        """Delete the oldest slot files of the folder until it fits ``budget_bytes``; files no manifest
        names (left by a crash between the engine's write and ours) go too."""
        named: dict[str, float] = {}
        for manifest_path in self.folder.glob("*.json"):
            try:
                for filename, entry in json.loads(manifest_path.read_text()).get("files", {}).items():
                    named[filename] = float(entry.get("saved_at") or 0)
            except (OSError, ValueError, AttributeError):
                continue
        files = [(named.get(p.name, -1.0), p) for p in self.folder.glob("*.bin")]
        total = sum(p.stat().st_size for _, p in files)
        for _, path in sorted(files, key=lambda item: item[0]):
            if total <= self.budget_bytes and path.name in named:
                continue
            total -= path.stat().st_size
            path.unlink(missing_ok=True)
            log.info("slot file %s removed (disk budget or unnamed)", path.name)

    async def restore(self, engine: EngineAPI) -> int:
        """Restore this engine's saved slots; returns the tokens restored. Skips, with a warning, a file
        that is missing, changed since it was saved, or made for another model, binary or context."""
        manifest = self._manifest()
        if not manifest["files"]:
            return 0
        if manifest.get("fingerprint") != self.fingerprint:
            log.warning("engine %s: saved slots were made for another model or engine; skipped", self.name)
            return 0
        restored = 0
        for filename, entry in sorted(manifest["files"].items()):
            path = self.folder / filename
            sid = entry.get("slot")
            if not isinstance(sid, int) or not 0 <= sid < self.slots:
                continue
            try:
                intact = path.stat().st_size == entry.get("bytes")
                intact = intact and await asyncio.to_thread(digest, path) == entry.get("digest")
            except OSError:
                intact = False
            if not intact:
                log.warning("engine %s: slot file %s is missing or corrupt; skipped", self.name, filename)
                continue
            status, body = await engine.post_json(f"/slots/{sid}?action=restore", {"filename": filename})
            if status != 200 or not isinstance(body, dict):
                log.warning("engine %s: restoring %s failed (%s); skipped", self.name, filename, status)
                continue
            restored += int(body.get("n_restored") or 0)
        if restored:
            log.info("engine %s: restored %s cached tokens from disk", self.name, restored)
        return restored
