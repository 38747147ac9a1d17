"""Does a request *disclose* personal health, financial or private-life information? On the CPU, offline.

Identifiers are found by ``privacy.scanner``; this finds disclosures that carry none ("my HIV test came back
positive", "我信用卡欠了八万"). A small linear model (multinomial logistic regression, trained by
``privacy.training`` from the committed, labelled data in ``privacy/data``) scores *segments* of text:
each sentence, and each pair of adjacent sentences (a disclosure may span two: "My doctor called. The
biopsy is malignant."). A request is sensitive when any segment's probability of a category beats the
threshold chosen at training; the category is the likeliest one. The text is never kept or reported.

Features, the same at training and here (``features``): English words and word pairs; Chinese characters
and character pairs (no word segmentation needed; triples measured no better and cost a third more);
whether an amount of money appears; and
*cues crossed with topics* — a first-person marker ("my", "I've", "我", "我的") or a named confidant
("told me", "告诉我") together with a word from a category's lexicon — which a linear model cannot form
by itself, and which is what separates "I was diagnosed with diabetes" from "What are the symptoms of
diabetes?". Scoring is dictionary lookups and additions: no numpy, no scikit-learn at run time.
"""

from __future__ import annotations

import gzip
import itertools
import json
import re
import unicodedata
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from openmaas.privacy.memo import DigestMemo

CATEGORIES = ("HEALTH", "FINANCE", "PRIVATE_LIFE")
NONE = "NONE"
MODEL_FILE = "sensitivity.json.gz"

# a segment ends at . ! ? ; followed by a space (not inside "2.5"), at new lines, and at Chinese end marks
# and commas: Chinese chains clauses with "，" where English would end a sentence
_SENTENCE = re.compile(r"[.!?;](?:\s+|$)|[。！？；]+\s*|,(?=[\u3400-\u9fff])|\n+")  # "，" is "," after NFKC
_WORD = re.compile(r"[a-z][a-z0-9]*(?:'[a-z]+)?|\d+(?:[.,]\d+)*")
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]+")
_MONEY = re.compile(
    r"[$€£¥]\s?\d|\d\s?(?:k\b|dollars|euros?|pounds|bucks|块|元|万|千|亿)|\d[\d,.]*\s?(?:usd|eur|gbp|rmb|cny)\b"
)
_FIRST_PERSON = frozenset({"i", "i'm", "i've", "i'd", "i'll", "my", "me", "mine", "myself", "we", "we're", "our", "us"})
_FIRST_PERSON_ZH = re.compile("我|本人|俺")
_CONFIDANT = re.compile(r"\b(?:told me|confided|in confidence|privately|asked me not to)\b|告诉我|跟我说|私下")

# Topic lexicons: English word prefixes (matched at a word start) and Chinese substrings. They only feed
# the crossed cue features, which the model weighs: a word here is a hint, not a rule.
_EN: dict[str, str] = {
    "HEALTH": (
        "diagnos|doctor|tested|test results|positive|hiv|cancer|tumou?r|biopsy|malignant|chemo|diabet|insulin|"
        "depress|anxiety|panic|bipolar|ptsd|adhd|ocd|schizo|suicid|self-harm|cutting myself|pregnan|miscarriage|"
        "abortion|ivf|infertil|sperm|relapse|sober|addict|alcohol|drink|overdose|dose|medication|meds|pills|"
        "therapist|psychiatr|hospital|surgery|surgeon|blood|cholesterol|thyroid|seizure|epilep|stroke|dementia|"
        "hepatitis|herpes|std|chlamydia|gonorrh|syphilis|anorexi|bulimi|weigh|disorder|mri|scan|hormone|"
        "transgender|cocaine|weed|opioid|methadone|oxycodone|tramadol|insomnia|voices|breakdown|flare|crohn|"
        "celiac|melanoma|polyps|parkinson|autism|leukemia|pneumonia|eating|throwing up|counsellor|counselor"
    ),
    "FINANCE": (
        "salary|income|earn|paid|wage|owe|debt|loan|mortgage|credit|bank|savings|balance|bankrupt|default|"
        "overdraft|rent\\b|evict|losing|loss|crypto|stock|shares|portfolio|401k|pension|"
        "retirement|tax|irs|audit|bonus|inherit|runway|payroll|revenue|forecast|budget|afford|repossess|garnish|"
        "alimony|child support|gambl|betting|borrow|creditor|net worth|vest|tuition|deposit|laid off|cash flow|"
        "suppliers|checks|take home|per hour|an hour|a month|a year"
    ),
    "PRIVATE_LIFE": (
        "husband|wife|boyfriend|girlfriend|partner|my ex\\b|hit me|hits me|beat|abus|assault|rape|affair|"
        "cheat|gay|lesbian|bisexual|trans woman|trans man|come out|coming out|undocumented|visa|asylum|"
        "refugee|deport|green card|arrest|court|convicted|criminal|probation|prison|jail|sued|lawyer|divorc|"
        "custody|separat|stalk|blackmail|threaten|intimate|photos|controls|tracks my|reads my|checks my|warrant|"
        "record|fired|harass|restraining|sex|investigated|fraud|detention|dating|in love|kissed|forces me|"
        "locks me|illegal"
    ),
}
_ZH: dict[str, str] = {
    "HEALTH": (
        "诊|病|癌|医生|医院|阳性|检测|检查|药|抑郁|焦虑|怀孕|流产|人流|不孕|艾滋|乙肝|肝|糖尿|血压|血糖|胆固醇|"
        "手术|化疗|住院|失眠|自杀|轻生|自残|酒|戒|成瘾|复发|毫克|剂量|症|甲状腺|结节|活检|心脏|中风|痴呆|癫痫|"
        "发作|梅毒|疱疹|激素|大麻|催吐|体重|验孕|精子|试管|胰岛素|息肉|肠镜|精神|崩溃|打针|吸毒|可卡因"
    ),
    "FINANCE": (
        "工资|月薪|年薪|收入|欠|债|贷|信用卡|银行|存款|积蓄|余额|破产|逾期|断供|透支|房租|亏|炒币|股票|基金|"
        "税|奖金|遗产|留了|发不出|裁员|失业|借|还款|还不上|征信|高利贷|赌|退休金|公积金|首付|学费|担保|账上|"
        "窟窿|预测|披露|降薪|降了|赡养费|月供|到手|供应商|钱"
    ),
    "PRIVATE_LIFE": (
        "老公|老婆|丈夫|妻子|男朋友|女朋友|前任|前夫|前妻|打我|打了我|家暴|虐待|性侵|强奸|强迫|出轨|婚外情|同性恋|"
        "出柜|双性恋|女同|跨性别|签证|黑户|偷渡|遣返|难民|绿卡|被抓|拘留|开庭|案底|判|缓刑|坐牢|起诉|律师|离婚|"
        "分居|抚养权|跟踪|敲诈|威胁|私密|裸照|控制|查我|偷看|少管所|开除|性骚扰|调查|保护令|出省|交往|暗恋|接吻|"
        "婆婆|开放式|贩毒|卖毒品|酒驾"
    ),
}


def _lexicon(category: str) -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """(English word prefixes, English two-word phrases, Chinese 1–3 character strings) of a category."""
    english = [w.replace("\\b", "").replace("\\", "") for w in _EN[category].split("|")]
    prefixes = frozenset(w for w in english if " " not in w)
    phrases = frozenset(w for w in english if " " in w)
    chinese = frozenset(_ZH[category].split("|"))
    if any(len(w) > 3 for w in chinese) or any(len(w.split()) != 2 for w in phrases):
        raise ValueError(f"lexicon {category}: Chinese entries have 1-3 characters, English phrases two words")
    return prefixes, phrases, chinese


LEXICON = {category: _lexicon(category) for category in CATEGORIES}


def _heads() -> dict[str, tuple[tuple[str, str], ...]]:
    """English prefixes by their first three letters: one lookup per word finds its few candidates."""
    heads: dict[str, list[tuple[str, str]]] = {}
    for category, (prefixes, _, _) in LEXICON.items():
        for prefix in prefixes:
            if len(prefix) < 3:
                raise ValueError(f"lexicon prefix '{prefix}' is shorter than three letters")
            heads.setdefault(prefix[:3], []).append((prefix, category))
    return {head: tuple(entries) for head, entries in heads.items()}


_HEADS = _heads()  # read only
_DOSE = re.compile(r"\d\s?mg\b")  # "20mg": a dose
_DIGIT = re.compile(r"\d")


def _normal(text: str) -> str:
    return unicodedata.normalize("NFKC", text).lower()


def sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE.split(text) if s and not s.isspace()]


class _Cues(NamedTuple):
    first_person: bool
    confidant: bool
    money: bool
    topics: frozenset[str]


def _topics(words: list[str], feats: set[str], grams: set[str], text: str) -> frozenset[str]:
    found = set()
    heads = _HEADS
    for word in words:
        candidates = heads.get(word[:3])
        if candidates:
            for prefix, category in candidates:
                if word.startswith(prefix):
                    found.add(category)
    for category, (_, phrases, chinese) in LEXICON.items():
        if category not in found and (not feats.isdisjoint(phrases) or not grams.isdisjoint(chinese)):
            found.add(category)
    if "HEALTH" not in found and "mg" in text and _DOSE.search(text):
        found.add("HEALTH")
    return frozenset(found)


def _sentence_features(s: str, cjk: bool = True, confidant: bool = True) -> tuple[set[str], _Cues]:
    """Features and cues of one sentence, already ``_normal``. ``cjk``/``confidant``: False when the whole
    text was found to have no CJK characters / no confidant phrase (saves a search per sentence)."""
    words = _WORD.findall(s)
    feats = set(words)
    feats.update(map(" ".join, itertools.pairwise(words)))
    grams: set[str] = set()
    if cjk:
        for run in _CJK.findall(s):
            grams.update(run)
            grams.update(map("".join, itertools.pairwise(run)))
        feats |= grams
    first = not _FIRST_PERSON.isdisjoint(words) or (cjk and _FIRST_PERSON_ZH.search(s) is not None)
    money = _DIGIT.search(s) is not None and _MONEY.search(s) is not None
    told = confidant and _CONFIDANT.search(s) is not None
    return feats, _Cues(first, told, money, _topics(words, feats, grams, s))


def _crossed(cues: tuple[_Cues, ...]) -> frozenset[str]:
    first = any(c.first_person for c in cues)
    confidant = any(c.confidant for c in cues)
    money = any(c.money for c in cues)
    topics = frozenset().union(*(c.topics for c in cues))
    out = set()
    if first:
        out.add("x:FP")
    if money:
        out.add("x:MONEY")
        if first:
            out.add("x:FP&MONEY")
    for topic in topics:
        out.add("x:T&" + topic)
        if first:
            out.add("x:FP&" + topic)
        if confidant:
            out.add("x:CONF&" + topic)
    return frozenset(out)


def features(text: str) -> set[str]:
    """The features of one segment (what training sees for one example)."""
    feats: set[str] = set()
    cues = []
    normal = _normal(text)
    for sentence in sentences(normal) or [normal]:
        f, c = _sentence_features(sentence)
        feats |= f
        cues.append(c)
    return feats | _crossed(tuple(cues))


@dataclass(frozen=True)
class Verdict:
    category: str | None  # one of CATEGORIES, or None
    score: float  # the probability that the likeliest segment discloses something


class Sensitivity:
    """The trained model: ``classes`` (NONE first), ``intercept``, ``weights`` per feature, ``threshold``."""

    CACHE_MIN_CHARS = 256
    CACHE_ENTRIES = 4096
    MAX_SENTENCES = 400  # a longer text is judged on its first and last 200 sentences

    def __init__(self, model: dict[str, Any]) -> None:
        self.classes: list[str] = list(model["classes"])
        if self.classes[0] != NONE:
            raise ValueError("the model's first class must be NONE")
        self.intercept = np.asarray(model["intercept"], dtype=np.float64)
        weights: dict[str, list[float]] = model["weights"]
        self.index = {feature: row for row, feature in enumerate(weights)}
        matrix = np.asarray(list(weights.values()), dtype=np.float64).reshape(len(weights), len(self.classes))
        self.matrix = np.vstack([matrix, np.zeros((1, len(self.classes)))])  # the last row: nothing
        self.zero_row = len(weights)
        self.threshold = float(model["threshold"])
        self.meta: dict[str, Any] = model.get("meta", {})
        self._memo: DigestMemo[Verdict] = DigestMemo(self.CACHE_MIN_CHARS, self.CACHE_ENTRIES)
        self._cues: dict[_Cues, list[int]] = {}  # bounded: cues are a few booleans and topic sets
        self._pairs: dict[tuple[_Cues, _Cues], list[int] | None] = {}

    @classmethod
    def load(cls, path: Path | None = None) -> Sensitivity:
        """The model shipped in the package (``privacy/data/sensitivity.json.gz``), or the one at ``path``."""
        packaged = resources.files("openmaas").joinpath("privacy", "data", MODEL_FILE)
        raw = path.read_bytes() if path else packaged.read_bytes()
        return cls(json.loads(gzip.decompress(raw)))

    def _rows(self, feats: set[str] | frozenset[str]) -> list[int]:
        return [row for row in map(self.index.get, feats) if row is not None]

    def _cue_rows(self, cue: _Cues) -> list[int]:
        """The rows of one sentence's crossed cue features: few distinct cues, so remembered."""
        rows = self._cues.get(cue)
        if rows is None:
            rows = self._cues[cue] = self._rows(_crossed((cue,)))
        return rows

    def _pair_rows(self, first: _Cues, second: _Cues) -> list[int] | None:
        """The crossed rows of two adjacent sentences, or None when together they form no cue that either
        lacks alone (then the pair scores no higher than its sentences and is not a segment of its own)."""
        key = (first, second)
        if key in self._pairs:
            return self._pairs[key]
        pair = _crossed(key)
        rows = None if pair <= (_crossed((first,)) | _crossed((second,))) else self._rows(pair)
        self._pairs[key] = rows
        return rows

    def judge(self, text: str) -> Verdict:
        """The verdict on one text (a message, a system prompt, a tool result). Long texts are remembered by
        digest, never the text itself: a chat re-sends its whole history with every request."""
        return self._memo.get(text, self._judge)

    def _judge(self, text: str) -> Verdict:
        normal = _normal(text)
        parts = sentences(normal)
        if len(parts) > self.MAX_SENTENCES:
            half = self.MAX_SENTENCES // 2
            parts = parts[:half] + parts[-half:]
        cjk = _CJK.search(normal) is not None
        confidant = _CONFIDANT.search(normal) is not None
        singles = [_sentence_features(sentence, cjk, confidant) for sentence in parts]
        rows = [self._rows(feats) for feats, _ in singles]
        cues = [cue for _, cue in singles]
        if not parts:
            return Verdict(None, 0.0)
        # segments: every sentence, and a pair of adjacent ones where together they form a cue the
        # sentences lack alone ("My doctor called." + "The biopsy is malignant."); gathered into one row
        # list for one reduce (each segment ends with the zero row, so none is empty)
        starts: list[int] = []
        flat: list[int] = []
        last = len(cues) - 1
        for i, cue in enumerate(cues):
            starts.append(len(flat))
            flat += rows[i]
            flat += self._cue_rows(cue)
            flat.append(self.zero_row)
            if i < last:
                pair = self._pair_rows(cue, cues[i + 1])
                if pair is not None:
                    starts.append(len(flat))
                    flat += {*rows[i], *rows[i + 1]}  # a feature in both sentences counts once
                    flat += pair
                    flat.append(self.zero_row)
        z = np.add.reduceat(self.matrix[flat], starts, axis=0) + self.intercept
        z = np.exp(z - z.max(axis=1, keepdims=True))
        p = z / z.sum(axis=1, keepdims=True)
        disclosed = 1.0 - p[:, 0]
        best = int(disclosed.argmax())
        score = float(disclosed[best])
        category = self.classes[int(p[best, 1:].argmax()) + 1] if score >= self.threshold else None
        return Verdict(category, round(score, 4))

    def categories(self, texts: list[str]) -> tuple[str, ...]:
        """The categories any of ``texts`` discloses, sorted."""
        found = {v.category for v in map(self.judge, texts) if v.category is not None}
        return tuple(sorted(found))
