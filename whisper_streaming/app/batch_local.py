"""Batch analysis in this process, for ``whisper-streaming-transcribe`` without ``--server``.

The same machinery as the server's file API: a worker pool from the config (``--config``, or
the defaults: the bundled model, ``model.channel`` workers), the batch transcriber and the
analysis process, started at the first file and kept for the next ones of the same run.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from whisper_streaming.app.wiring import engine_options_from_config, pool_options_from_config, vad_options_from_config
from whisper_streaming.backends.pool import ProcessPool
from whisper_streaming.batch.request import BatchRequest
from whisper_streaming.batch.service import BatchTranscriber
from whisper_streaming.config.schema import load_config
from whisper_streaming.core.batch import BatchResult
from whisper_streaming.media.decode import decode_media

__all__ = ["LocalBatch", "transcribe_file"]

log = logging.getLogger(__name__)


class LocalBatch:
    """A pool and a transcriber for files in this process (async context manager)."""

    def __init__(self, config_path: Path | None) -> None:
        self.config = load_config(config_path)
        self._pool: ProcessPool | None = None
        self._transcriber: BatchTranscriber | None = None
        self._keys = itertools.count(1)

    async def __aenter__(self) -> LocalBatch:
        engine = engine_options_from_config(self.config)
        # no streams here: the partial workers are not needed
        self._pool = ProcessPool(replace(pool_options_from_config(self.config, engine), partial_workers=0))
        await self._pool.start()
        self._transcriber = BatchTranscriber(self._pool, vad_options=vad_options_from_config(self.config),
                                             max_in_flight=max(1, self.config.model.channel), max_speakers=self.config.batch.max_speakers)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the workers and the analysis process (idempotent)."""
        if self._transcriber is not None:
            self._transcriber.close()
            self._transcriber = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def transcribe(self, path: Path, request: BatchRequest, on_progress: Callable[[float, str], None]) -> BatchResult:
        """Decode ``path`` (any container PyAV reads) and analyse it.

        Raises:
            MediaError: the file is not usable audio.
            AsrError: transcription or analysis failed.
        """
        assert self._transcriber is not None, "use LocalBatch as an async context manager"
        on_progress(0.0, "decoding")
        media = await asyncio.to_thread(decode_media, path)
        return await self._transcriber.transcribe(media.samples, request, key=("local", next(self._keys)), on_progress=on_progress)


class _LocalRunner:
    """The CLI's local runner: one :class:`LocalBatch` per config, started at the first file and
    kept for the next ones; :meth:`aclose` stops them (the CLI calls it when its files are done)."""

    def __init__(self) -> None:
        self._batches: dict[Path | None, LocalBatch] = {}

    async def __call__(self, path: Path, request: BatchRequest, *, config_path: Path | None,
                       on_progress: Callable[[float, str], None]) -> BatchResult:
        batch = self._batches.get(config_path)
        if batch is None:
            batch = self._batches[config_path] = await LocalBatch(config_path).__aenter__()
        return await batch.transcribe(path, request, on_progress)

    async def aclose(self) -> None:
        batches, self._batches = list(self._batches.values()), {}
        for batch in batches:
            await batch.aclose()


transcribe_file = _LocalRunner()
"""``await transcribe_file(path, request, *, config_path, on_progress) -> BatchResult``: analyse
one file in this process (see :class:`_LocalRunner`).

Raises:
    MediaError: the file is not usable audio.
    AsrError: transcription or analysis failed.
    ModelError: the model cannot be loaded.
"""
