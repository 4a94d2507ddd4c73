"""The ``tls`` and ``auth`` sections: both TLS files or neither, files that must exist, token syntax
(errors never show a token)."""

from __future__ import annotations

from pathlib import Path

import pytest

from whisper_streaming.config.schema import ServerConfig, load_config, parse_config
from whisper_streaming.errors import ConfigError


def _error_lines(data: dict) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, source="cfg.yaml")
    return str(info.value).splitlines()


@pytest.fixture
def pem_files(tmp_path: Path) -> tuple[str, str]:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("cert")
    key.write_text("key")
    return str(cert), str(key)


def test_defaults_are_off() -> None:
    cfg = ServerConfig()
    assert (cfg.tls.cert_file, cfg.tls.key_file, cfg.tls.enabled) == (None, None, False)
    assert (cfg.auth.tokens, cfg.auth.token_file, cfg.auth.enabled) == ((), None, False)


def test_both_tls_files(pem_files: tuple[str, str]) -> None:
    cert, key = pem_files
    cfg = parse_config({"tls": {"cert_file": cert, "key_file": key}})
    assert cfg.tls.enabled and (cfg.tls.cert_file, cfg.tls.key_file) == (cert, key)


@pytest.mark.parametrize("only", ["cert_file", "key_file"])
def test_one_tls_file_only_is_an_error(pem_files: tuple[str, str], only: str) -> None:
    cert, _ = pem_files
    assert _error_lines({"tls": {only: cert}}) == ["cfg.yaml: tls: set both cert_file and key_file (TLS on) or neither (TLS off)"]


def test_a_missing_tls_file_is_an_error(pem_files: tuple[str, str], tmp_path: Path) -> None:
    cert, _ = pem_files
    missing = str(tmp_path / "nope.key")
    lines = _error_lines({"tls": {"cert_file": cert, "key_file": missing}})
    assert lines == [f"cfg.yaml: tls.key_file: no such file: {missing!r}"]
    lines = _error_lines({"tls": {"cert_file": str(tmp_path), "key_file": missing}})  # a directory is not a file
    assert [line.split(":")[1].strip() for line in lines] == ["tls.cert_file", "tls.key_file"]


def test_tokens_and_token_file(tmp_path: Path) -> None:
    f = tmp_path / "tokens.txt"
    f.write_text("abc\n")
    cfg = load_config(_write(tmp_path, f"auth:\n  tokens: [one-token, 'two/+token']\n  token_file: {f}\n"))
    assert cfg.auth.tokens == ("one-token", "two/+token") and cfg.auth.token_file == str(f)
    assert cfg.auth.enabled
    assert "one-token" not in repr(cfg.auth) and "one-token" not in repr(cfg)
    hash(cfg)
    assert parse_config({"auth": {"token_file": str(f)}}).auth.enabled


def test_a_bad_token_is_an_error_that_does_not_show_it() -> None:
    lines = _error_lines({"auth": {"tokens": ["fine", "not a secret;"]}})
    assert len(lines) == 1 and lines[0].startswith("cfg.yaml: auth.tokens: token 2: a token must be")
    assert "not a secret" not in lines[0]
    assert _error_lines({"auth": {"tokens": "abc"}})[0].startswith("cfg.yaml: auth.tokens: expected a list")
    assert _error_lines({"auth": {"tokens": [""]}})[0].startswith("cfg.yaml: auth.tokens: token 1:")


def test_a_missing_token_file_is_an_error(tmp_path: Path) -> None:
    missing = str(tmp_path / "tokens.txt")
    assert _error_lines({"auth": {"token_file": missing}}) == [f"cfg.yaml: auth.token_file: no such file: {missing!r}"]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(text, encoding="utf-8")
    return path
