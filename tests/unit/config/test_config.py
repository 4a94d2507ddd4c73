"""Tests for whisper_streaming.config.schema."""

from __future__ import annotations

from pathlib import Path

import pytest

from whisper_streaming.config.schema import (
    ServerConfig,
    load_config,
    parse_config,
    with_overrides,
)
from whisper_streaming.errors import ConfigError, UsageError

REPO_ROOT = Path(__file__).resolve().parents[3]
SHIPPED = REPO_ROOT / "config_vad.yaml"


def _write(tmp_path: Path, text: str, name: str = "config_vad.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _error_lines(data: dict, source: str = "cfg.yaml") -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, source=source)
    return str(info.value).splitlines()


# --------------------------------------------------------------------------- defaults


def test_defaults() -> None:
    cfg = load_config(None)
    assert cfg == ServerConfig()
    assert cfg.audio.frame_size == 480
    assert cfg.audio.sample_rate == 16000
    assert cfg.audio.frame_duration_ms == 30
    assert cfg.network.ip == "127.0.0.1"
    assert cfg.network.port == 5000
    assert cfg.network.socket_timeout == 60
    assert cfg.network.handshake_timeout_s == 10
    assert cfg.network.max_send_buffer_bytes == 1048576
    assert cfg.model.engine == "faster-whisper"
    assert cfg.model.size == "base"
    assert cfg.model.device == "cpu"
    assert cfg.model.compute_type == "int8"
    assert cfg.model.language is None
    assert cfg.model.channel == 2
    assert cfg.model.cpu_threads == 1
    assert cfg.model.beam_size == 5
    assert list(cfg.model.temperatures) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert cfg.model.no_speech_threshold == 0.6
    assert cfg.model.log_prob_threshold == -1.0
    assert cfg.model.compression_ratio_threshold == 2.4
    assert cfg.model.condition_on_previous_text is False
    assert cfg.model.initial_prompt is None
    assert cfg.model.transcribe_timeout_s == 60
    assert cfg.vad.mode == 1
    assert cfg.vad.silence_frames == 16
    assert cfg.vad.max_speech_s == 10.0
    assert cfg.vad.preroll_ms == 300
    assert cfg.vad.start_window_frames == 10
    assert cfg.vad.start_voiced_frames == 3
    assert cfg.vad.min_speech_ms == 150
    assert cfg.server.max_connections == 16
    assert cfg.server.max_queued_utterances == 64
    assert cfg.server.max_queued_per_session == 8
    assert cfg.server.shutdown_timeout_s == 30
    assert cfg.server.log_level == "INFO"
    assert cfg.pcm_save.enabled is False
    assert cfg.pcm_save.dir == "pcm"


def test_config_is_frozen() -> None:
    cfg = load_config(None)
    with pytest.raises(Exception):
        cfg.network.port = 1  # type: ignore[misc]
    hash(cfg)  # frozen models with tuple fields are hashable


@pytest.mark.parametrize("text", ["", "# only a comment\n", "{}\n"])
def test_empty_file_is_defaults(tmp_path: Path, text: str) -> None:
    assert load_config(_write(tmp_path, text)) == ServerConfig()


def test_empty_section_is_defaults(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, "vad:\nnetwork:\n  port: 6000\n"))
    assert cfg.vad == ServerConfig().vad
    assert cfg.network.port == 6000


def test_shipped_yaml_equals_defaults() -> None:
    assert load_config(SHIPPED) == load_config(None)


def test_shipped_yaml_lists_every_key() -> None:
    import yaml

    data = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    defaults = ServerConfig().model_dump()
    assert set(data) == set(defaults)
    for section, values in defaults.items():
        assert set(data[section]) == set(values), section
    assert data["model"]["language"] is None


def test_partial_file(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, "model:\n  language: ko\n  size: /models/x\n"))
    assert cfg.model.language == "ko"
    assert cfg.model.size == "/models/x"
    assert cfg.vad == ServerConfig().vad


def test_float_fields_accept_ints() -> None:
    cfg = parse_config({"vad": {"max_speech_s": 12}, "model": {"temperatures": [0, 1]}})
    assert cfg.vad.max_speech_s == 12.0
    assert list(cfg.model.temperatures) == [0.0, 1.0]


# --------------------------------------------------------------------------- unknown keys


def test_unknown_top_level_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, "netwrok:\n  port: 1\n"))
    (line,) = str(info.value).splitlines()
    assert line.startswith("config_vad.yaml: netwrok: unknown key") or line.startswith(
        f"{tmp_path / 'config_vad.yaml'}: netwrok: unknown key"
    )


def test_unknown_nested_key(tmp_path: Path) -> None:
    path = _write(tmp_path, "model:\n  chanel: 2\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    (line,) = str(info.value).splitlines()
    assert line.startswith(f"{path}: model.chanel: unknown key")
    assert "channel" in line  # suggests the valid keys


def test_source_is_path_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path, "model:\n  chanel: 2\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"^config_vad\.yaml: model\.chanel: unknown key"):
        load_config("config_vad.yaml")


def test_non_string_key() -> None:
    (line,) = _error_lines({"vad": {1: 2}})
    assert line.startswith("cfg.yaml: vad.1: unknown key")


# --------------------------------------------------------------------------- types


def test_port_as_string(tmp_path: Path) -> None:
    path = _write(tmp_path, 'network:\n  port: "5000"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: network.port: expected an integer, got str '5000'"


def test_bool_as_string() -> None:
    (line,) = _error_lines({"pcm_save": {"enabled": "yes"}})
    assert line.startswith("cfg.yaml: pcm_save.enabled: expected a boolean")
    assert "'yes'" in line


@pytest.mark.parametrize(
    ("data", "path", "words"),
    [
        ({"vad": {"mode": True}}, "vad.mode", "integer"),
        ({"vad": {"mode": 1.0}}, "vad.mode", "integer"),
        ({"vad": {"max_speech_s": "10"}}, "vad.max_speech_s", "number"),
        ({"vad": {"max_speech_s": True}}, "vad.max_speech_s", "number"),
        ({"network": {"ip": 127}}, "network.ip", "string"),
        ({"model": {"temperatures": 0.5}}, "model.temperatures", "list"),
        ({"model": {"temperatures": [0.0, "0.5"]}}, "model.temperatures.1", "number"),
        ({"model": {"device": "gpu"}}, "model.device", "one of"),
        ({"server": {"log_level": "info"}}, "server.log_level", "one of"),
        ({"audio": {"frame_duration_ms": 25}}, "audio.frame_duration_ms", "one of"),
        ({"network": 5}, "network", "mapping"),
        ({"model": {"language": "KO"}}, "model.language", "language code"),
        ({"model": {"language": "english"}}, "model.language", "language code"),
        ({"model": {"size": ""}}, "model.size", "empty"),
        ({"model": {"size": "  "}}, "model.size", "blank"),
        ({"network": {"socket_timeout": float("nan")}}, "network.socket_timeout", "finite"),
    ],
)
def test_wrong_type_or_value(data: dict, path: str, words: str) -> None:
    (line,) = _error_lines(data)
    assert line.startswith(f"cfg.yaml: {path}: "), line
    assert words in line, line


# --------------------------------------------------------------------------- ranges


@pytest.mark.parametrize(
    ("data", "path", "bound"),
    [
        ({"vad": {"mode": 4}}, "vad.mode", "<= 3"),
        ({"vad": {"mode": -1}}, "vad.mode", ">= 0"),
        ({"network": {"port": 70000}}, "network.port", "<= 65535"),
        ({"network": {"port": -1}}, "network.port", ">= 0"),
        ({"vad": {"preroll_ms": 100}}, "vad.preroll_ms", ">= 200"),
        ({"vad": {"max_speech_s": 31}}, "vad.max_speech_s", "<= 30"),
        ({"network": {"socket_timeout": 0}}, "network.socket_timeout", "> 0"),
        ({"network": {"max_send_buffer_bytes": 1000}}, "network.max_send_buffer_bytes", ">= 65536"),
        ({"model": {"channel": 0}}, "model.channel", ">= 1"),
        ({"model": {"temperatures": [0.0, 1.5]}}, "model.temperatures.1", "<= 1"),
        ({"model": {"no_speech_threshold": 1.1}}, "model.no_speech_threshold", "<= 1"),
        ({"model": {"compression_ratio_threshold": 0}}, "model.compression_ratio_threshold", "> 0"),
    ],
)
def test_out_of_range(data: dict, path: str, bound: str) -> None:
    (line,) = _error_lines(data)
    assert line.startswith(f"cfg.yaml: {path}: must be {bound}"), line


def test_port_zero_and_nullable_fields_allowed() -> None:
    cfg = parse_config(
        {
            "network": {"port": 0},
            "model": {
                "no_speech_threshold": None,
                "log_prob_threshold": None,
                "compression_ratio_threshold": None,
                "initial_prompt": "회의록",
                "language": "yue",
            },
        }
    )
    assert cfg.network.port == 0
    assert cfg.model.no_speech_threshold is None
    assert cfg.model.language == "yue"


@pytest.mark.parametrize("temps", [[], [0.2, 0.0], [0.0, 0.0]])
def test_temperatures_non_empty_and_ascending(temps: list) -> None:
    (line,) = _error_lines({"model": {"temperatures": temps}})
    assert line.startswith("cfg.yaml: model.temperatures: ")


# --------------------------------------------------------------------------- cross-field


def test_frame_size_mismatch() -> None:
    (line,) = _error_lines({"audio": {"frame_size": 320}})
    assert line.startswith("cfg.yaml: audio.frame_size: ")
    assert "480" in line and "320" in line


def test_frame_size_consistent_with_other_duration() -> None:
    cfg = parse_config({"audio": {"frame_size": 320, "frame_duration_ms": 20}})
    assert cfg.audio.frame_size == 320


def test_sample_rate_must_be_16000() -> None:
    lines = _error_lines({"audio": {"sample_rate": 8000, "frame_size": 240}})
    assert len(lines) == 1
    assert lines[0].startswith("cfg.yaml: audio.sample_rate: must be 16000")


def test_start_voiced_frames_exceeds_window() -> None:
    (line,) = _error_lines({"vad": {"start_window_frames": 5, "start_voiced_frames": 6}})
    assert line.startswith("cfg.yaml: vad.start_voiced_frames: must be <= start_window_frames")


def test_per_session_queue_exceeds_total() -> None:
    (line,) = _error_lines({"server": {"max_queued_utterances": 4}})
    assert line.startswith("cfg.yaml: server.max_queued_per_session: must be <= max_queued_utterances")


# --------------------------------------------------------------------------- multiple problems


def test_multiple_problems_all_reported(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "bogus: 1\n"
        "network:\n  port: \"5000\"\n"
        "vad:\n  mode: 4\n  preroll_ms: 100\n"
        "model:\n  chanel: 2\n"
        "pcm_save:\n  enabled: \"yes\"\n",
        name="multi.yaml",
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    lines = str(info.value).splitlines()
    paths = {line.split(": ")[1] for line in lines}
    assert paths == {
        "bogus",
        "network.port",
        "vad.mode",
        "vad.preroll_ms",
        "model.chanel",
        "pcm_save.enabled",
    }
    assert all(line.startswith(f"{path}: ") for line in lines)


# --------------------------------------------------------------------------- file errors


def test_yaml_syntax_error(tmp_path: Path) -> None:
    path = _write(tmp_path, "network:\n  port: [5000\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert "YAML" in message and "line" in message
    assert len(message.splitlines()) == 1


def test_duplicate_key_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path, "network:\n  port: 1\n  port: 2\n")
    with pytest.raises(ConfigError, match="duplicate key 'port'"):
        load_config(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize("text", ["- a\n- b\n", "42\n", "just a string\n"])
def test_top_level_not_mapping(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(_write(tmp_path, text))


def test_parse_config_non_mapping() -> None:
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        parse_config([1, 2])  # type: ignore[arg-type]


# --------------------------------------------------------------------------- overrides


def test_with_overrides() -> None:
    base = load_config(None)
    cfg = with_overrides(base, **{"network.port": 0, "network.ip": "::1", "vad.mode": 3})
    assert cfg.network.port == 0
    assert cfg.network.ip == "::1"
    assert cfg.vad.mode == 3
    assert cfg.network.socket_timeout == base.network.socket_timeout
    assert base.network.port == 5000  # original untouched
    assert with_overrides(base) == base


def test_with_overrides_section_mapping_merges() -> None:
    cfg = with_overrides(load_config(None), vad={"mode": 2})
    assert cfg.vad.mode == 2
    assert cfg.vad.silence_frames == 16


def test_with_overrides_revalidates() -> None:
    base = load_config(None)
    with pytest.raises(ConfigError, match=r"^<overrides>: network\.port: must be <= 65535"):
        with_overrides(base, **{"network.port": 70000})
    with pytest.raises(ConfigError, match=r"network\.port: expected an integer"):
        with_overrides(base, **{"network.port": "5000"})
    with pytest.raises(ConfigError, match=r"network\.prot: unknown key"):
        with_overrides(base, **{"network.prot": 1})
    with pytest.raises(ConfigError, match=r"vad\.start_voiced_frames"):
        with_overrides(base, **{"vad.start_window_frames": 2})
    with pytest.raises(ConfigError, match="not a section"):
        with_overrides(base, **{"network.port.x": 1})


def test_with_overrides_usage_errors() -> None:
    with pytest.raises(UsageError):
        with_overrides(load_config(None), **{"network..port": 1})
    with pytest.raises(UsageError):
        with_overrides({"network": {}}, **{"network.port": 1})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({"audio": {"frame_duration_ms": 20}}, "audio.frame_size"),  # default 480 no longer fits
        ({"vad": {"start_window_frames": 2}}, "vad.start_voiced_frames"),  # default 3 > 2
    ],
)
def test_cross_field_checks_defaults_too(data: dict, path: str) -> None:
    (line,) = _error_lines(data)
    assert line.startswith(f"cfg.yaml: {path}: "), line


# --------------------------------------------------------------------------- sentiment and results


def test_sentiment_and_results_defaults() -> None:
    cfg = load_config(None)
    assert cfg.sentiment.enabled is False
    assert cfg.sentiment.engine == "vader"
    assert cfg.sentiment.model == "distilbert-base-uncased-finetuned-sst-2-english"
    assert cfg.sentiment.languages is None
    assert cfg.sentiment.neutral_threshold == 0.05
    assert cfg.results.jsonl_path is None
    assert (cfg.results.webhook_url, cfg.results.webhook_timeout_s, cfg.results.webhook_max_retries) == (None, 5.0, 3)
    assert (cfg.audiosocket.enabled, cfg.audiosocket.port) == (False, 5001)


def test_audiosocket_and_webhook_values() -> None:
    cfg = parse_config({"audiosocket": {"enabled": True, "port": 0},
                        "results": {"webhook_url": "https://hooks.example.com/asr", "webhook_timeout_s": 2.5, "webhook_max_retries": 0}})
    assert cfg.audiosocket.enabled is True and cfg.audiosocket.port == 0
    assert cfg.results.webhook_url == "https://hooks.example.com/asr"
    assert cfg.results.webhook_timeout_s == 2.5 and cfg.results.webhook_max_retries == 0
    assert parse_config({"audiosocket": None}).audiosocket.enabled is False


def test_sentiment_and_results_values() -> None:
    cfg = parse_config({"sentiment": {"enabled": True, "engine": "transformers", "model": "/models/x", "languages": ["en", "ko"], "neutral_threshold": 0.1},
                        "results": {"jsonl_path": "out/results.jsonl"}})
    assert cfg.sentiment.languages == ("en", "ko") and cfg.sentiment.engine == "transformers"
    assert cfg.results.jsonl_path == "out/results.jsonl"
    assert parse_config({"sentiment": {"engine": "none"}}).sentiment.engine == "none"


@pytest.mark.parametrize(
    ("data", "path", "words"),
    [
        ({"sentiment": {"enabled": True, "engine": "none"}}, "sentiment.engine", "needs an engine"),
        ({"sentiment": {"engine": "bert"}}, "sentiment.engine", "one of"),
        ({"sentiment": {"enabled": 1}}, "sentiment.enabled", "boolean"),
        ({"sentiment": {"languages": ["EN"]}}, "sentiment.languages", "language codes"),
        ({"sentiment": {"languages": []}}, "sentiment.languages", "at least 1"),
        ({"sentiment": {"languages": "en"}}, "sentiment.languages", "list"),
        ({"sentiment": {"neutral_threshold": 0}}, "sentiment.neutral_threshold", "> 0"),
        ({"sentiment": {"neutral_threshold": 1.0}}, "sentiment.neutral_threshold", "< 1"),
        ({"sentiment": {"model": " "}}, "sentiment.model", "blank"),
        ({"sentiment": {"modle": "x"}}, "sentiment.modle", "unknown key"),
        ({"results": {"jsonl_path": ""}}, "results.jsonl_path", "empty"),
        ({"results": {"jsonl_path": 5}}, "results.jsonl_path", "string"),
        ({"results": {"webhook_url": "ftp://example.com/x"}}, "results.webhook_url", "http:// or https://"),
        ({"results": {"webhook_url": "example.com/x"}}, "results.webhook_url", "http:// or https://"),
        ({"results": {"webhook_timeout_s": 0}}, "results.webhook_timeout_s", "> 0"),
        ({"results": {"webhook_max_retries": -1}}, "results.webhook_max_retries", ">= 0"),
        ({"audiosocket": {"enabled": "yes"}}, "audiosocket.enabled", "boolean"),
        ({"audiosocket": {"port": 70000}}, "audiosocket.port", "<= 65535"),
        ({"audiosocket": {"prot": 1}}, "audiosocket.prot", "unknown key"),
    ],
)
def test_sentiment_and_results_errors(data: dict, path: str, words: str) -> None:
    (line,) = _error_lines(data)
    assert line.startswith(f"cfg.yaml: {path}: "), line
    assert words in line, line


def test_model_language_must_be_a_whisper_code() -> None:
    with pytest.raises(ConfigError, match="Whisper language code"):
        parse_config({"model": {"language": "xx"}})
    assert parse_config({"model": {"language": "haw"}}).model.language == "haw"
