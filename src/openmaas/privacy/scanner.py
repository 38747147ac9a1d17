"""Find PII and credentials in text: Presidio pattern recognizers and detect-secrets plugins.

Presidio runs on recognizers alone: ``NoOpNlpEngine`` (no spaCy model is loaded
or downloaded) and a registry holding only pattern recognizers that validate
what they match (Luhn for cards, mod-97 for IBAN, the GB 11643 check digit for
Chinese resident IDs, libphonenumber for phone numbers, a public-suffix check
for e-mail domains, address parsing for IPs). Credentials come from
detect-secrets' regex plugins (AWS, GitHub, Slack, Stripe, OpenAI, JWT, private
keys, …) and its keyword plugin (``password = …``); its entropy plugins are
left out (every hash or id in a prompt would be a "secret"), as is its
verification step (it would call the provider's API).

Both libraries are slow over a whole prompt (≈13 ms and ≈30 ms for 9 KB), so
one cheap pass first finds *candidate* spans — digit runs, ``@``, long
credential-shaped tokens, secret keywords — and the recognizers only see those
spans with some context around them. Prose without digits or tokens costs one
regex pass.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from openmaas.privacy.memo import DigestMemo

PII_ENTITIES = (
    "CREDIT_CARD",
    "IBAN_CODE",
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "IP_ADDRESS",
    "US_SSN",
    "CN_RESIDENT_ID",
    "CN_MOBILE",
)
SECRET_ENTITY = "SECRET"  # findings are SECRET_<KIND>, e.g. SECRET_AWS_ACCESS_KEY

# Candidate finders: several simple patterns are much faster in ``re`` than one alternation.
_DIGITS = re.compile(r"\d[\d \t().\-]{4,}\d[Xx]?")  # phone, card, ID, IBAN digits, IPv4
_AT = re.compile(r"@[\w\-]+(?:\.[\w\-]+)+")  # e-mail (the local part is in the context before)
_IPV6 = re.compile(r":[0-9A-Fa-f]{0,4}:")
_TOKEN = re.compile(r"[A-Za-z0-9_+/=.\-]{16,}")  # credential-shaped runs, searched in long words only
_ASSIGN = re.compile(r"[:=]")
_KEYWORD_BEFORE = re.compile(r"(?i:pass|pwd|secret|api.?key|token|credential|auth)\w*[\"']?\s*$")
_PRIVATE_KEY = re.compile(r"-----BEGIN[A-Z ]*PRIVATE KEY")
_CONTEXT = 32  # characters either side of a candidate that may continue beyond it (IBAN, e-mail)
_EDGE = 6  # either side of a digit run that holds the whole value: its boundary, a "+86" prefix
_SEPARATOR = "\n\n"
_PHONE = "PHONE_NUMBER"


@dataclass(frozen=True, order=True)
class Finding:
    start: int
    end: int
    entity: str
    score: float


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _pii_candidates(text: str) -> dict[str, list[tuple[int, int]]]:
    """Spans worth showing each entity's recognizer (the candidate plus some context)."""
    spans: dict[str, list[tuple[int, int]]] = {}
    n = len(text)
    for m in _DIGITS.finditer(text):
        run = m.group()
        digits = sum(c.isdigit() for c in run)
        span = (max(0, m.start() - _EDGE), min(n, m.end() + _EDGE))
        kinds = []
        if 7 <= digits <= 15:
            spans.setdefault(_PHONE, []).append(m.span())  # the bare run: widened once it is still needed
            kinds += ["CN_MOBILE", "US_SSN"]
        if 12 <= digits <= 19:
            kinds.append("CREDIT_CARD")
        if digits in (17, 18):
            kinds.append("CN_RESIDENT_ID")
        if digits >= 8:  # an IBAN's letters (country, bank code) may sit before the digit run
            spans.setdefault("IBAN_CODE", []).append((max(0, m.start() - _CONTEXT), min(n, m.end() + _CONTEXT)))
        if run.count(".") >= 3:
            kinds.append("IP_ADDRESS")
        for kind in kinds:
            spans.setdefault(kind, []).append(span)
    for m in _AT.finditer(text):
        spans.setdefault("EMAIL_ADDRESS", []).append((max(0, m.start() - 2 * _CONTEXT), min(n, m.end() + 1)))
    for m in _IPV6.finditer(text):
        spans.setdefault("IP_ADDRESS", []).append((max(0, m.start() - 40), min(n, m.end() + 40)))
    return {kind: found if kind == _PHONE else _merge(found) for kind, found in spans.items()}


def _secret_candidates(text: str) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(spans for the regex plugins: credential-shaped tokens, private keys; spans for the
    keyword plugin: ``password = …``-style assignments)."""
    tokens: list[tuple[int, int]] = []
    n, at = len(text), 0
    for word in [w for w in text.split() if len(w) >= 16]:  # prose has few long words: locate only those
        at = text.find(word, at)
        for m in _TOKEN.finditer(word):
            tokens.append((max(0, at + m.start() - 16), at + m.end()))
        at += len(word)
    for m in _PRIVATE_KEY.finditer(text):
        tokens.append((m.start(), min(n, m.end() + 64)))
    assignments: list[tuple[int, int]] = []
    for m in _ASSIGN.finditer(text):
        i = m.start()
        if _KEYWORD_BEFORE.search(text, max(0, i - 40), i):
            assignments.append((max(0, i - 40), min(n, i + 96)))
    return _merge(tokens), _merge(assignments)


def _non_overlapping(findings: list[Finding]) -> list[Finding]:
    """Keep the strongest (then longest) of overlapping findings."""
    ranked = sorted(findings, key=lambda f: (-f.score, -(f.end - f.start), f.start))
    kept: list[Finding] = []
    for f in ranked:
        if all(f.end <= k.start or f.start >= k.end for k in kept):
            kept.append(f)
    return sorted(kept)


class Scanner:
    CACHE_MIN_CHARS = 512  # shorter texts cost less to scan than to look up
    CACHE_ENTRIES = 4096

    def __init__(self, entities: list[str] | None = None, threshold: float = 0.4, secrets: bool = True) -> None:
        unknown = set(entities or ()) - set(PII_ENTITIES) - {SECRET_ENTITY}
        if unknown:
            raise ValueError(f"unknown privacy entities: {sorted(unknown)}; known: {[*PII_ENTITIES, SECRET_ENTITY]}")
        self.entities = [e for e in PII_ENTITIES if entities is None or e in entities]
        self.threshold = threshold
        self.secrets = secrets and (entities is None or SECRET_ENTITY in entities)
        self._memo: DigestMemo[tuple[Finding, ...]] = DigestMemo(self.CACHE_MIN_CHARS, self.CACHE_ENTRIES)

    @cached_property
    def recognizers(self) -> dict[str, Any]:
        """One Presidio recognizer per entity, called directly on that entity's candidate spans.

        Not through ``AnalyzerEngine``: with no NLP model its context enhancer has no
        tokens to work on, yet it deep-copies every result (≈1 ms for a few findings),
        and it would run every recognizer over every candidate."""
        from presidio_analyzer.predefined_recognizers import (
            CreditCardRecognizer,
            IbanRecognizer,
            IpRecognizer,
            UsSsnRecognizer,
        )

        from openmaas.privacy.recognizers import (
            ChineseMobileRecognizer,
            ChineseResidentIdRecognizer,
            OfflineEmailRecognizer,
            PhoneNumberRecognizer,
        )

        logging.getLogger("presidio-analyzer").setLevel(logging.WARNING)  # it logs at INFO on every call
        every = (
            CreditCardRecognizer(),
            IbanRecognizer(),
            OfflineEmailRecognizer(),
            PhoneNumberRecognizer(),
            IpRecognizer(),
            UsSsnRecognizer(),
            ChineseResidentIdRecognizer(),
            ChineseMobileRecognizer(),
        )
        return {r.supported_entities[0]: r for r in every if r.supported_entities[0] in self.entities}

    @cached_property
    def secret_plugins(self) -> list[tuple[str, Any]]:
        from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
        from detect_secrets.plugins.base import RegexBasedDetector
        from detect_secrets.plugins.keyword import KeywordDetector

        plugins: list[tuple[str, Any]] = []
        cls: Any
        for kind, cls in sorted(get_mapping_from_secret_type_to_class().items()):
            if cls.__name__ == "IPPublicDetector":  # an IP is PII here, found by Presidio
                continue
            if issubclass(cls, RegexBasedDetector) or cls is KeywordDetector:
                name = "SECRET_" + re.sub(r"[^A-Z0-9]+", "_", kind.upper()).strip("_")
                plugins.append((name, cls()))
        return plugins

    def warm_up(self) -> None:
        """Import and build both libraries now (about two seconds), not on the first request."""
        self.scan("warm up: card 4111 1111 1111 1111, mail a@example.com, password = 'x1y2z3w4v5u6t7s8'")

    def scan(self, text: str) -> list[Finding]:
        """Findings in ``text``. Long texts are remembered by digest (never the text itself): a chat
        re-sends its whole history and an application its system prompt with every request."""
        return list(self._memo.get(text, self._scan_once))

    def _scan_once(self, text: str) -> tuple[Finding, ...]:
        return tuple(self._scan(text))

    def _scan(self, text: str) -> list[Finding]:
        findings: list[Finding] = []
        if self.entities:
            findings += self._pii(text)
        if self.secrets:
            findings += self._secrets(text)
        return _non_overlapping(findings)

    def _pii(self, text: str) -> list[Finding]:
        candidates = _pii_candidates(text)
        if not candidates:  # most prompts: no digit run, no @ — no recognizer to run
            return []
        found: list[Finding] = []
        for entity, recognizer in self.recognizers.items():
            if entity != _PHONE and entity in candidates:
                found += self._analyze(recognizer, entity, text, candidates[entity])
        runs = candidates.get(_PHONE)
        if runs and _PHONE in self.recognizers:
            # A run already found as a card, an ID or a Chinese mobile would lose to it anyway.
            n = len(text)
            spans = [
                (max(0, a - 4), min(n, b + 1)) for a, b in runs if not any(f.start <= a and b <= f.end for f in found)
            ]
            if spans:
                found += self._analyze(self.recognizers[_PHONE], _PHONE, text, _merge(spans))
        return found

    def _analyze(self, recognizer: Any, entity: str, text: str, spans: list[tuple[int, int]]) -> list[Finding]:
        """Run one recognizer once over its spans joined, and map what it finds back to ``text``."""
        parts, offsets, at = [], [], 0
        for start, end in spans:
            parts.append(text[start:end])
            offsets.append((at, at + end - start, start))
            at += end - start + len(_SEPARATOR)
        out = []
        for r in recognizer.analyze(_SEPARATOR.join(parts), [entity], None):
            if r.score < self.threshold:
                continue
            for lo, hi, origin in offsets:
                if lo <= r.start and r.end <= hi:
                    out.append(Finding(origin + r.start - lo, origin + r.end - lo, r.entity_type, float(r.score)))
                    break
        return out

    def _secrets(self, text: str) -> list[Finding]:
        tokens, assignments = _secret_candidates(text)
        if not tokens and not assignments:  # most prompts: no credential-shaped word, no assignment
            return []
        out = []
        for name, plugin in self.secret_plugins:
            if name == "SECRET_SECRET_KEYWORD":
                for start, end in assignments:
                    window = text[start:end]
                    for value in plugin.analyze_string(window):
                        at = window.find(value)
                        if value and at >= 0:
                            out.append(Finding(start + at, start + at + len(value), name, 1.0))
                continue
            for start, end in tokens:
                for regex in plugin.denylist:  # the whole match, not the plugin's capture group
                    for m in regex.finditer(text, start, end):
                        out.append(Finding(m.start(), m.end(), name, 1.0))
        return out
