"""The disclosure classifier: table-driven per category and language, hard negatives, offline loading,
and the shipped model being what the committed script makes of the committed data."""

from __future__ import annotations

import pytest

from openmaas.privacy import training
from openmaas.privacy.sensitivity import CATEGORIES, Sensitivity, sentences


@pytest.fixture(scope="module")
def model() -> Sensitivity:
    return Sensitivity.load()  # from the installed package: no network, no model hub


# Written for these tests (not in the data set): what a user would type.
DISCLOSURES = [
    ("en", "HEALTH", "Last week my doctor confirmed I have hepatitis B. Will my employer's health check find out?"),
    ("en", "HEALTH", "I've been on 40mg of citalopram since my breakdown and I feel numb."),
    ("en", "HEALTH", "I'm pregnant with twins and I haven't told anyone at work."),
    ("en", "FINANCE", "I make $62,000 a year and I'm $48,000 in debt across four cards."),
    ("en", "FINANCE", "My savings are gone and I owe two months of rent."),
    ("en", "PRIVATE_LIFE", "My husband checks my phone every night and won't let me see my friends."),
    ("en", "PRIVATE_LIFE", "I'm gay and my family would disown me if they knew."),
    ("zh", "HEALTH", "我上周确诊了甲亢，医生让我吃药，要告诉公司吗？"),
    ("zh", "HEALTH", "我最近查出了抑郁症，每天都不想起床。"),
    ("zh", "FINANCE", "我月收入八千，欠了网贷十二万，每个月都在拆东墙补西墙。"),
    ("zh", "FINANCE", "我的工资已经三个月没发了，房贷也快还不上了。"),
    ("zh", "PRIVATE_LIFE", "我老公喝醉了就打我，我不知道该怎么办。"),
    ("zh", "PRIVATE_LIFE", "我是同性恋，家里人一直逼我结婚。"),
]
PUBLIC = [
    ("en", "What are the first symptoms of hepatitis B?"),
    ("en", "How does a debt snowball repayment plan work?"),
    ("en", "What legal protections exist for victims of domestic violence?"),
    ("en", "Write a Python script that renames all .jpeg files to .jpg."),
    ("en", "Plan a birthday party for a seven-year-old."),
    ("zh", "甲亢有哪些常见症状？"),
    ("zh", "网贷的年化利率一般是多少？"),
    ("zh", "帮我写一个把所有jpeg文件改名为jpg的Python脚本。"),
    ("zh", "推荐几本适合初学者的摄影书。"),
]


HARD_NEGATIVES = [  # about the same topics, but nobody discloses anything about themselves
    ("en", "The minister was diagnosed with lung cancer, the newspaper reported this morning. Summarise the article."),
    ("en", "Suppose an employee earns 50,000 a year and owes 10,000; compute the debt-to-income ratio."),
    ("en", "As a family doctor, what is the first-line treatment for hypertension in adults?"),
    ("en", "Write a short story about a fisherman who loses his boat and goes bankrupt."),
    ("en", "For a law class, explain how asylum claims are assessed in Canada."),
    ("zh", "假设一个人月收入一万，负债五万，他的负债收入比是多少？"),
    ("zh", "作为家庭医生，成人高血压的一线治疗是什么？"),
    ("zh", "写一个渔夫失去渔船最后破产的短篇故事。"),
]
# Known false positives (docs/privacy.md: hard negatives are the weak spot): first-person fiction, a clinician's
# "my patient", Chinese news naming a diagnosis. Strict: when the classifier learns them, this must be updated.
KNOWN_FALSE_POSITIVES = [
    ("en", "In my novel the heroine learns she is HIV positive; make the scene more moving."),
    ("en", "My patient is a 60-year-old with type 2 diabetes; which drug should I add to metformin?"),
    ("zh", "报道说那位部长确诊了肺癌，帮我总结这篇新闻。"),
    ("zh", "我的小说里女主角得知自己HIV阳性，帮我把这一段写得更感人。"),
]


@pytest.mark.parametrize(("lang", "text"), HARD_NEGATIVES)
def test_hard_negatives_stay_public(model: Sensitivity, lang: str, text: str) -> None:
    assert model.judge(text).category is None, (lang, text, model.judge(text))


@pytest.mark.xfail(strict=True, reason="known false positives of the disclosure classifier (docs/privacy.md)")
@pytest.mark.parametrize(("lang", "text"), KNOWN_FALSE_POSITIVES)
def test_known_false_positives(model: Sensitivity, lang: str, text: str) -> None:
    assert model.judge(text).category is None, (lang, text)


@pytest.mark.parametrize(("lang", "category", "text"), DISCLOSURES)
def test_a_disclosure_is_found_in_its_category(model: Sensitivity, lang: str, category: str, text: str) -> None:
    verdict = model.judge(text)
    assert verdict.category is not None, (lang, text, verdict)
    assert verdict.category == category, (lang, text, verdict)


@pytest.mark.parametrize(("lang", "text"), PUBLIC)
def test_general_questions_and_everyday_prompts_stay_public(model: Sensitivity, lang: str, text: str) -> None:
    assert model.judge(text).category is None, (lang, text, model.judge(text))


def test_a_disclosure_inside_a_long_prompt_is_found_and_the_verdict_says_nothing_of_the_text(
    model: Sensitivity,
) -> None:
    pasted = "The quarterly report lists sales by region and month, with notes on returns. " * 80
    text = pasted + "By the way, I was diagnosed with HIV last month and I'm scared. " + pasted
    verdict = model.judge(text)
    assert verdict.category == "HEALTH"
    assert "HIV" not in repr(verdict) and model.judge(pasted).category is None
    assert model.categories([pasted, "我老公喝醉了就打我。"]) == ("PRIVATE_LIFE",)


def test_a_disclosure_split_over_two_sentences_is_found(model: Sensitivity) -> None:
    assert len(sentences("My doctor called this morning. The biopsy is malignant.")) == 2
    assert model.judge("My doctor called this morning. The biopsy is malignant.").category == "HEALTH"


def test_the_held_out_split_is_never_trained_on() -> None:
    data = training.examples()
    test = {e.text for e in data if e.split == "test"}
    train = {e.text for e in data if e.split == "train"}
    assert test and train and not test & train
    assert 0.15 < len(test) / len(data) < 0.35
    assert len(data) >= 600 and {e.lang for e in data} == {"en", "zh"}
    for lang in ("en", "zh"):  # every kind of example, in both languages, on both sides of the split
        for kind in ("disclosure", "general", "everyday", "hard_negative"):
            assert {e.split for e in data if e.lang == lang and e.kind == kind} == {"train", "test"}
    shipped = Sensitivity.load()
    assert shipped.meta["trained_on"] == len(train)


def test_the_shipped_model_is_what_the_committed_script_makes_of_the_committed_data(model: Sensitivity) -> None:
    pytest.importorskip("sklearn", reason="training needs scikit-learn (the dev extra)")
    retrained = Sensitivity(training.train(training.examples()))
    held_out = [e.text for e in training.examples() if e.split == "test"]
    assert [retrained.judge(t).category for t in held_out] == [model.judge(t).category for t in held_out]
    assert set(retrained.classes) == {"NONE", *CATEGORIES}
