"""Sentiment engines (VADER; transformers with a tiny local model) and the summary arithmetic."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from whisper_streaming.errors import SentimentError, UsageError
from whisper_streaming.analyzers.sentiment import DEFAULT_HF_MODEL, Sentiment, SentimentOptions, VaderEngine, analyze
from whisper_streaming.analyzers.sentiment_registry import create_sentiment_engine
from whisper_streaming.analyzers.sentiment_hf import map_label
from whisper_streaming.analyzers.sentiment_stats import SentimentSummary, SentimentTally

from tiny_classifier import build_tiny_classifier

POSITIVE_TEXT = "I love this service, thank you so much, you have been wonderful."
NEGATIVE_TEXT = "This is terrible. I hate it. It is the worst experience of my life."


@pytest.fixture(scope="module")
def vader() -> VaderEngine:
    return VaderEngine(SentimentOptions())


# --------------------------------------------------------------------------- VADER


@pytest.mark.parametrize(
    ("text", "label"),
    [
        (POSITIVE_TEXT, "positive"),
        ("The agent was very helpful and friendly. Great job!", "positive"),
        (NEGATIVE_TEXT, "negative"),
        ("I am angry, this is awful and useless.", "negative"),
        ("The meeting is on Tuesday at three.", "neutral"),
        ("The package arrived on Monday.", "neutral"),
    ],
)
def test_vader_labels_clear_sentences(vader: VaderEngine, text: str, label: str) -> None:
    s = analyze(vader, text, "en")
    assert s.label == label
    assert 0.0 <= s.score <= 1.0  # type: ignore[operator]
    if label != "neutral":
        assert s.score > 0.5  # type: ignore[operator]  # clearly polar sentences score high


def test_vader_score_formula(vader: VaderEngine) -> None:
    compound = vader._analyzer.polarity_scores(NEGATIVE_TEXT)["compound"]
    assert vader.classify(NEGATIVE_TEXT) == Sentiment("negative", -compound)
    neutral = vader.classify("The meeting is on Tuesday.")
    assert neutral == Sentiment("neutral", 1.0)  # compound 0: as far from polar as can be


def test_vader_threshold_is_configurable() -> None:
    text = "It was okay I guess, fine."  # mildly positive compound
    compound = VaderEngine(SentimentOptions())._analyzer.polarity_scores(text)["compound"]
    assert 0.05 <= compound < 0.9
    assert VaderEngine(SentimentOptions(neutral_threshold=0.05)).classify(text).label == "positive"
    strict = VaderEngine(SentimentOptions(neutral_threshold=0.9)).classify(text)
    assert strict == Sentiment("neutral", 1.0 - compound)


def test_unsupported_language_says_so_without_calling_the_engine(vader: VaderEngine) -> None:
    assert analyze(vader, "정말 최악이에요. 너무 싫어요.", "ko") == Sentiment("unsupported", None, "ko")
    assert analyze(vader, "terrible", "") == Sentiment("unsupported", None, "und")
    assert analyze(vader, "terrible", "EN").label == "negative"


def test_languages_option() -> None:
    assert SentimentOptions().default_languages() == {"en"}
    assert SentimentOptions(engine="transformers").default_languages() == {"en"}  # the SST-2 default
    assert SentimentOptions(engine="transformers", model="some/multilingual").default_languages() is None
    engine = VaderEngine(SentimentOptions(languages=("en", "ko")))
    assert analyze(engine, "최악", "ko").label == "neutral"  # allowed, though VADER knows no Korean


def test_sentiment_value_checks() -> None:
    for bad in [("happy", 0.5, None), ("positive", None, None), ("positive", 1.5, None), ("unsupported", 0.5, "ko"), ("unsupported", None, None)]:
        with pytest.raises(UsageError):
            Sentiment(*bad)


def test_unknown_engine() -> None:
    with pytest.raises(UsageError, match="unknown sentiment engine"):
        create_sentiment_engine(SentimentOptions(engine="nope"))


def test_vader_engine_does_not_import_transformers(vader: VaderEngine) -> None:
    import subprocess

    code = ("import sys; from whisper_streaming.analyzers.sentiment import SentimentOptions; from whisper_streaming.analyzers.sentiment_registry import create_sentiment_engine; "
            "create_sentiment_engine(SentimentOptions()).classify('good'); import whisper_streaming.transports.tcp, whisper_streaming.backends.pool; "
            "print('transformers' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout.split()
    assert out == ["False", "False"]


# --------------------------------------------------------------------------- summary arithmetic


def test_summary_arithmetic() -> None:
    tally = SentimentTally()
    for label, score in [("positive", 0.9), ("positive", 0.6), ("positive", 0.75), ("negative", 0.8), ("neutral", 1.0), ("neutral", 0.222)]:
        tally.add(Sentiment(label, score))
    tally.add(Sentiment("unsupported", None, "ko"))
    summary = tally.summary()
    assert (summary.results, summary.scored) == (7, 6)
    assert summary.percent("positive") == pytest.approx(50.0)
    assert summary.percent("negative") == pytest.approx(100 / 6)
    assert summary.mean_score == pytest.approx((0.9 + 0.6 + 0.75 + 0.8 + 1.0 + 0.222) / 6)  # unsupported not counted
    assert summary.to_text() == (
        "results: 7\npositive: 3 (50.0%)\nnegative: 1 (16.7%)\nneutral: 2 (33.3%)\nunsupported: 1\nmean score: 0.712"
    )
    assert summary.counts_text() == "positive=3 negative=1 neutral=2 unsupported=1"


def test_summary_of_nothing_and_of_only_unsupported() -> None:
    assert SentimentTally().summary() == SentimentSummary()
    assert SentimentSummary().to_text() == "results: 0\npositive: 0 (0.0%)\nnegative: 0 (0.0%)\nneutral: 0 (0.0%)\nunsupported: 0\nmean score: n/a"
    tally = SentimentTally()
    tally.add(Sentiment("unsupported", None, "ko"))
    assert tally.summary().to_text().endswith("unsupported: 1\nmean score: n/a")
    assert tally.summary().percent("positive") == 0.0


def test_summary_text_parses_back() -> None:
    summary = SentimentSummary(positive=3, negative=1, neutral=2, unsupported=1, mean_score=0.712)
    assert SentimentSummary.from_text(summary.to_text()) == summary
    assert SentimentSummary.from_text(SentimentSummary().to_text()) == SentimentSummary()
    for bad in ["", "results: 2\npositive: 1 (100.0%)", "hello", "results: 9\n" + summary.to_text().split("\n", 1)[1]]:
        with pytest.raises(UsageError):
            SentimentSummary.from_text(bad)


# --------------------------------------------------------------------------- transformers


@pytest.mark.parametrize(
    ("raw", "n", "label"),
    [
        ("POSITIVE", 2, "positive"), ("NEGATIVE", 2, "negative"), ("Neutral", 3, "neutral"), ("neg", 3, "negative"),
        ("LABEL_0", 2, "negative"), ("LABEL_1", 2, "positive"), ("LABEL_1", 3, "neutral"), ("LABEL_2", 3, "positive"),
        ("1 star", 5, "negative"), ("3 stars", 5, "neutral"), ("5 stars", 5, "positive"),
        ("LABEL_0", 4, None), ("LABEL_5", 3, None), ("joy", 6, None), ("2 stars", 3, None),
    ],
)
def test_map_label(raw: str, n: int, label: str | None) -> None:
    assert map_label(raw, n) == label


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_classifier(tmp_path_factory.mktemp("hf") / "tiny-distilbert")


def test_transformers_engine_loads_a_local_model(tiny_model: Path) -> None:
    engine = create_sentiment_engine(SentimentOptions(engine="transformers", model=str(tiny_model), threads=1))
    assert engine.name == "transformers"
    assert engine.languages is None  # not the default SST-2 model: any language
    for text in (POSITIVE_TEXT, NEGATIVE_TEXT, "안녕하세요", "x" * 5000):  # long text is truncated, not an error
        s = analyze(engine, text, "en")
        assert s.label in ("positive", "negative")  # a 2-label model never says neutral
        assert 0.5 <= s.score <= 1.0  # type: ignore[operator]  # top-1 probability of 2 labels
    again = create_sentiment_engine(SentimentOptions(engine="transformers", model=str(tiny_model), languages=("en",)))
    assert analyze(again, NEGATIVE_TEXT, "en") == analyze(engine, NEGATIVE_TEXT, "en")  # same weights, deterministic
    assert analyze(again, "안녕", "ko") == Sentiment("unsupported", None, "ko")


def test_transformers_engine_three_label_model(tmp_path: Path) -> None:
    path = build_tiny_classifier(tmp_path / "three", labels=("LABEL_0", "LABEL_1", "LABEL_2"), seed=1)
    engine = create_sentiment_engine(SentimentOptions(engine="transformers", model=str(path)))
    assert sorted(engine._labels.values()) == ["negative", "neutral", "positive"]  # type: ignore[attr-defined]
    s = engine.classify(POSITIVE_TEXT)
    assert s.label in ("positive", "negative", "neutral") and 1 / 3 <= s.score <= 1.0  # type: ignore[operator]


def test_transformers_engine_refuses_unmappable_labels_and_missing_models(tmp_path: Path) -> None:
    path = build_tiny_classifier(tmp_path / "emotions", labels=("joy", "anger"))
    with pytest.raises(SentimentError, match="cannot map its label 'joy'"):
        create_sentiment_engine(SentimentOptions(engine="transformers", model=str(path)))
    with pytest.raises(SentimentError, match="cannot load sentiment model"):
        create_sentiment_engine(SentimentOptions(engine="transformers", model=str(tmp_path / "no-such-model")))


def test_default_model_name() -> None:
    assert SentimentOptions().model == DEFAULT_HF_MODEL == "distilbert-base-uncased-finetuned-sst-2-english"


# ---------------------------------------------------------------------------- the Analyzer interface

def test_sentiment_runs_behind_the_analyzer_interface() -> None:
    import numpy as np

    from whisper_streaming.analyzers.base import Analyzer, build_analyzers
    from whisper_streaming.analyzers.sentiment_registry import SENTIMENT, sentiment_analyzer_spec
    from whisper_streaming.core.transcript import Transcript

    analyzers = build_analyzers([sentiment_analyzer_spec(SentimentOptions())])
    analyzer = analyzers[SENTIMENT]
    assert isinstance(analyzer, Analyzer)
    audio = np.zeros(1600, dtype=np.float32)
    happy = analyzer.analyze(audio, Transcript("I love this, it is wonderful", "en", 1.0, (), 0.1))
    assert happy.label == "positive"
    assert analyzer.analyze(audio, Transcript("네 좋아요", "ko", 1.0, (), 0.1)) == Sentiment("unsupported", None, "ko")
    assert analyzer.analyze(audio, Transcript("  ", "en", 1.0, (), 0.1)) is None  # no text, no annotation


def test_two_analyzers_with_one_name_are_refused() -> None:
    from whisper_streaming.analyzers.base import build_analyzers
    from whisper_streaming.analyzers.sentiment_registry import sentiment_analyzer_spec

    with pytest.raises(UsageError, match="two analyzers"):
        build_analyzers([sentiment_analyzer_spec(SentimentOptions()), sentiment_analyzer_spec(SentimentOptions())])
