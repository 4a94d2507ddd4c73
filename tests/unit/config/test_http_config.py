"""The ``http`` section and its wiring into the web door's options."""

from __future__ import annotations

import pytest

from whisper_streaming.app.wiring import web_options_from_config
from whisper_streaming.config.schema import parse_config
from whisper_streaming.errors import ConfigError


def test_defaults() -> None:
    http = parse_config({}).http
    assert (http.enabled, http.port, http.allowed_origins, http.max_message_bytes) == (True, 8080, (), 1048576)


def test_values_and_wiring() -> None:
    cfg = parse_config({"network": {"ip": "0.0.0.0", "socket_timeout": 7, "identify_timeout_s": 3},
                        "http": {"port": 0, "allowed_origins": ["HTTPS://App.Example.com/", "*"], "max_message_bytes": 65536}})
    assert cfg.http.allowed_origins == ("https://app.example.com", "*")  # normalized
    options = web_options_from_config(cfg)
    assert (options.host, options.port, options.allowed_origins, options.max_message_bytes) == ("0.0.0.0", 0, ("https://app.example.com", "*"), 65536)
    assert (options.socket_timeout_s, options.identify_timeout_s, options.ssl_context) == (7.0, 3.0, None)
    assert parse_config({"http": None}).http.enabled is True


@pytest.mark.parametrize(
    "http,path,words",
    [
        ({"enabled": "yes"}, "http.enabled", "boolean"),
        ({"port": 70000}, "http.port", "<= 65535"),
        ({"port": "8080"}, "http.port", "integer"),
        ({"max_message_bytes": 100}, "http.max_message_bytes", ">= 4096"),
        ({"allowed_origins": ["example.com"]}, "http.allowed_origins", "scheme://host"),
        ({"allowed_origins": ["ftp://example.com"]}, "http.allowed_origins", "scheme://host"),
        ({"allowed_origins": ["https://example.com/page"]}, "http.allowed_origins", "scheme://host"),
        ({"allowed_origins": "https://example.com"}, "http.allowed_origins", ""),
        ({"prot": 1}, "http.prot", "unknown key"),
    ],
)
def test_errors(http: dict, path: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"http": http})
    assert f"{path}" in str(info.value) and words in str(info.value)
