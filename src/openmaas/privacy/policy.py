"""Privacy policies: what a sensitive request may do, by what made it sensitive.

A policy spec is a default and optional per-category rules: ``"mask"``, or
``"mask;HEALTH=local_only,FINANCE=allow"`` (a hospital keeps health local and lets finance reach its own
cloud). The default applies to identifiers found by the scanner and to categories without a rule.

* ``allow`` — sent anywhere; ``mask`` — identifiers replaced before a cloud call; ``local_only`` — only
  local deployments; ``refuse`` (per category) — refused with a 403.
* A *disclosure* (``HEALTH``, ``FINANCE``, ``PRIVATE_LIFE``) cannot be masked: there is no value to
  replace. Where ``mask`` would apply to one, ``privacy.topic_mask`` decides: ``local_only`` (the default)
  or ``refuse``.
* Several findings: the strictest applies (allow < mask < local_only < refuse), and the decision names
  the rule that set it (``HEALTH:local_only``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from openmaas.privacy.classify import PrivacyClass
from openmaas.privacy.sensitivity import CATEGORIES

BASE_POLICIES = ("allow", "mask", "local_only")
CATEGORY_POLICIES = (*BASE_POLICIES, "refuse")
STRICTNESS = {"allow": 0, "unscanned": 0, "mask": 1, "local_only": 2, "refuse": 3}
MAX_SPEC = 200


@dataclass(frozen=True)
class PolicySpec:
    default: str = "allow"
    categories: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        rules = ",".join(f"{c}={p}" for c, p in sorted(self.categories.items()))
        return f"{self.default};{rules}" if rules else self.default


def parse(spec: str) -> PolicySpec:
    """``default[;CATEGORY=policy,…]``; a ValueError says what is wrong."""
    if len(spec) > MAX_SPEC:
        raise ValueError(f"a privacy policy is at most {MAX_SPEC} characters")
    default, _, rest = spec.strip().partition(";")
    if default not in BASE_POLICIES:
        raise ValueError(f"privacy policy '{default}' is not one of {', '.join(BASE_POLICIES)}")
    categories: dict[str, str] = {}
    for rule in filter(None, (r.strip() for r in rest.split(","))):
        category, eq, policy = rule.partition("=")
        category = category.strip().upper()
        policy = policy.strip()
        if not eq or category not in CATEGORIES or policy not in CATEGORY_POLICIES:
            raise ValueError(
                f"privacy rule '{rule}' must be CATEGORY=POLICY with CATEGORY one of {', '.join(CATEGORIES)} "
                f"and POLICY one of {', '.join(CATEGORY_POLICIES)}"
            )
        categories[category] = policy
    return PolicySpec(default, categories)


def valid(spec: str) -> str:
    """``spec`` normalised, for pydantic validators and the CLI."""
    return str(parse(spec))


class Applied(NamedTuple):
    policy: str  # the strictest that applies: allow | mask | local_only | refuse
    rule: str | None  # what set it, e.g. "HEALTH:local_only" or "identifiers:mask"


def apply(
    spec: PolicySpec, privacy: PrivacyClass, server_rules: Mapping[str, str], topic_mask: str = "local_only"
) -> Applied:
    """The policy for a request of this privacy class under ``spec`` (a key's or tenant's), with the
    server's per-category rules where the spec has none."""
    if not privacy.sensitive:
        return Applied(spec.default, None)
    found: list[tuple[str, str]] = []
    if privacy.entities:
        found.append(("identifiers", spec.default))
    for category in privacy.categories:
        policy = spec.categories.get(category) or server_rules.get(category) or spec.default
        found.append((category, topic_mask if policy == "mask" else policy))
    if not found:
        return Applied(spec.default, None)
    what, policy = max(found, key=lambda f: STRICTNESS[f[1]])
    return Applied(policy, f"{what}:{policy}")
