"""Server configuration: typed, validated, immutable (the package's complete schema).

This module gathers the configuration's public names in one place; they are defined in:

* one module per YAML section: :mod:`~whisper_streaming.config.audio`,
  :mod:`~whisper_streaming.config.network`, :mod:`~whisper_streaming.config.model`,
  :mod:`~whisper_streaming.config.vad`, :mod:`~whisper_streaming.config.server`,
  :mod:`~whisper_streaming.config.pcm_save`, :mod:`~whisper_streaming.config.sentiment`,
  :mod:`~whisper_streaming.config.results`, :mod:`~whisper_streaming.config.audiosocket`,
  :mod:`~whisper_streaming.config.tls`, :mod:`~whisper_streaming.config.auth`,
  :mod:`~whisper_streaming.config.http` and :mod:`~whisper_streaming.config.backend`;
* :mod:`~whisper_streaming.config.loader`: :class:`ServerConfig` (all sections together),
  :func:`load_config`, :func:`parse_config` and :func:`with_overrides`, and the validation
  policy (strict types, unknown keys are errors, every problem reported at once in a
  :class:`~whisper_streaming.errors.ConfigError`, one ``"<source>: <key.path>: <message>"``
  line per problem).

See ``config_vad.yaml`` at the repository root for the documented defaults.
"""

from __future__ import annotations

from whisper_streaming.config.audio import PROTOCOL_SAMPLE_RATE_HZ, AudioConfig
from whisper_streaming.config.audiosocket import AudioSocketConfig
from whisper_streaming.config.auth import AuthConfig
from whisper_streaming.config.backend import BackendConfig
from whisper_streaming.config.http import HttpConfig
from whisper_streaming.config.loader import ServerConfig, load_config, parse_config, with_overrides
from whisper_streaming.config.model import ModelConfig
from whisper_streaming.config.network import NetworkConfig
from whisper_streaming.config.pcm_save import PcmSaveConfig
from whisper_streaming.config.partials import PartialsConfig
from whisper_streaming.config.results import ResultsConfig
from whisper_streaming.config.sentiment import SentimentConfig
from whisper_streaming.config.server import ServerSectionConfig
from whisper_streaming.config.tls import TlsConfig
from whisper_streaming.config.vad import VadConfig

__all__ = [
    "AudioConfig",
    "NetworkConfig",
    "ModelConfig",
    "VadConfig",
    "ServerSectionConfig",
    "PcmSaveConfig",
    "SentimentConfig",
    "ResultsConfig",
    "PartialsConfig",
    "AudioSocketConfig",
    "TlsConfig",
    "AuthConfig",
    "BackendConfig",
    "HttpConfig",
    "ServerConfig",
    "PROTOCOL_SAMPLE_RATE_HZ",
    "load_config",
    "parse_config",
    "with_overrides",
]
