"""The ``%o`` options: pair syntax, negotiation against the registry, the server's policy."""

from __future__ import annotations

import pytest

from whisper_streaming.errors import RemoteProtocolError
from whisper_streaming.core.options import (
    LANGUAGE_AUTO,
    OPTIONS,
    WHISPER_LANGUAGE_CODES,
    StreamOptions,
    decode_accepted,
    encode_value,
    format_pairs,
    negotiate,
    normalize_language,
    parse_pairs,
    redact_pairs,
)


def test_parse_and_format_pairs() -> None:
    assert parse_pairs("") == ()
    assert parse_pairs("sentiment=1") == (("sentiment", "1"),)
    assert parse_pairs("sentiment=1;sample_rate=8000;encoding=") == (("sentiment", "1"), ("sample_rate", "8000"), ("encoding", ""))
    assert format_pairs(parse_pairs("a=1;b_2=x.y-z")) == "a=1;b_2=x.y-z"


@pytest.mark.parametrize("text", ["sentiment", "sentiment=1;", ";", "1a=1", "A=1", "a-b=1", "a=1;a=1", "a=b=c", "a=\t", "k" * 33 + "=1"])
def test_malformed_pairs(text: str) -> None:
    with pytest.raises(RemoteProtocolError) as exc:
        parse_pairs(text)
    assert exc.value.reason == "BAD_OPTION"


def test_negotiate_sentiment_on_and_off() -> None:
    on, accepted = negotiate(StreamOptions(), (("sentiment", "1"),))
    assert on == StreamOptions(sentiment=True) and accepted == (("sentiment", "1"),)
    off, accepted = negotiate(on, (("sentiment", "0"),))
    assert off == StreamOptions(sentiment=False) and accepted == (("sentiment", "0"),)


def test_unknown_keys_are_ignored_and_left_out() -> None:
    options, accepted = negotiate(StreamOptions(), (("captions", "1"), ("sentiment", "1"), ("jitter_ms", "80")))
    assert options == StreamOptions(sentiment=True)
    assert accepted == (("sentiment", "1"),)
    assert negotiate(StreamOptions(), ()) == (StreamOptions(), ())


@pytest.mark.parametrize("value", ["2", "yes", "true", "", " 1"])
def test_invalid_value_for_a_known_key_changes_nothing(value: str) -> None:
    with pytest.raises(RemoteProtocolError) as exc:
        negotiate(StreamOptions(), (("partials", "1"), ("sentiment", value)))
    assert exc.value.reason == "BAD_OPTION" and "sentiment" in exc.value.detail


def test_audio_format_keys() -> None:
    assert StreamOptions() == StreamOptions(sample_rate=16000, encoding="pcm_s16le")  # legacy traffic
    options, accepted = negotiate(StreamOptions(), (("sample_rate", "8000"), ("encoding", "mulaw")))
    assert options == StreamOptions(sample_rate=8000, encoding="mulaw")
    assert accepted == (("sample_rate", "8000"), ("encoding", "mulaw"))
    back, _ = negotiate(options, (("encoding", "alaw"), ("sample_rate", "16000")))
    assert back == StreamOptions(sample_rate=16000, encoding="alaw")
    assert decode_accepted(accepted) == {"sample_rate": 8000, "encoding": "mulaw"}


@pytest.mark.parametrize(
    ("key", "value"),
    [("sample_rate", "44100"), ("sample_rate", "08000"), ("sample_rate", ""), ("sample_rate", "8k"),
     ("encoding", "ulaw"), ("encoding", "PCM_S16LE"), ("encoding", ""), ("encoding", "opus")],
)
def test_invalid_audio_format_values(key: str, value: str) -> None:
    with pytest.raises(RemoteProtocolError) as exc:
        negotiate(StreamOptions(), (("sentiment", "1"), (key, value)))
    assert exc.value.reason == "BAD_OPTION" and key in exc.value.detail


def test_policy_gives_the_effective_value() -> None:
    options, accepted = negotiate(StreamOptions(), (("sentiment", "1"),), {"sentiment": lambda requested: False})
    assert options == StreamOptions(sentiment=False)
    assert accepted == (("sentiment", "0"),)


def test_client_side_helpers() -> None:
    assert encode_value("sentiment", True) == "1" and encode_value("sentiment", False) == "0"
    assert encode_value("sample_rate", 8000) == "8000" and encode_value("partials", True) == "1"
    assert decode_accepted((("sentiment", "1"), ("newer", "abc"))) == {"sentiment": True, "newer": "abc"}


def test_every_registered_option_is_a_stream_options_field_and_round_trips() -> None:
    defaults = StreamOptions()
    for key, spec in OPTIONS.items():
        if spec.secret:  # the token: read by the session itself, not a stream option (tested below)
            assert key == "token"
            continue
        assert spec.key == key and hasattr(defaults, spec.field)
        value = getattr(defaults, spec.field)
        if value is None:  # "the server's default" (language): no wire form, never in %O
            with pytest.raises(ValueError):
                spec.format(value)
            continue
        assert spec.parse(spec.format(value)) == value


def test_token_is_never_applied_nor_echoed() -> None:
    """``token`` is the access token: negotiate leaves it out of the options and of ``%O``."""
    options, accepted = negotiate(StreamOptions(), (("token", "s3cret-Token"), ("sentiment", "1")))
    assert options == StreamOptions(sentiment=True)
    assert accepted == (("sentiment", "1"),)
    assert negotiate(StreamOptions(), (("token", "x"),)) == (StreamOptions(), ())
    assert encode_value("token", "abc") == "abc"


def test_redact_pairs_hides_only_the_token() -> None:
    assert redact_pairs((("sentiment", "1"), ("token", "s3cret"), ("other", "v"))) == (("sentiment", "1"), ("token", "***"), ("other", "v"))


# --------------------------------------------------------------------------- language


def test_language_codes_are_faster_whispers() -> None:
    from faster_whisper.tokenizer import _LANGUAGE_CODES  # private, hence only in this test

    assert len(set(WHISPER_LANGUAGE_CODES)) == len(WHISPER_LANGUAGE_CODES) == 100
    assert set(WHISPER_LANGUAGE_CODES) == set(_LANGUAGE_CODES)
    assert all(code == code.lower() for code in WHISPER_LANGUAGE_CODES) and LANGUAGE_AUTO not in WHISPER_LANGUAGE_CODES


def test_language_codes_are_openai_whispers_in_its_order() -> None:
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("whisper")
    if spec is None or spec.origin is None:
        pytest.skip("openai-whisper is not installed")
    # whisper/tokenizer.py alone (it needs tiktoken, not torch): not the package's __init__.
    tok_spec = importlib.util.spec_from_file_location("_openai_whisper_tokenizer", Path(spec.origin).with_name("tokenizer.py"))
    assert tok_spec is not None and tok_spec.loader is not None
    tokenizer = importlib.util.module_from_spec(tok_spec)
    tok_spec.loader.exec_module(tokenizer)
    assert WHISPER_LANGUAGE_CODES == tuple(tokenizer.LANGUAGES)


@pytest.mark.parametrize(("text", "code"), [("en", "en"), ("EN", "en"), ("Ko", "ko"), ("haw", "haw"), ("YUE", "yue"), ("auto", "auto"), ("AUTO", "auto")])
def test_normalize_language(text: str, code: str) -> None:
    assert normalize_language(text) == code


@pytest.mark.parametrize("text", ["", "xx", "english", "en-US", "en_us", " en", "en ", "zh-cn", "detect", "none", "\u212ao"])
def test_normalize_language_rejects(text: str) -> None:
    # (\u212a is the Kelvin sign, which str.lower() turns into an ASCII "k": "ko" must not come of it.)
    with pytest.raises(ValueError, match="not a Whisper language code"):
        normalize_language(text)


@pytest.mark.parametrize("value", [None, 1, b"en"])
def test_normalize_language_rejects_non_strings(value: object) -> None:
    with pytest.raises(ValueError, match="must be a string"):
        normalize_language(value)  # type: ignore[arg-type]


def test_negotiate_language() -> None:
    assert StreamOptions().language is None  # the server's model.language
    options, accepted = negotiate(StreamOptions(), (("sentiment", "1"), ("language", "EN")))
    assert options == StreamOptions(sentiment=True, language="en")
    assert accepted == (("sentiment", "1"), ("language", "en"))  # %O echoes the normalized value
    assert format_pairs(accepted) == "sentiment=1;language=en"
    auto, accepted = negotiate(options, parse_pairs("language=auto"))
    assert auto == StreamOptions(sentiment=True, language="auto") and accepted == (("language", "auto"),)
    ko, _ = negotiate(auto, (("language", "ko"),))
    assert ko.language == "ko" and ko.sentiment is True  # other options stay


@pytest.mark.parametrize("value", ["", "xx", "english", "en-US", " en"])
def test_invalid_language_is_bad_option_and_changes_nothing(value: str) -> None:
    with pytest.raises(RemoteProtocolError) as exc:
        negotiate(StreamOptions(language="ko"), (("sentiment", "1"), ("language", value)))
    assert exc.value.reason == "BAD_OPTION"
    assert "language" in exc.value.detail and "not a Whisper language code" in exc.value.detail


def test_language_client_side_helpers() -> None:
    assert encode_value("language", "en") == "en" and encode_value("language", "auto") == "auto"
    assert encode_value("language", "EN") == "EN"  # sent as given; the server normalizes
    with pytest.raises(ValueError):
        encode_value("language", None)  # "the server's default" cannot be sent
    assert decode_accepted((("language", "en"), ("sentiment", "0"))) == {"language": "en", "sentiment": False}
    assert decode_accepted((("language", "auto"),)) == {"language": "auto"}
    assert decode_accepted((("language", "klingon"),)) == {"language": "klingon"}  # unparsable: the text


def test_the_sentiment_option_asks_for_the_sentiment_analyzer_by_its_name() -> None:
    from whisper_streaming.analyzers.sentiment import SENTIMENT
    from whisper_streaming.core.options import StreamOptions

    assert StreamOptions(sentiment=True).analyses == frozenset({SENTIMENT})
    assert StreamOptions().analyses == frozenset()
