"""The whole server configuration and its loading: typed, validated, immutable.

:class:`ServerConfig` gathers one model per YAML section (each defined in its own module of
this package: ``audio``, ``network``, ``model``, ``vad``, ``server``, ``pcm_save``,
``sentiment``, ``results``, ``audiosocket``, ``partials``, ``tls``, ``auth``, ``http``).  The configuration lives in a YAML file (see
``config_vad.yaml`` at the repository root for the documented defaults).  Every section and
every key is optional; missing ones take the defaults defined in the section models, so an
empty file (or ``{}``) is a valid configuration.

Validation is deliberately strict:

* unknown keys are errors (a typo such as ``chanel`` must not be silently ignored);
* types are not coerced: ``port: "5000"`` or ``enabled: "yes"`` are errors.  Float fields
  accept integers (``socket_timeout: 60``) but never strings, booleans, NaN or infinity;
* ranges and cross-field constraints are checked.

Every problem found is reported at once in a :class:`~whisper_streaming.errors.ConfigError`
whose message has one line per problem, formatted ``"<source>: <dotted.key.path>: <message>"``,
for example::

    config_vad.yaml: model.chanel: unknown key (expected one of: ...)
    config_vad.yaml: network.port: expected an integer, got str '5000'

A pydantic ``ValidationError`` never escapes this module.

Public API: :class:`ServerConfig`, :func:`load_config`, :func:`parse_config` and
:func:`with_overrides`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator

from whisper_streaming.config.audio import AudioConfig
from whisper_streaming.config.audiosocket import AudioSocketConfig
from whisper_streaming.config.auth import AuthConfig
from whisper_streaming.config.backend import BackendConfig
from whisper_streaming.config.batch import BatchConfig
from whisper_streaming.config.fields import STRICT_MODEL_CONFIG
from whisper_streaming.config.http import HttpConfig
from whisper_streaming.config.model import ModelConfig
from whisper_streaming.config.network import NetworkConfig
from whisper_streaming.config.pcm_save import PcmSaveConfig
from whisper_streaming.config.partials import PartialsConfig
from whisper_streaming.config.results import ResultsConfig
from whisper_streaming.config.sentiment import SentimentConfig
from whisper_streaming.config.server import ServerSectionConfig
from whisper_streaming.config.speakers import SpeakersConfig
from whisper_streaming.config.tls import TlsConfig
from whisper_streaming.config.vad import VadConfig
from whisper_streaming.errors import ConfigError, UsageError

__all__ = [
    "ServerConfig",
    "load_config",
    "parse_config",
    "with_overrides",
]


_SECTIONS = ("audio", "network", "model", "vad", "server", "pcm_save", "sentiment", "results", "audiosocket", "partials", "tls", "auth", "http", "batch", "speakers", "backend")


class ServerConfig(BaseModel):
    """The whole configuration.  Immutable; build modified copies with :func:`with_overrides`."""

    model_config = STRICT_MODEL_CONFIG

    audio: AudioConfig = Field(default_factory=AudioConfig)
    network: NetworkConfig = Field(default_factory=NetworkConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    vad: VadConfig = Field(default_factory=VadConfig)
    server: ServerSectionConfig = Field(default_factory=ServerSectionConfig)
    pcm_save: PcmSaveConfig = Field(default_factory=PcmSaveConfig)
    sentiment: SentimentConfig = Field(default_factory=SentimentConfig)
    results: ResultsConfig = Field(default_factory=ResultsConfig)
    partials: PartialsConfig = Field(default_factory=PartialsConfig)
    audiosocket: AudioSocketConfig = Field(default_factory=AudioSocketConfig)
    tls: TlsConfig = Field(default_factory=TlsConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    batch: BatchConfig = Field(default_factory=BatchConfig)
    speakers: SpeakersConfig = Field(default_factory=SpeakersConfig)
    backend: BackendConfig = Field(default_factory=BackendConfig)

    @field_validator(*_SECTIONS, mode="before")
    @classmethod
    def _empty_section_is_default(cls, value: Any) -> Any:
        # ``vad:`` with every key commented out loads as None: treat it as an empty section.
        return {} if value is None else value


# --------------------------------------------------------------------------- errors


def _describe(value: Any) -> str:
    """``str '5000'``-style description of a bad input value, bounded in length."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def _allowed_keys(loc: tuple[Any, ...]) -> list[str] | None:
    """Field names of the model that the mapping at ``loc`` is validated against."""
    model: Any = ServerConfig
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            return None
        model = field.annotation
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
    return list(model.model_fields)


_EXPECTED = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "a boolean (true or false)",
    "bool_parsing": "a boolean (true or false)",
    "string_type": "a string",
    "list_type": "a list",
    "tuple_type": "a list",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "dict_type": "a mapping",
}

_COMPARISONS = {
    "greater_than": ("gt", ">"),
    "greater_than_equal": ("ge", ">="),
    "less_than": ("lt", "<"),
    "less_than_equal": ("le", "<="),
}


def _error_message(error: Mapping[str, Any]) -> str:
    kind = error.get("type", "")
    ctx = error.get("ctx") or {}
    value = error.get("input")
    loc = tuple(error.get("loc", ()))
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        return "unknown key" + (f" (expected one of: {', '.join(allowed)})" if allowed else "")
    if kind == "invalid_key":
        return f"unknown key: keys must be strings, got {_describe(value)}"
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {_describe(value)}"
    if kind in _COMPARISONS:
        name, symbol = _COMPARISONS[kind]
        return f"must be {symbol} {ctx.get(name)}, got {value!r}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}, got {_describe(value)}"
    if kind == "finite_number":
        return f"must be a finite number, got {value!r}"
    if kind == "string_too_short":
        return "must not be empty"
    if kind in ("too_short", "too_long"):
        return f"{error.get('msg', 'wrong length')}, got {value!r}"
    if kind == "value_error":
        return str(ctx.get("error", error.get("msg", "invalid value")))
    return f"{error.get('msg', 'invalid value')}, got {_describe(value)}"


def _format_errors(exc: ValidationError, source: str) -> str:
    lines = []
    for error in exc.errors():
        path = ".".join(str(part) for part in error.get("loc", ()))
        prefix = f"{source}: {path}: " if path else f"{source}: "
        lines.append(prefix + _error_message(error))
    return "\n".join(lines)


# --------------------------------------------------------------------------- API


def parse_config(data: Mapping[str, Any], *, source: str = "<config>") -> ServerConfig:
    """Validate already-parsed configuration data.

    Args:
        data: mapping of section name to section mapping (e.g. the result of YAML loading).
        source: name used as the prefix of every error line (usually the file name).

    Raises:
        ConfigError: listing every problem, one ``"<source>: <key.path>: <message>"`` per line.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: top level must be a mapping of sections, got {_describe(data)}")
    try:
        return ServerConfig.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, source)) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that rejects duplicate keys instead of keeping the last one."""

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:  # unhashable key: the base class reports it
                    continue
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r}", key_node.start_mark
                    )
        return super().construct_mapping(node, deep=deep)


def _yaml_error_line(source: str, exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{source}: {where}invalid YAML: {' '.join(str(problem).split())}"


def load_config(path: str | os.PathLike[str] | None) -> ServerConfig:
    """Load and validate a YAML configuration file.

    Args:
        path: the YAML file; ``None`` returns the all-defaults configuration.

    Raises:
        ConfigError: the file is missing or unreadable, is not valid YAML (duplicate keys
            included), its top level is not a mapping, or any value is invalid.
    """
    if path is None:
        return ServerConfig()
    source = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as stream:
            text = stream.read()
    except FileNotFoundError:
        raise ConfigError(f"{source}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source}: cannot read config file: {exc}") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError(_yaml_error_line(source, exc)) from None
    if data is None:  # empty file or only comments
        data = {}
    return parse_config(data, source=source)


def with_overrides(config: ServerConfig, **dotted: Any) -> ServerConfig:
    """Return a re-validated copy of ``config`` with dotted keys replaced.

    Example: ``with_overrides(cfg, **{"network.port": 0, "network.ip": "::1"})``.  Values
    are validated as strictly as file values (pass ints, not strings).  A mapping given for
    a whole section (``**{"vad": {"mode": 3}}``) is merged into that section.

    Raises:
        ConfigError: an override names an unknown key or has an invalid value
            (source ``<overrides>``).
        UsageError: ``config`` is not a ServerConfig or a key is malformed (empty part).
    """
    if not isinstance(config, ServerConfig):
        raise UsageError(f"with_overrides() needs a ServerConfig, got {type(config).__name__}")
    data: dict[str, Any] = config.model_dump()
    for key, value in dotted.items():
        parts = key.split(".")
        if not all(parts):
            raise UsageError(f"malformed override key {key!r}")
        node = data
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                prefix = ".".join(parts[: depth + 1])
                raise ConfigError(f"<overrides>: {key}: {prefix} is not a section")
            node = child
        last = parts[-1]
        if isinstance(value, Mapping) and isinstance(node.get(last), dict):
            node[last] = {**node[last], **value}
        else:
            node[last] = value
    return parse_config(data, source="<overrides>")
