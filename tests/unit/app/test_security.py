"""TLS context and tokens from the configuration (app/security.py) and their wiring into the doors' options."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from tls_certs import make_server_files
from whisper_streaming.app.security import build_ssl_context, token_set_from_config
from whisper_streaming.app.wiring import session_options_from_config, tcp_options_from_config
from whisper_streaming.config.schema import ServerConfig, parse_config
from whisper_streaming.errors import ConfigError


def tls_config(cert: Path, key: Path) -> ServerConfig:
    return parse_config({"tls": {"cert_file": str(cert), "key_file": str(key)}})


def test_tls_off_gives_no_context() -> None:
    assert build_ssl_context(ServerConfig()) is None
    assert tcp_options_from_config(ServerConfig()).ssl_context is None


def test_a_good_certificate_and_key_make_a_server_context(tmp_path: Path) -> None:
    files = make_server_files(tmp_path)
    ctx = build_ssl_context(tls_config(files.cert_file, files.key_file))
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert not ctx.check_hostname  # a server context
    opts = tcp_options_from_config(tls_config(files.cert_file, files.key_file))
    assert isinstance(opts.ssl_context, ssl.SSLContext)


def test_a_key_of_another_certificate_is_a_config_error(tmp_path: Path) -> None:
    one, other = make_server_files(tmp_path / "a"), make_server_files(tmp_path / "b")
    with pytest.raises(ConfigError, match="does not match|cannot load"):
        build_ssl_context(tls_config(one.cert_file, other.key_file))


def test_files_that_are_not_pem_are_a_config_error(tmp_path: Path) -> None:
    files = make_server_files(tmp_path)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match=r"^tls: cert_file .*cannot load"):
        build_ssl_context(tls_config(junk, files.key_file))
    with pytest.raises(ConfigError, match=r"^tls: cert_file .*cannot load"):
        build_ssl_context(tls_config(files.cert_file, junk))


def test_an_encrypted_key_is_a_config_error_not_a_prompt(tmp_path: Path) -> None:
    files = make_server_files(tmp_path)
    key = serialization.load_pem_private_key(files.key_file.read_bytes(), password=None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.BestAvailableEncryption(b"passphrase")))
    with pytest.raises(ConfigError, match="the key is encrypted"):
        build_ssl_context(tls_config(files.cert_file, encrypted))


def test_an_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    files = make_server_files(tmp_path)
    config = tls_config(files.cert_file, files.key_file)
    files.key_file.unlink()  # gone between the config check and the start
    with pytest.raises(ConfigError, match="cannot read"):
        build_ssl_context(config)


# --------------------------------------------------------------------------- tokens


def test_tokens_off_gives_none_and_no_token_check() -> None:
    assert token_set_from_config(ServerConfig()) is None
    assert session_options_from_config(ServerConfig()).tokens is None


def test_tokens_from_the_list_and_the_file(tmp_path: Path) -> None:
    f = tmp_path / "tokens.txt"
    f.write_text("# web page\nfrom-file-1\n\nfrom-file-2  # the call centre\nlisted\n", encoding="utf-8")
    config = parse_config({"auth": {"tokens": ["listed"], "token_file": str(f)}})
    tokens = token_set_from_config(config)
    assert tokens is not None and tokens.tokens == ("listed", "from-file-1", "from-file-2")
    assert tokens.verify("from-file-2") and tokens.verify("listed") and not tokens.verify("web")
    assert session_options_from_config(config).tokens == tokens


def test_a_token_file_without_tokens_is_a_config_error(tmp_path: Path) -> None:
    f = tmp_path / "tokens.txt"
    f.write_text("# nothing yet\n\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="has no token"):
        token_set_from_config(parse_config({"auth": {"token_file": str(f)}}))


def test_a_bad_token_file_line_is_a_config_error_without_its_text(tmp_path: Path) -> None:
    f = tmp_path / "tokens.txt"
    f.write_text("good-one\nsecret with spaces\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        token_set_from_config(parse_config({"auth": {"token_file": str(f)}}))
    assert "line 2" in str(info.value) and "secret" not in str(info.value)


def test_a_token_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    f = tmp_path / "tokens.txt"
    f.write_bytes(b"\xff\xfe\x00t\x00")
    with pytest.raises(ConfigError, match="not UTF-8"):
        token_set_from_config(parse_config({"auth": {"token_file": str(f)}}))
