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

:class:`ErrorReason` is the one list of reasons a session or connection can end with: its
value is the wire text of ``%E`` (and of the ``reason`` in logs and the results sinks), and each
carries the WebSocket close code (RFC 6455 section 7.4.1: 1008 policy violation for what the
peer did wrong, 1013 try again later for overload, 1011 internal error for ours, 1009 message
too big) and the HTTP status (RFC 9110) a web door answers it with.
"""

from __future__ import annotations

import enum
from typing import ClassVar

__all__ = [
    "ErrorReason",
    "WhisperStreamingError",
    "RemoteProtocolError",
    "HandshakeError",
    "MediaError",
    "MediaEmptyError",
    "MediaCorruptError",
    "MediaNoAudioError",
    "MediaUnsupportedCodecError",
    "MediaTooLongError",
    "UsageError",
    "ConfigError",
    "ModelError",
    "AsrError",
    "BackendUnavailableError",
    "TranscriptionStopped",
    "SentimentError",
    "EnrollmentError",
    "ServerError",
    "ConnectionClosedError",
    "JobError",
]


class ErrorReason(str, enum.Enum):
    """Why a session or connection ended; the value is the ASCII wire text (``%E`` data).

    ``peer_fault``: the peer did something wrong (as opposed to overload or a failure of ours).
    """

    # the V1.0 codec (whisper_streaming.wire.protocol)
    BAD_MAGIC = "BAD_MAGIC"
    UNKNOWN_HEADER = "UNKNOWN_HEADER"
    BAD_LENGTH = "BAD_LENGTH"
    TRUNCATED = "TRUNCATED"
    BAD_TEXT = "BAD_TEXT"
    BAD_USER_ID = "BAD_USER_ID"
    BAD_OPTION = "BAD_OPTION"
    BAD_RESULT = "BAD_RESULT"
    UNEXPECTED_PACKET = "UNEXPECTED_PACKET"
    ODD_PCM_LENGTH = "ODD_PCM_LENGTH"
    # the session (whisper_streaming.pipeline.session)
    DUPLICATE_USER = "DUPLICATE_USER"
    BEGIN_BEFORE_USER = "BEGIN_BEFORE_USER"
    ALREADY_STREAMING = "ALREADY_STREAMING"
    AUDIO_BEFORE_BEGIN = "AUDIO_BEFORE_BEGIN"
    FINISH_BEFORE_BEGIN = "FINISH_BEFORE_BEGIN"
    OPTIONS_BEFORE_USER = "OPTIONS_BEFORE_USER"
    OPTIONS_WHILE_STREAMING = "OPTIONS_WHILE_STREAMING"
    TIMEOUT = "TIMEOUT"
    STREAM_TOO_LONG = "STREAM_TOO_LONG"
    ASR_FAILED = "ASR_FAILED"
    # admission and shutdown (whisper_streaming.runtime)
    SERVER_TOO_BUSY = "SERVER_TOO_BUSY"
    TOO_MANY_CONNECTIONS = "TOO_MANY_CONNECTIONS"
    SHUTTING_DOWN = "SHUTTING_DOWN"
    # tokens (config ``auth``): a stream without a valid token, a wrong token
    UNAUTHORIZED = "UNAUTHORIZED"
    # the AudioSocket codec (whisper_streaming.wire.audiosocket)
    UUID_NOT_FIRST = "UUID_NOT_FIRST"
    UUID_REPEATED = "UUID_REPEATED"
    BAD_UUID_LENGTH = "BAD_UUID_LENGTH"
    UNKNOWN_KIND = "UNKNOWN_KIND"
    FRAME_TOO_LARGE = "FRAME_TOO_LARGE"
    BAD_DTMF = "BAD_DTMF"
    UNEXPECTED_DATA = "UNEXPECTED_DATA"
    DATA_AFTER_HANGUP = "DATA_AFTER_HANGUP"
    # the WebSocket door (whisper_streaming.wire.ws_session, whisper_streaming.transports.web)
    BAD_MESSAGE = "BAD_MESSAGE"
    UNKNOWN_MESSAGE = "UNKNOWN_MESSAGE"
    BAD_ORIGIN = "BAD_ORIGIN"
    # an uploaded media file (whisper_streaming.media.decode)
    MEDIA_EMPTY = "MEDIA_EMPTY"
    MEDIA_CORRUPT = "MEDIA_CORRUPT"
    MEDIA_NO_AUDIO = "MEDIA_NO_AUDIO"
    MEDIA_UNSUPPORTED_CODEC = "MEDIA_UNSUPPORTED_CODEC"
    MEDIA_TOO_LONG = "MEDIA_TOO_LONG"
    # speaker enrolment (whisper_streaming.core.speakers): peer faults, close 1008, HTTP 400
    ENROLL_TOO_SHORT = "ENROLL_TOO_SHORT"
    DUPLICATE_SPEAKER = "DUPLICATE_SPEAKER"
    BAD_SPEAKER_NAME = "BAD_SPEAKER_NAME"
    UNKNOWN_SPEAKER = "UNKNOWN_SPEAKER"  # %o speakers= names a voice not saved (speakers.dir)
    # the redis backend (whisper_streaming.backends.redis_backend): Redis unreachable, or no worker
    # host alive, for longer than backend.unavailable_grace_s; ours, close 1013, HTTP 503
    BACKEND_UNAVAILABLE = "BACKEND_UNAVAILABLE"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @property
    def peer_fault(self) -> bool:
        return self not in _NOT_PEER_FAULT

    @property
    def ws_close_code(self) -> int:
        """The WebSocket close code (RFC 6455 7.4.1) a WebSocket door closes with."""
        return _WS_CLOSE.get(self, 1008)

    @property
    def http_status(self) -> int:
        """The HTTP status (RFC 9110 section 15) an HTTP door answers with."""
        return _HTTP_STATUS.get(self, 400)


_NOT_PEER_FAULT = frozenset({ErrorReason.SERVER_TOO_BUSY, ErrorReason.TOO_MANY_CONNECTIONS, ErrorReason.ASR_FAILED, ErrorReason.TIMEOUT,
                             ErrorReason.SHUTTING_DOWN, ErrorReason.BACKEND_UNAVAILABLE})
_WS_CLOSE = {
    ErrorReason.SHUTTING_DOWN: 1001,
    ErrorReason.SERVER_TOO_BUSY: 1013,
    ErrorReason.TOO_MANY_CONNECTIONS: 1013,
    ErrorReason.ASR_FAILED: 1011,
    ErrorReason.BACKEND_UNAVAILABLE: 1013,
    ErrorReason.TIMEOUT: 1001,
    ErrorReason.STREAM_TOO_LONG: 1009,
    ErrorReason.BAD_LENGTH: 1009,
    ErrorReason.FRAME_TOO_LARGE: 1009,
    ErrorReason.UNAUTHORIZED: 1008,
}
_HTTP_STATUS = {
    ErrorReason.SHUTTING_DOWN: 503,
    ErrorReason.SERVER_TOO_BUSY: 503,
    ErrorReason.TOO_MANY_CONNECTIONS: 429,
    ErrorReason.ASR_FAILED: 500,
    ErrorReason.BACKEND_UNAVAILABLE: 503,
    ErrorReason.TIMEOUT: 408,
    ErrorReason.STREAM_TOO_LONG: 413,
    ErrorReason.BAD_LENGTH: 413,
    ErrorReason.FRAME_TOO_LARGE: 413,
    ErrorReason.BAD_ORIGIN: 403,
    ErrorReason.UNAUTHORIZED: 401,
    # RFC 9110 15.5.21 422 Unprocessable Content: the upload arrived intact but is not usable audio
    ErrorReason.MEDIA_EMPTY: 422,
    ErrorReason.MEDIA_CORRUPT: 422,
    ErrorReason.MEDIA_NO_AUDIO: 422,
    ErrorReason.MEDIA_UNSUPPORTED_CODEC: 415,
    ErrorReason.MEDIA_TOO_LONG: 413,
}


class WhisperStreamingError(Exception):
    """Root of every exception this package raises on purpose."""


class RemoteProtocolError(WhisperStreamingError):
    """The peer violated the wire protocol.

    Attributes:
        reason: the :class:`ErrorReason` sent to the peer in ``%E`` (never contains
            peer-supplied bytes).
        detail: human-readable explanation for logs; may quote sanitized peer bytes.
    """

    def __init__(self, reason: str | ErrorReason, detail: str = "") -> None:
        self.reason = ErrorReason(reason)
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class HandshakeError(RemoteProtocolError):
    """The first bytes were not the magic string; the connection is closed without reply."""

    def __init__(self, detail: str = "bad magic string") -> None:
        super().__init__("BAD_MAGIC", detail)


class MediaError(RemoteProtocolError):
    """An uploaded audio or video file cannot be used (:func:`whisper_streaming.media.decode_media`).

    The peer's fault, like a protocol error: ``reason`` is one of the ``MEDIA_*`` members of
    :class:`ErrorReason` (its ``http_status`` is the answer's status) and ``detail`` is a plain
    sentence safe to show to an HTTP client (never FFmpeg's message, a traceback or a path).
    """

    REASON: ClassVar[ErrorReason] = ErrorReason.MEDIA_CORRUPT

    def __init__(self, detail: str) -> None:
        super().__init__(self.REASON, detail)


class MediaEmptyError(MediaError):
    """The upload is empty, or its audio stream holds no samples."""

    REASON = ErrorReason.MEDIA_EMPTY


class MediaCorruptError(MediaError):
    """The bytes are not a readable container (random data, cut before its header or index) or
    its audio does not decode."""

    REASON = ErrorReason.MEDIA_CORRUPT


class MediaNoAudioError(MediaError):
    """The container has no audio stream (a video-only file)."""

    REASON = ErrorReason.MEDIA_NO_AUDIO


class MediaUnsupportedCodecError(MediaError):
    """The audio stream's codec has no decoder in the bundled FFmpeg."""

    REASON = ErrorReason.MEDIA_UNSUPPORTED_CODEC


class MediaTooLongError(MediaError):
    """The audio is longer than the caller's limit (``max_duration_s``)."""

    REASON = ErrorReason.MEDIA_TOO_LONG


class EnrollmentError(RemoteProtocolError):
    """A speaker enrolment the peer asked for cannot be done (:mod:`whisper_streaming.core.speakers`).

    ``reason``: ``ENROLL_TOO_SHORT`` (too little speech), ``DUPLICATE_SPEAKER`` (the name is
    already enrolled in this session) or ``BAD_SPEAKER_NAME``; peer faults (WebSocket close 1008,
    HTTP 400).  ``detail``: a plain sentence safe to show to the peer.
    """


class UsageError(WhisperStreamingError):
    """Our caller misused the API (wrong state, bad argument); not the peer's fault."""


class ConfigError(WhisperStreamingError):
    """The configuration file or options are invalid. The message lists every problem."""


class ModelError(WhisperStreamingError):
    """A model could not be found, assembled, verified or loaded."""


class AsrError(WhisperStreamingError):
    """Transcription failed (engine exception, worker crash after retry, overload).

    ``reason``: what the session that needed it ends with (``%E``).
    """

    reason: ClassVar[ErrorReason] = ErrorReason.ASR_FAILED


class TranscriptionStopped(WhisperStreamingError):
    """An engine stopped a transcription because its caller withdrew it (``should_stop``
    returned true): nobody waits for the text, so there is no result and nothing failed."""


class BackendUnavailableError(AsrError):
    """The backend cannot reach its workers (Redis down, or no worker host alive) for longer
    than it waits for them to return; the sessions that needed it end with
    ``BACKEND_UNAVAILABLE``."""

    reason: ClassVar[ErrorReason] = ErrorReason.BACKEND_UNAVAILABLE


class SentimentError(WhisperStreamingError):
    """A sentiment engine could not be loaded or failed on a text."""


class ServerError(WhisperStreamingError):
    """The server sent ``%E``; ``reason`` is its reason code (e.g. ``SERVER_TOO_BUSY``)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class ConnectionClosedError(WhisperStreamingError):
    """The peer closed the connection before the expected packet arrived."""


class JobError(WhisperStreamingError):
    """A batch job did not complete (seen by a client such as ``whisper-streaming-transcribe``):
    the server refused it (``code`` ``HTTP_<status>``) or the job failed or was cancelled
    (``code`` from the job's ``error``, or ``cancelled``); ``message`` says why."""

    def __init__(self, code: str, message: str = "") -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}" if message else code)
