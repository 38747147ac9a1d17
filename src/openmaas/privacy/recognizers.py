"""Presidio recognizers we add or adjust: Chinese resident ID (with its check digit),
Chinese mobile numbers, and an e-mail recognizer whose domain check never goes
to the network.

All are pattern recognizers: the analyzer runs with no NLP model (none can be
downloaded here, and none is needed for checksummed identifiers).
"""

from __future__ import annotations

import datetime as dt
import re
from functools import cache
from typing import Any, ClassVar

from presidio_analyzer import LocalRecognizer, Pattern, PatternRecognizer, RecognizerResult
from presidio_analyzer.predefined_recognizers import EmailRecognizer

ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK = "10X98765432"


def cn_id_check_digit(first17: str) -> str:
    """GB 11643-1999: ISO 7064 MOD 11-2 over the first 17 digits."""
    return ID_CHECK[sum(int(c) * w for c, w in zip(first17, ID_WEIGHTS, strict=True)) % 11]


def valid_cn_resident_id(text: str) -> bool:
    value = text.strip().upper()
    if len(value) != 18 or not value[:17].isdigit() or value[0] not in "123456789":
        return False
    try:
        born = dt.date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        return False
    if not dt.date(1900, 1, 1) <= born <= dt.date.today():
        return False
    return cn_id_check_digit(value[:17]) == value[17]


class ChineseResidentIdRecognizer(PatternRecognizer):
    """18-character PRC resident identity card number: area, birth date, sequence, check digit."""

    PATTERNS: ClassVar[list[Pattern]] = [
        Pattern(
            "CN resident ID", r"(?<![0-9A-Za-z])[1-9]\d{5}(?:19|20)\d{2}[01]\d[0-3]\d\d{3}[0-9Xx](?![0-9A-Za-z])", 0.3
        )
    ]

    def __init__(self) -> None:
        super().__init__(
            supported_entity="CN_RESIDENT_ID",
            patterns=self.PATTERNS,
            context=["身份证", "身份证号", "id card", "resident id"],
            supported_language="en",
            name="ChineseResidentIdRecognizer",
        )

    def validate_result(self, pattern_text: str) -> bool:
        return valid_cn_resident_id(pattern_text)


class ChineseMobileRecognizer(PatternRecognizer):
    """Mainland China mobile numbers: 1[3-9]X XXXX XXXX, optionally +86, spaces or dashes as 3-4-4."""

    PATTERNS: ClassVar[list[Pattern]] = [
        Pattern(
            "CN mobile",
            r"(?<![\d+])(?:(?:\+|00)86[\s-]?)?1[3-9]\d(?:\d{8}|[\s-]\d{4}[\s-]\d{4})(?!\d)",
            0.75,  # above a generic phone number's 0.7: the more specific entity wins an overlap
        )
    ]

    def __init__(self) -> None:
        super().__init__(
            supported_entity="CN_MOBILE",
            patterns=self.PATTERNS,
            context=["手机", "电话", "mobile", "phone"],
            supported_language="en",
            name="ChineseMobileRecognizer",
        )


@cache
def _offline_tld_extract():  # type: ignore[no-untyped-def]
    import tldextract

    # The bundled public-suffix snapshot only: never fetch the list over the network.
    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


class OfflineEmailRecognizer(EmailRecognizer):
    def validate_result(self, pattern_text: str) -> bool:
        return bool(_offline_tld_extract()(pattern_text).fqdn)


class PhoneNumberRecognizer(LocalRecognizer):
    """Phone numbers validated by libphonenumber, one parse per candidate.

    Presidio's own ``PhoneRecognizer`` runs libphonenumber's matcher over the text once
    per region (≈1.5 ms per number here); this parses each digit run directly: numbers
    written with ``+``/``00`` are parsed as international, others against ``regions``
    in order, and kept when valid for one of them.
    """

    CANDIDATE = re.compile(r"(?<![\w+])(?:\+|00)?\d[\d \-().]{5,}\d(?!\w)")
    REGIONS = ("US", "GB", "DE", "FR", "IN", "CA", "BR", "CN")

    def __init__(self, regions: tuple[str, ...] = REGIONS) -> None:
        self.regions = regions
        super().__init__(supported_entities=["PHONE_NUMBER"], supported_language="en", name="PhoneNumberRecognizer")

    def load(self) -> None:
        return None

    def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[RecognizerResult]:
        import phonenumbers

        results = []
        for m in self.CANDIDATE.finditer(text):
            raw = m.group()
            international = raw.startswith(("+", "00"))
            for region in (None,) if international else self.regions:
                try:
                    number = phonenumbers.parse("+" + raw[2:] if raw.startswith("00") else raw, region)
                except phonenumbers.NumberParseException:
                    continue
                if phonenumbers.is_valid_number(number):
                    score = 0.7 if international else 0.5
                    results.append(RecognizerResult("PHONE_NUMBER", m.start(), m.end(), score))
                    break
        return results
