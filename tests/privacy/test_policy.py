"""Privacy policy specs: per-category rules, the strictest rule wins, and a disclosure is never 'masked'."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from openmaas.privacy.classify import PrivacyClass
from openmaas.privacy.policy import PolicySpec, apply, parse, valid
from openmaas.protocol.admin import KeyFields, TenantFields

HEALTH = PrivacyClass("sensitive", (), ("HEALTH",))
FINANCE = PrivacyClass("sensitive", (), ("FINANCE",))
EMAIL_AND_FINANCE = PrivacyClass("sensitive", ("EMAIL_ADDRESS",), ("FINANCE",))


def test_specs_parse_and_normalise() -> None:
    assert parse("mask") == PolicySpec("mask")
    assert parse("allow; health=local_only , FINANCE=allow") == PolicySpec(
        "allow", {"HEALTH": "local_only", "FINANCE": "allow"}
    )
    assert valid("allow;HEALTH=local_only") == "allow;HEALTH=local_only"
    for bad in ("sometimes", "allow;HEALTH", "allow;GOSSIP=local_only", "allow;HEALTH=maybe", "refuse", "x" * 300):
        with pytest.raises(ValueError):
            parse(bad)


def test_the_strictest_rule_applies_and_is_named() -> None:
    spec = parse("allow;HEALTH=local_only")
    assert apply(spec, HEALTH, {}).policy == "local_only"
    assert apply(spec, HEALTH, {}).rule == "HEALTH:local_only"
    assert apply(spec, FINANCE, {}).policy == "allow"
    assert apply(spec, PrivacyClass(), {}).policy == "allow"
    assert apply(parse("mask;FINANCE=allow"), EMAIL_AND_FINANCE, {}).policy == "mask"  # identifiers masked
    assert apply(parse("allow"), FINANCE, {"FINANCE": "refuse"}).rule == "FINANCE:refuse"  # the server's rule
    assert apply(parse("allow;FINANCE=allow"), FINANCE, {"FINANCE": "refuse"}).policy == "allow"  # the key's wins


def test_a_disclosure_under_mask_is_kept_local_or_refused_never_masked() -> None:
    assert apply(parse("mask"), HEALTH, {}).policy == "local_only"
    assert apply(parse("mask"), HEALTH, {}, topic_mask="refuse").policy == "refuse"
    assert apply(parse("allow;HEALTH=mask"), HEALTH, {}).policy == "local_only"


def test_the_admin_api_takes_and_checks_per_category_policies() -> None:
    assert TenantFields(privacy="mask;HEALTH=local_only").privacy == "mask;HEALTH=local_only"
    assert KeyFields(privacy="local_only").privacy == "local_only"
    with pytest.raises(ValidationError):
        KeyFields(privacy="allow;HEALTH=sometimes")
