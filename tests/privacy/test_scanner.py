"""The privacy recognizers, table-driven: true positives and the look-alikes they must refuse."""

from __future__ import annotations

import pytest

from openmaas.privacy.recognizers import cn_id_check_digit, valid_cn_resident_id
from openmaas.privacy.scanner import Scanner


@pytest.fixture(scope="module")
def scanner() -> Scanner:
    return Scanner()


def found(scanner: Scanner, text: str) -> set[tuple[str, str]]:
    return {(f.entity, text[f.start : f.end]) for f in scanner.scan(text)}


CASES = [
    # (text, entity, value or None when it must NOT be found)
    ("card 4111 1111 1111 1111 on file", "CREDIT_CARD", "4111 1111 1111 1111"),
    ("card 4111 1111 1111 1112 on file", "CREDIT_CARD", None),  # Luhn fails
    ("pay to DE89370400440532013000 please", "IBAN_CODE", "DE89370400440532013000"),
    ("pay to DE89370400440532013001 please", "IBAN_CODE", None),  # mod-97 fails
    ("IBAN: GB82 WEST 1234 5698 7654 32, thanks", "IBAN_CODE", "GB82 WEST 1234 5698 7654 32"),  # letters inside
    ("IBAN DE89 3704 0044 0532 0130 00.", "IBAN_CODE", "DE89 3704 0044 0532 0130 00"),
    ("write to jane.doe@example.com today", "EMAIL_ADDRESS", "jane.doe@example.com"),
    ("the decorator @property.setter is fine", "EMAIL_ADDRESS", None),
    ("call +1 415 555 2671 now", "PHONE_NUMBER", "+1 415 555 2671"),
    ("the order total was 1234567 units", "PHONE_NUMBER", None),
    ("server 192.168.10.7 is down", "IP_ADDRESS", "192.168.10.7"),
    ("version 999.999.999.999 shipped", "IP_ADDRESS", None),
    ("身份证号 11010519491231002X 已登记", "CN_RESIDENT_ID", "11010519491231002X"),
    ("身份证号 110105194912310021 已登记", "CN_RESIDENT_ID", None),  # wrong check digit
    ("id 110105194913310028 here", "CN_RESIDENT_ID", None),  # month 13
    ("手机13800138000联系我", "CN_MOBILE", "13800138000"),
    ("手机 +86 139-1234-5678 联系", "CN_MOBILE", "+86 139-1234-5678"),
    ("number 12800138000 is not a mobile", "CN_MOBILE", None),  # 12x is no mobile prefix
    ("tel:+8613800138000", "CN_MOBILE", "+8613800138000"),
    ("my key AKIAIOSFODNN7EXAMPLE leaked", "SECRET_AWS_ACCESS_KEY", "AKIAIOSFODNN7EXAMPLE"),
    (
        "token ghp_abcdefghijklmnopqrstuvwxyz0123456789",
        "SECRET_GITHUB_TOKEN",
        "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
    ),
    ("db_password = 'hunter2hunter2'", "SECRET_SECRET_KEYWORD", "hunter2hunter2"),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIEow", "SECRET_PRIVATE_KEY", "BEGIN RSA PRIVATE KEY"),
    ("the password policy needs twelve characters", "SECRET_SECRET_KEYWORD", None),
]


@pytest.mark.parametrize(("text", "entity", "value"), CASES)
def test_recognizers(scanner: Scanner, text: str, entity: str, value: str | None) -> None:
    hits = found(scanner, text)
    if value is None:
        assert not any(e == entity for e, _ in hits), hits
    else:
        assert (entity, value) in hits, hits


def test_one_value_is_one_entity(scanner: Scanner) -> None:
    # A card or a Chinese mobile number is not reported again as a generic phone number.
    text = "card 4111 1111 1111 1111, mobile 13800138000, office +44 20 7946 0958"
    assert found(scanner, text) == {
        ("CREDIT_CARD", "4111 1111 1111 1111"),
        ("CN_MOBILE", "13800138000"),
        ("PHONE_NUMBER", "+44 20 7946 0958"),
    }


def test_prose_without_identifiers_is_public(scanner: Scanner) -> None:
    text = "Summarise the attached meeting notes in three bullet points, in a friendly tone. " * 100
    assert scanner.scan(text) == []


def test_findings_in_a_long_prompt_keep_their_offsets(scanner: Scanner) -> None:
    filler = "lorem ipsum dolor sit amet " * 200
    text = filler + "mail bob@example.org and card 5555 5555 5555 4444 " + filler
    assert found(scanner, text) == {("EMAIL_ADDRESS", "bob@example.org"), ("CREDIT_CARD", "5555 5555 5555 4444")}


def test_chinese_id_check_digit_matches_the_standard() -> None:
    assert cn_id_check_digit("11010519491231002") == "X"
    assert valid_cn_resident_id("11010519491231002x")
    assert not valid_cn_resident_id("01010519491231002X")  # area codes start 1-8


def test_entity_selection_and_unknown_entities() -> None:
    only_email = Scanner(entities=["EMAIL_ADDRESS"])
    text = "a@example.com 4111 1111 1111 1111 AKIAIOSFODNN7EXAMPLE"
    assert {f.entity for f in only_email.scan(text)} == {"EMAIL_ADDRESS"}
    with pytest.raises(ValueError, match="unknown privacy entities"):
        Scanner(entities=["SHOE_SIZE"])


def test_long_texts_are_remembered_by_digest_not_by_content() -> None:
    scanner = Scanner()
    history = "earlier turn: " + "the meeting notes cover budgets and plans. " * 20 + "mail ann@example.com"
    first = scanner.scan(history)
    assert [history[f.start : f.end] for f in first] == ["ann@example.com"]
    first.clear()  # a caller changing its list does not change what is remembered
    assert [history[f.start : f.end] for f in scanner.scan(history)] == ["ann@example.com"]
    assert len(scanner._memo) == 1
    assert all(isinstance(k, bytes) and len(k) == 16 for k in scanner._memo._memo)  # a digest: the prompt is not kept
    changed = history.replace("ann@example.com", "no address here")
    assert scanner.scan(changed) == []  # a different text is scanned afresh
    for i in range(Scanner.CACHE_ENTRIES + 5):
        scanner.scan(f"{i} " + history)
    assert len(scanner._memo) == Scanner.CACHE_ENTRIES
