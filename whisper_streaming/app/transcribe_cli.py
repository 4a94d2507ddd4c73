"""``whisper-streaming-transcribe``: transcribe recorded files, in-process or through a server.

``whisper-streaming-transcribe FILE... [--diarize] [--num-speakers N] [--features] [--words]
[--language CODE] [--format json|verbose_json|srt|vtt|txt] [--output-dir DIR] [--server URL]
[--token T] [--config config_vad.yaml]``

Without ``--server`` each file is analysed in this process
(:func:`whisper_streaming.app.batch_local.transcribe_file`, with ``--config`` for the model and
worker settings).  With ``--server URL`` each file is uploaded as a job, ``POST {URL}/v1/jobs``
(multipart: ``file``, ``language``, ``diarize``, ``num_speakers``, ``features``,
``timestamp_granularities[]`` (``segment``, and ``word`` with ``--words``),
``response_format=verbose_json``), then ``GET {URL}/v1/jobs/{id}`` is polled until the job is
``completed`` (its ``result`` is a ``verbose_json`` object), ``failed`` or ``cancelled``;
``--token`` (default: ``$WHISPER_STREAMING_TOKEN``, which keeps it out of the process list) is
sent as ``Authorization: Bearer``.  Ctrl-C cancels the job in progress (``DELETE
{URL}/v1/jobs/{id}``) and exits 130.

Progress goes to stderr: a tqdm bar per file on a terminal, else plain lines
(``call.wav: 45% transcribing``) whenever the stage changes or the progress passes a multiple of
5 %; the progress shown never goes back.  The result (:mod:`whisper_streaming.batch.formats`;
``txt`` is OpenAI's ``text``) goes to stdout for one file without ``--output-dir``, else to
``<stem>.<ext>`` in ``--output-dir`` (created when missing) or beside each file.  A file that
fails gets one line ``error: FILE: reason`` on stderr (no traceback) and the others go on.

Exit codes: 0 every file done; 1 some file failed; 2 bad arguments; 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TextIO

import httpx2

from whisper_streaming.batch.formats import render, result_from_verbose_json
from whisper_streaming.batch.request import BatchRequest
from whisper_streaming.core.auth import TOKEN_ENV
from whisper_streaming.core.batch import BatchResult
from whisper_streaming.core.options import LANGUAGE_AUTO, normalize_language
from whisper_streaming.errors import JobError, UsageError, WhisperStreamingError

__all__ = ["transcribe_main", "LocalRunner", "ProgressDisplay", "FORMATS", "EXTENSIONS", "JOBS_PATH", "submit_form"]

log = logging.getLogger(__name__)

FORMATS: dict[str, str] = {"json": "json", "verbose_json": "verbose_json", "srt": "srt", "vtt": "vtt", "txt": "text", "text": "text"}
"""``--format`` value -> :data:`~whisper_streaming.batch.formats.RESPONSE_FORMATS` name."""
EXTENSIONS: dict[str, str] = {"json": "json", "verbose_json": "json", "srt": "srt", "vtt": "vtt", "text": "txt"}
"""Response format -> the output file's extension."""
JOBS_PATH = "/v1/jobs"
"""The server's batch job endpoint."""
PLAIN_STEP_PERCENT = 5.0
"""Plain progress lines are written when the progress passes a multiple of this (or the stage changes)."""

_DONE = frozenset({"completed", "failed", "cancelled"})
_WAITING = frozenset({"queued", "processing"})


class LocalRunner(Protocol):
    """The in-process analysis, :func:`whisper_streaming.app.batch_local.transcribe_file`:
    ``on_progress(percent 0..100, stage)``; returns the file's result."""

    def __call__(self, path: Path, request: BatchRequest, *, config_path: Path | None,
                 on_progress: Callable[[float, str], None]) -> Awaitable[BatchResult]: ...


class ProgressDisplay:
    """One file's progress on ``out``: a tqdm bar when ``live`` (a terminal), else plain lines
    ``NAME: 45% STAGE`` when the stage changes or the progress passes a multiple of
    ``step_percent``.  The progress shown is clamped to [0, 100] and never goes back."""

    def __init__(self, name: str, out: TextIO, *, live: bool, step_percent: float = PLAIN_STEP_PERCENT) -> None:
        self.name = name
        self.out = out
        self.live = live
        self.step_percent = step_percent
        self.percent = 0.0
        self._stage: str | None = None
        self._bar: Any = None
        if live:
            from tqdm import tqdm

            self._bar = tqdm(total=100, desc=name, file=out, leave=True, dynamic_ncols=True,
                             bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]{postfix}")

    def update(self, percent: float, stage: str) -> None:
        """Show ``percent`` (0..100) and the ``stage`` name (a lower value than shown keeps the shown one)."""
        if not math.isfinite(percent):
            percent = self.percent
        shown = min(100.0, max(self.percent, float(percent)))
        if self._bar is not None:
            self._bar.update(shown - self.percent)  # redrawn at most every 0.1 s (tqdm's mininterval) ...
            if stage != self._stage:
                self._bar.set_postfix_str(stage, refresh=True)  # ... and at once when the stage changes
        elif stage != self._stage or int(shown // self.step_percent) > int(self.percent // self.step_percent):
            self.out.write(f"{self.name}: {shown:.0f}% {stage}\n")
            self.out.flush()
        self.percent = shown
        self._stage = stage

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


# --------------------------------------------------------------------------- arguments


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="whisper-streaming-transcribe",
                                description="Transcribe recorded audio or video files, in this process or through a server's batch jobs.")
    p.add_argument("files", nargs="+", metavar="FILE", type=Path, help="audio or video files (WAV, FLAC, MP3, M4A, OGG, MP4, WebM, ...)")
    p.add_argument("--diarize", action="store_true", help="find who spoke when (speaker per segment and word, per-speaker totals)")
    p.add_argument("--num-speakers", type=int, metavar="N", help="the number of speakers, when known (implies --diarize)")
    p.add_argument("--features", action="store_true", help="acoustic features per segment (level, pitch, spectrum, MFCC)")
    p.add_argument("--words", action="store_true", help="word timestamps (in verbose_json)")
    p.add_argument("--language", metavar="CODE", help="a Whisper language code (en, ko, ...), or auto to detect it (default: auto)")
    p.add_argument("--format", choices=("json", "verbose_json", "srt", "vtt", "txt"), default="txt",
                   help="output format (default: txt; json and verbose_json as OpenAI's API answers them)")
    p.add_argument("--output-dir", type=Path, metavar="DIR",
                   help="write <stem>.<ext> here (default: stdout for one file, else beside each file)")
    p.add_argument("--server", metavar="URL", help="send the files to this server (http://host:port) instead of transcribing here")
    p.add_argument("--token", default=os.environ.get(TOKEN_ENV) or None,
                   help=f"access token for --server, sent as Authorization: Bearer (default: ${TOKEN_ENV})")
    p.add_argument("--config", type=Path, metavar="YAML", help="server config for a local run (model, workers), e.g. config_vad.yaml")
    p.add_argument("--poll-interval", type=float, default=0.5, metavar="S", help="seconds between job status requests (default: 0.5)")
    p.add_argument("--timeout", type=float, default=60.0, metavar="S", help="HTTP connect/read/write timeout in seconds (default: 60)")
    args = p.parse_args(argv)
    if args.num_speakers is not None:
        args.diarize = True
    if args.language is not None:
        try:
            language = normalize_language(args.language)
        except ValueError as exc:
            p.error(f"--language {args.language!r}: {exc}")
        args.language = None if language == LANGUAGE_AUTO else language
    if args.server is not None:
        if not args.server.startswith(("http://", "https://")):
            p.error("--server must be an http:// or https:// URL")
        if args.config is not None:
            p.error("--config is for a local run; the server uses its own")
    if args.poll_interval <= 0 or args.timeout <= 0:
        p.error("--poll-interval and --timeout must be > 0")
    try:
        args.request = BatchRequest(language=args.language, word_timestamps=args.words, diarize=args.diarize,
                                    num_speakers=args.num_speakers, features=args.features)
    except UsageError as exc:
        p.error(str(exc))
    args.response_format = FORMATS[args.format]
    return args


# --------------------------------------------------------------------------- server mode


def submit_form(request: BatchRequest) -> dict[str, str | list[str]]:
    """The multipart fields (besides ``file``) of ``POST /v1/jobs`` for ``request``."""
    form: dict[str, str | list[str]] = {
        "response_format": "verbose_json",
        "diarize": "true" if request.diarize else "false",
        "features": "true" if request.features else "false",
        "timestamp_granularities[]": ["segment", "word"] if request.word_timestamps else ["segment"],
    }
    if request.language is not None:
        form["language"] = request.language
    if request.num_speakers is not None:
        form["num_speakers"] = str(request.num_speakers)
    return form


def _checked(response: httpx2.Response) -> Any:
    """The response's JSON body; :class:`JobError` ``HTTP_<status>`` for an error status, with the
    message (and code) of OpenAI's error shape ``{"error": {"message", "code", ...}}`` or of
    FastAPI's ``{"detail": ...}``."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code >= 400:
        message = ""
        if isinstance(body, dict):
            error = body.get("error")
            detail = error.get("message") if isinstance(error, dict) else body.get("detail", error)
            message = detail if isinstance(detail, str) else json.dumps(detail) if detail is not None else ""
            code = error.get("code") if isinstance(error, dict) else None
            if code:
                message = f"{code}: {message}" if message else str(code)
        raise JobError(f"HTTP_{response.status_code}", message or response.reason_phrase)
    if not isinstance(body, dict):
        raise JobError("BAD_RESPONSE", f"{response.request.method} {response.request.url.path} did not answer a JSON object")
    return body


def _job_failure(job: dict[str, Any]) -> JobError:
    error = job.get("error")
    if isinstance(error, dict):
        return JobError(str(error.get("code") or job.get("status")), str(error.get("message") or ""))
    return JobError(str(job.get("status")), str(error or ""))


def _server_transcribe(client: httpx2.Client, base: str, path: Path, request: BatchRequest, poll_s: float,
                       on_progress: Callable[[float, str], None]) -> BatchResult:
    with path.open("rb") as fh:
        job = _checked(client.post(base + JOBS_PATH, data=submit_form(request), files={"file": (path.name, fh, "application/octet-stream")}))
    job_id = job.get("id")
    if not isinstance(job_id, str) or not job_id:
        raise JobError("BAD_RESPONSE", "the job was accepted without an id")
    log.debug("%s: job %s", path, job_id)
    try:
        while True:
            status = job.get("status")
            if "progress" in job or status in _WAITING:
                on_progress(float(job.get("progress") or 0.0), str(job.get("stage") or status))
            if status == "completed":
                if not isinstance(job.get("result"), dict):
                    raise JobError("BAD_RESPONSE", "the completed job has no result")
                return result_from_verbose_json(job["result"])
            if status in _DONE:
                raise _job_failure(job)
            if status not in _WAITING:
                raise JobError("BAD_RESPONSE", f"unknown job status {status!r}")
            _sleep(poll_s)
            job = _checked(client.get(f"{base}{JOBS_PATH}/{job_id}"))
    except KeyboardInterrupt:
        _cancel(client, base, job_id)
        raise


def _cancel(client: httpx2.Client, base: str, job_id: str) -> None:
    """Ctrl-C: ask the server to drop the job (best effort, a few seconds at most)."""
    try:
        client.delete(f"{base}{JOBS_PATH}/{job_id}", timeout=5.0)
    except httpx2.HTTPError as exc:
        log.warning("could not cancel job %s: %s", job_id, exc)


def _sleep(seconds: float) -> None:
    time.sleep(seconds)


# --------------------------------------------------------------------------- output


def _reason(exc: BaseException) -> str:
    if isinstance(exc, WhisperStreamingError):
        return str(exc)
    if isinstance(exc, httpx2.HTTPError):
        return f"cannot talk to the server: {type(exc).__name__}: {exc}"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc) if exc.filename is None else f"{exc.strerror or exc}: {exc.filename}"
    return f"{type(exc).__name__}: {exc}"


def _emit(result: BatchResult, path: Path, args: argparse.Namespace, *, to_stdout: bool, err: TextIO) -> None:
    body, _ = render(result, args.response_format, words=args.words)
    text = json.dumps(body, ensure_ascii=False, indent=2) + "\n" if isinstance(body, dict) else body
    if to_stdout:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    folder = args.output_dir if args.output_dir is not None else path.parent
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{path.stem}.{EXTENSIONS[args.response_format]}"
    out.write_text(text, encoding="utf-8")
    err.write(f"{path}: wrote {out}\n")


class _Run:
    """The files of one command line, one after the other."""

    def __init__(self, args: argparse.Namespace, err: TextIO) -> None:
        self.args = args
        self.err = err
        self.live = bool(getattr(err, "isatty", None) and err.isatty())
        self.to_stdout = len(args.files) == 1 and args.output_dir is None
        self.failed = 0

    def display(self, path: Path) -> ProgressDisplay:
        return ProgressDisplay(path.name, self.err, live=self.live)

    def finish(self, path: Path, display: ProgressDisplay, outcome: BatchResult | BaseException) -> None:
        if isinstance(outcome, BaseException):
            display.close()
            log.debug("%s failed", path, exc_info=outcome)
            self.fail(path, outcome)
            return
        display.update(100.0, "done")
        display.close()
        try:
            _emit(outcome, path, self.args, to_stdout=self.to_stdout, err=self.err)
        except (OSError, WhisperStreamingError) as exc:
            self.fail(path, exc)

    def fail(self, path: Path, exc: BaseException) -> None:
        self.failed += 1
        self.err.write(f"error: {path}: {_reason(exc)}\n")
        self.err.flush()

    def missing(self, path: Path) -> bool:
        if path.is_file():
            return False
        self.fail(path, UsageError("no such file" if not path.exists() else "not a regular file"))
        return True

    def server(self, transport: httpx2.BaseTransport | None) -> None:
        base = self.args.server.rstrip("/")
        headers = {"Authorization": f"Bearer {self.args.token}"} if self.args.token else {}
        with httpx2.Client(headers=headers, timeout=httpx2.Timeout(self.args.timeout), transport=transport,
                           follow_redirects=False, trust_env=True) as client:
            for path in self.args.files:
                if self.missing(path):
                    continue
                display = self.display(path)
                outcome: BatchResult | BaseException
                try:
                    outcome = _server_transcribe(client, base, path, self.args.request, self.args.poll_interval, display.update)
                except KeyboardInterrupt:
                    display.close()
                    raise
                except Exception as exc:  # noqa: BLE001 - one line per failed file, the others go on
                    outcome = exc
                self.finish(path, display, outcome)

    async def local(self, runner: LocalRunner) -> None:
        try:
            await self._local(runner)
        finally:
            aclose = getattr(runner, "aclose", None)  # the default runner keeps its workers between files
            if aclose is not None:
                await aclose()

    async def _local(self, runner: LocalRunner) -> None:
        for path in self.args.files:
            if self.missing(path):
                continue
            display = self.display(path)
            outcome: BatchResult | BaseException
            try:
                outcome = await runner(path, self.args.request, config_path=self.args.config, on_progress=display.update)
            except (KeyboardInterrupt, asyncio.CancelledError):
                display.close()
                raise
            except Exception as exc:  # noqa: BLE001 - one line per failed file, the others go on
                outcome = exc
            self.finish(path, display, outcome)


def _default_runner() -> LocalRunner:
    from whisper_streaming.app.batch_local import transcribe_file

    return transcribe_file


def transcribe_main(argv: Sequence[str] | None = None, *, local_runner: LocalRunner | None = None,
                    transport: httpx2.BaseTransport | None = None) -> int:
    """Console entry point; returns the exit code (see the module docstring).

    ``local_runner``: the in-process analysis (default:
    :func:`whisper_streaming.app.batch_local.transcribe_file`); ``transport``: the HTTP transport
    for ``--server`` (default: httpx2's own; tests pass a ``MockTransport``).
    """
    try:
        args = _parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a bad argument (2)
        return int(exc.code or 0)
    run = _Run(args, sys.stderr)
    try:
        if args.server is not None:
            run.server(transport)
        else:
            try:
                runner = local_runner if local_runner is not None else _default_runner()
            except ImportError as exc:
                sys.stderr.write(f"error: transcribing in this process is not available ({exc}); use --server URL\n")
                return 1
            asyncio.run(run.local(runner))
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    return 1 if run.failed else 0


if __name__ == "__main__":
    sys.exit(transcribe_main())
