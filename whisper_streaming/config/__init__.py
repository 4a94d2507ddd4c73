"""Configuration: YAML loading and validation (pydantic), one schema for every section."""

from whisper_streaming.config.schema import *  # noqa: F403
from whisper_streaming.config.schema import __all__  # noqa: F401
