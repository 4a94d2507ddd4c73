"""One exception tree for the whole package.

Everything this package raises on purpose derives from :class:`WhisperStreamingError`.
Two branches separate *who* did wrong, in the spirit of h11's ``RemoteProtocolError`` /
``LocalProtocolError`` split:

* :class:`RemoteProtocolError` -- the peer sent something the protocol forbids.  It carries
  a short ASCII ``reason`` code (``UNKNOWN_HEADER``, ``BAD_LENGTH`` ...) that the server
  sends back in an ``%E`` packet before closing that one connection.
* :class:`UsageError` -- our caller (code using this library) did something wrong, for
  instance sending ``%s`` before ``%b`` through the client library, or passing a bad option.

Other branches cover configuration, models and ASR failures.
"""

from __future__ import annotations

__all__ = [
    "WhisperStreamingError",
    "RemoteProtocolError",
    "HandshakeError",
    "UsageError",
    "ConfigError",
    "ModelError",
    "AsrError",
    "SentimentError",
    "ServerError",
    "ConnectionClosedError",
]


class WhisperStreamingError(Exception):
    """Root of every exception this package raises on purpose."""


class RemoteProtocolError(WhisperStreamingError):
    """The peer violated the wire protocol.

    Attributes:
        reason: short upper-case ASCII code sent to the peer in ``%E`` (never contains
            peer-supplied bytes).
        detail: human-readable explanation for logs; may quote sanitized peer bytes.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class HandshakeError(RemoteProtocolError):
    """The first bytes were not the magic string; the connection is closed without reply."""

    def __init__(self, detail: str = "bad magic string") -> None:
        super().__init__("BAD_MAGIC", detail)


class UsageError(WhisperStreamingError):
    """Our caller misused the API (wrong state, bad argument); not the peer's fault."""


class ConfigError(WhisperStreamingError):
    """The configuration file or options are invalid. The message lists every problem."""


class ModelError(WhisperStreamingError):
    """A model could not be found, assembled, verified or loaded."""


class AsrError(WhisperStreamingError):
    """Transcription failed (engine exception, worker crash after retry, overload)."""


class SentimentError(WhisperStreamingError):
    """A sentiment engine could not be loaded or failed on a text."""


class ServerError(WhisperStreamingError):
    """The server sent ``%E``; ``reason`` is its reason code (e.g. ``SERVER_TOO_BUSY``)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class ConnectionClosedError(WhisperStreamingError):
    """The peer closed the connection before the expected packet arrived."""
