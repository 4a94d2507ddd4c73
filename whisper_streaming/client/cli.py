"""``tcp_client.py``: stream an audio file to the server and print each ``%R`` as it arrives.

``python tcp_client.py --ip localhost --port 5000 --ifn test.pcm [--user NAME] [--speed 1.0]``
streams raw s16le 16 kHz mono PCM, or any WAV/FLAC (mixed to mono, resampled with soxr),
in 30 ms packets at real-time pace (``--speed 2`` twice as fast, ``--speed 0`` as fast as
possible), then sends ``%f`` and waits for ``%F``.  ``--status`` prints ``%C`` and exits.
``--rate 8000`` and ``--encoding mulaw|alaw`` convert the file to that rate (soxr) and encoding
(G.711) and send it with ``%o sample_rate=...;encoding=...`` before ``%b``, in 30 ms packets
at that rate (240 samples at 8 kHz); the defaults (16000, pcm_s16le) send no ``%o``.
``--sentiment`` opts in (``%o sentiment=1``): each result line ends with ``[negative 0.912]``
(or ``[unsupported: ko]``) and the stream's summary follows the last result.
``--language CODE`` (a Whisper language code such as ``en``/``ko``, or ``auto``: detect per
stream) sends ``%o language=CODE``; without it the server's ``model.language`` applies.  The
options given go in one ``%o`` (``sentiment=1;sample_rate=8000;encoding=mulaw;language=en``).
A server that answers ``%O`` without ``language`` (older than it) gets a warning on stderr and
the stream goes on in the server's language.
``--partials`` asks for partial hypotheses (``%o partials=1``) and shows the utterance in
progress: on a terminal one line redrawn in place (``\\r`` + clear to end of line), the stable
prefix plain and the unstable tail dimmed, replaced by the final result line when the ``%R``
arrives (an empty ``%P`` clears it); when stdout is not a terminal, each partial on its own
line, ``partial: start end : STABLE<TAB>UNSTABLE`` (see :class:`TranscriptPrinter`).  Without
``--partials`` the output is what it always was.

``--tls`` connects with TLS (a server with config ``tls``), verifying its certificate against the
system's CAs, or against ``--ca FILE`` (PEM; implies ``--tls``) for a private CA or a
self-signed certificate.  ``--token TOKEN`` (default: the environment variable
``WHISPER_STREAMING_TOKEN``, which keeps it out of the process list) sends ``%o token=...``
right after ``%u`` (a server with config ``auth``); with ``--status`` it logs in first, so
``%C`` shows the full status rather than the limited line.

Exit codes: 0 success; 1 cannot connect / connection lost (a failed TLS handshake included);
2 the server sent ``%E`` (``UNAUTHORIZED``: a missing or wrong token); 3 bad arguments,
unreadable audio or CA file.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import sys
import time
import unicodedata
from typing import Sequence, TextIO

from whisper_streaming.core import audio_format
from whisper_streaming.client.audio_files import RAW_SUFFIXES, load_pcm16
from whisper_streaming.client.streaming import AsyncStreamingClient
from whisper_streaming.errors import ConnectionClosedError, ServerError, UsageError
from whisper_streaming.core.auth import TOKEN_ENV
from whisper_streaming.core.options import normalize_language
from whisper_streaming.core.text import sanitize_text
from whisper_streaming.client.streaming import Partial, Result
from whisper_streaming.wire.protocol import Summary, format_result_text
from whisper_streaming.analyzers.sentiment import UNSUPPORTED

__all__ = ["client_main", "stream_file", "format_result_line", "format_partial_line", "TranscriptPrinter", "load_for_stream",
           "client_ssl_context", "TOKEN_ENV"]

PACKET_SAMPLES = 480
"""30 ms at 16 kHz, the frame size of the original client."""

PACKET_MS = 30


def load_for_stream(path: str, *, sample_rate: int = audio_format.DEFAULT_SAMPLE_RATE_HZ, encoding: str = "pcm_s16le") -> bytes:
    """Read ``path`` (raw s16le 16 kHz, or WAV/FLAC...) as wire bytes at ``sample_rate`` in ``encoding``."""
    from pathlib import Path

    samples = load_pcm16(path, sample_rate_hz=sample_rate)
    if Path(path).suffix.lower() in RAW_SUFFIXES:  # raw files are 16 kHz
        samples = audio_format.resample(samples, audio_format.DEFAULT_SAMPLE_RATE_HZ, sample_rate)
    return audio_format.encode(samples, encoding)


def format_result_line(result: Result) -> str:
    """``start end : text``, plus ``  [negative 0.912]`` / ``  [unsupported: ko]`` with a sentiment,
    and ``  <alice 0.812>`` with a speaker."""
    line = format_result_text(result.start_s, result.end_s, result.text)
    s = result.sentiment
    if s is not None:
        line = f"{line}  [{UNSUPPORTED}: {s.language}]" if s.label == UNSUPPORTED else f"{line}  [{s.label} {s.score:.3f}]"
    if result.speaker is not None:
        line = f"{line}  <{result.speaker.label} {result.speaker.score:.3f}>"
    return line


def format_partial_line(partial: Partial) -> str:
    """A partial on its own line (stdout not a terminal): ``partial: start end : STABLE<TAB>UNSTABLE``.

    The part after ``partial: `` is the ``%P`` data (result text never contains a tab, so the tab
    always separates the stable prefix from the unstable tail); the empty partial that clears an
    utterance is ``partial: start end : <TAB>``.
    """
    return f"partial: {format_result_text(partial.start_s, partial.end_s, sanitize_text(partial.stable))}\t{sanitize_text(partial.unstable)}"


DIM = "\x1b[2m"
RESET = "\x1b[0m"
CLEAR_TO_EOL = "\x1b[K"
ELLIPSIS = "\u2026"


def _cells(ch: str) -> int:
    """Terminal columns one character takes (0 combining, 2 wide/full-width, else 1)."""
    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


class TranscriptPrinter:
    """Prints what a stream sends: final result lines, partial hypotheses, the summary.

    ``live`` (default: ``out.isatty()``): a partial is drawn in place on one terminal line,
    ``\\r`` + the stable prefix plain + the unstable tail dimmed (``\\x1b[2m``...``\\x1b[0m``) +
    clear to end of line (``\\x1b[K``), cut from the left to fit the terminal's width (a wrapped
    line could not be redrawn); the final result replaces the line and ends it with a newline;
    an empty partial clears it.  Not live: each partial on its own line
    (:func:`format_partial_line`).  Final lines are written exactly as :func:`print` would, so
    a stream without partials prints what it always did.
    """

    def __init__(self, out: TextIO, *, live: bool | None = None, columns: int | None = None) -> None:
        self.out = out
        if live is None:
            isatty = getattr(out, "isatty", None)
            live = bool(isatty and isatty())
        self.live = live
        self._columns = columns
        self._showing = False  # a partial is drawn on the current line (live mode)

    def partial(self, partial: Partial) -> None:
        if not self.live:
            self._write(format_partial_line(partial) + "\n")
        elif partial.is_clear:
            if self._showing:
                self._write("\r" + CLEAR_TO_EOL)
                self._showing = False
        else:
            self._write("\r" + self._render(partial) + CLEAR_TO_EOL)
            self._showing = True

    def line(self, text: str) -> None:
        """A final result line (or any other complete line): replaces a partial being shown."""
        self._write(("\r" + CLEAR_TO_EOL if self._showing else "") + text + "\n")
        self._showing = False

    def close(self) -> None:
        """The stream ended: clear a partial still shown (it was never confirmed by a ``%R``)."""
        if self._showing:
            self._write("\r" + CLEAR_TO_EOL)
            self._showing = False

    def _write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def _width(self) -> int:
        if self._columns is not None:
            return self._columns
        try:
            columns = os.get_terminal_size(self.out.fileno()).columns
        except (AttributeError, OSError, ValueError):
            columns = 0
        return columns if columns > 0 else 80  # a terminal that does not say (a fresh pty): 80

    def _render(self, partial: Partial) -> str:
        stable = sanitize_text(partial.stable)  # no escape sequence from the peer reaches the terminal
        unstable = (" " if stable and partial.unstable else "") + sanitize_text(partial.unstable)
        room = max(self._width() - 1, 2)  # never touch the last column (some terminals wrap there)
        if sum(map(_cells, stable + unstable)) > room:  # keep the newest words: cut from the left
            kept, used = 0, _cells(ELLIPSIS)
            for ch in reversed(stable + unstable):
                used += _cells(ch)
                if used > room:
                    break
                kept += 1
            cut = len(stable) + len(unstable) - kept  # characters dropped from the left
            if cut < len(stable):
                stable = ELLIPSIS + stable[cut:]
            else:
                stable, unstable = ELLIPSIS, unstable[cut - len(stable):]
        return stable + (DIM + unstable + RESET if unstable else "")


async def stream_file(client: AsyncStreamingClient, pcm: bytes, *, speed: float, packet_samples: int | None = None, out=None,  # type: ignore[no-untyped-def]
                      sample_rate: int = audio_format.DEFAULT_SAMPLE_RATE_HZ, encoding: str = "pcm_s16le") -> list[Result]:
    """Send ``pcm`` (wire bytes at ``sample_rate`` in ``encoding``, as negotiated) paced at
    ``speed`` x real time (0 = unpaced) in packets of ``packet_samples`` (default 30 ms),
    printing results as they come (and the stream's summary, if the server sends one) to
    ``out``, with partial hypotheses if the client asked for them (:class:`TranscriptPrinter`).

    Returns every final result of the stream (never a partial).
    """
    results: list[Result] = []
    shown = TranscriptPrinter(out) if out is not None else None

    async def printer() -> None:
        while True:
            event = await client.receive()
            if isinstance(event, Partial):
                if shown is not None:
                    shown.partial(event)
                continue
            if isinstance(event, Summary):
                if shown is not None:
                    shown.line(f"summary:\n{event.text}")
                continue
            if not isinstance(event, Result):
                return
            results.append(event)
            if shown is not None:
                shown.line(format_result_line(event))

    await client.begin()
    task = asyncio.create_task(printer())
    width = 2 if encoding == "pcm_s16le" else 1
    if packet_samples is None:
        packet_samples = sample_rate * PACKET_MS // 1000
    step = packet_samples * width
    t0 = time.monotonic()
    try:
        for i in range(0, len(pcm), step):
            await client.send_audio(pcm[i : i + step])
            if speed > 0:
                due = t0 + (i + step) / width / sample_rate / speed
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            if task.done():
                break  # the server ended the stream (error): stop sending
        if not task.done():
            client.send_finish()
        await task
    finally:
        task.cancel()
        if shown is not None:
            shown.close()
    return results


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="tcp_client.py", description="Stream audio to a whisper_streaming server and print the transcript.")
    p.add_argument("--ip", default="localhost", help="server address (default: localhost)")
    p.add_argument("--port", type=int, default=5000, help="server port (default: 5000)")
    p.add_argument("--ifn", help="input: raw s16le 16 kHz mono .pcm, or a WAV/FLAC file")
    p.add_argument("--user", default="tcp_client", help="user id sent with %%u (default: tcp_client)")
    p.add_argument("--speed", type=float, default=1.0, help="pace as a multiple of real time; 0 = as fast as possible (default: 1)")
    p.add_argument("--status", action="store_true", help="send %%c, print the %%C status and exit")
    p.add_argument("--sentiment", action="store_true", help="ask for the sentiment of each result and a summary at the end (%%o sentiment=1)")
    p.add_argument("--rate", type=int, choices=audio_format.SAMPLE_RATES_HZ, default=audio_format.DEFAULT_SAMPLE_RATE_HZ,
                   help="send the audio at this sample rate (%%o sample_rate; default: 16000)")
    p.add_argument("--encoding", choices=audio_format.ENCODINGS, default="pcm_s16le",
                   help="send the audio in this encoding (%%o encoding; default: pcm_s16le)")
    p.add_argument("--enroll", action="append", default=[], metavar="NAME=FILE", type=_enrolment,
                   help="enrol a speaker from a 3-5 s voice sample before the main file (repeatable); the main file's "
                        "results then carry the best-matching name (%%o enroll=NAME)")
    p.add_argument("--speakers", metavar="auto|off|NAMES",
                   help="label results: auto (S1, S2... by clustering), off, or saved voices alice,bob (%%o speakers)")
    p.add_argument("--language", metavar="CODE",
                   help="transcribe in this language: a Whisper language code (en, ko, ...) or auto to detect it per stream "
                        "(%%o language; default: the server's model.language)")
    p.add_argument("--partials", action="store_true",
                   help="show partial hypotheses of the utterance in progress (%%o partials=1): on a terminal one line "
                        "redrawn in place, the unstable tail dimmed; otherwise 'partial: ' lines")
    p.add_argument("--tls", action="store_true", help="connect with TLS, verifying the server's certificate (system CAs, or --ca)")
    p.add_argument("--ca", metavar="FILE", help="trust this PEM CA/certificate file for --tls (implies --tls)")
    p.add_argument("--token", default=os.environ.get(TOKEN_ENV) or None,
                   help=f"access token, sent with %%o token=... after %%u (default: ${TOKEN_ENV}, which keeps it out of the process list)")
    p.add_argument("--timeout", type=float, default=10.0, help="connect/login timeout in seconds (default: 10)")
    args = p.parse_args(argv)
    if not args.status and not args.ifn:
        p.error("--ifn is required (or use --status)")
    if args.speed < 0:
        p.error("--speed must be >= 0")
    return args


def client_ssl_context(tls: bool, ca_file: str | None) -> ssl.SSLContext | None:
    """The client's TLS context: None without ``tls`` and ``ca_file``; the system's CAs with
    ``tls``; only ``ca_file`` (PEM) when given.  The server's name is always checked.

    Raises:
        OSError, ssl.SSLError: ``ca_file`` cannot be read or holds no PEM certificate.
    """
    if not tls and ca_file is None:
        return None
    return ssl.create_default_context(cafile=ca_file)


async def _run(args: argparse.Namespace, tls: ssl.SSLContext | None) -> int:
    pcm = b"" if args.status else load_for_stream(args.ifn, sample_rate=args.rate, encoding=args.encoding)
    login = None if args.status and args.token is None else args.user  # a token shows the full status only after %u
    client = await AsyncStreamingClient.connect(args.ip, args.port, user_id=login, timeout_s=args.timeout, ssl=tls, token=args.token)
    try:
        if args.status:
            print(await asyncio.wait_for(client.status(), args.timeout))
            return 0
        for name, path in args.enroll:  # voice samples first, each a stream of its own
            await asyncio.wait_for(client.set_options(enroll=name), args.timeout)
            await stream_file(client, load_for_stream(path, sample_rate=args.rate, encoding=args.encoding), speed=args.speed,
                              sample_rate=args.rate, encoding=args.encoding)
            summary = client.last_summary.text if client.last_summary is not None else ""
            print(summary.replace("\n", ", ") if summary.startswith("enrolled:") else f"warning: {name} not enrolled", file=sys.stderr)
        wanted = _wanted_options(args)
        if wanted:  # one %o for all of them; none at all with the defaults
            accepted = await asyncio.wait_for(client.set_options(**wanted), args.timeout)
            answered = accepted or "nothing"
            if args.sentiment and not accepted.get("sentiment"):
                print("warning: the server does not do sentiment (answered %s)" % answered, file=sys.stderr)
            if args.language is not None and accepted.get("language") != args.language:
                why = "does not know %o language (an older server?)" if "language" not in accepted else "gives language=%s" % accepted["language"]
                print("warning: the server %s: it transcribes in its own language (answered %s)" % (why, answered), file=sys.stderr)
            if args.partials and not accepted.get("partials"):
                print("warning: the server does not send partials (answered %s): finals only" % answered, file=sys.stderr)
            audio = {k: v for k, v in wanted.items() if k in ("sample_rate", "encoding")}
            if any(accepted.get(k) != v for k, v in audio.items()):
                print("error: the server does not take %s (answered %s)" % (audio, answered), file=sys.stderr)
                return 3
        await stream_file(client, pcm, speed=args.speed, out=sys.stdout, sample_rate=args.rate, encoding=args.encoding)
        return 0
    finally:
        await client.close()


def _enrolment(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError("expected NAME=FILE")
    return name, path


def _wanted_options(args: argparse.Namespace) -> dict[str, object]:
    """The ``%o`` options the arguments ask for, in wire order (empty with the defaults)."""
    wanted: dict[str, object] = {}
    if args.sentiment:
        wanted["sentiment"] = True
    if (args.rate, args.encoding) != (audio_format.DEFAULT_SAMPLE_RATE_HZ, audio_format.DEFAULT_ENCODING):
        wanted.update(sample_rate=args.rate, encoding=args.encoding)
    if args.language is not None:
        wanted["language"] = args.language
    if args.partials:
        wanted["partials"] = True
    if args.speakers is not None:
        wanted["speakers"] = args.speakers
    return wanted


def client_main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the exit code."""
    args = _parse_args(argv)
    if args.language is not None:
        try:
            args.language = normalize_language(args.language)
        except ValueError as exc:
            print(f"error: --language {args.language!r}: {exc}", file=sys.stderr)
            return 3
    try:
        tls = client_ssl_context(args.tls, args.ca)
    except (OSError, ssl.SSLError) as exc:
        print(f"error: --ca {args.ca!r}: cannot load it as PEM certificates: {exc}", file=sys.stderr)
        return 3
    try:
        return asyncio.run(_run(args, tls))
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except ServerError as exc:
        hint = f" (a missing or wrong --token / ${TOKEN_ENV})" if exc.reason == "UNAUTHORIZED" else ""
        print(f"error: the server ended the session: {exc.reason}{hint}", file=sys.stderr)
        return 2
    except (OSError, asyncio.TimeoutError, ConnectionClosedError) as exc:
        print(f"error: cannot talk to {args.ip}:{args.port}: {exc or type(exc).__name__}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
