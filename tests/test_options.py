"""The ``%o`` options: pair syntax, negotiation against the registry, the server's policy."""

from __future__ import annotations

import pytest

from whisper_streaming.errors import RemoteProtocolError
from whisper_streaming.options import OPTIONS, StreamOptions, decode_accepted, encode_value, format_pairs, negotiate, parse_pairs


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
    options, accepted = negotiate(StreamOptions(), (("partials", "1"), ("sentiment", "1"), ("jitter_ms", "80")))
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
        assert spec.key == key and hasattr(defaults, spec.field)
        value = getattr(defaults, spec.field)
        assert spec.parse(spec.format(value)) == value
