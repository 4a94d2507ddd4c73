"""Saved voices (config ``speakers.dir``): an enrolled speaker's voiceprint, kept across sessions by name.

One small JSON file per name in one directory: ``{"name", "vector", "speech_s", "saved_at"}``.
The file name is the name made safe (:func:`~whisper_streaming.sinks.pcm.sanitize_user_id`: ASCII
``[A-Za-z0-9._-]`` only, never hidden, never ``..``) plus a hash of the exact name, so two names
that sanitize alike (``José``, ``Jos_``) never share a file, and every path is checked to lie in
the directory before it is opened, as PCM saving does.  Writes are atomic (a temporary file, then
``os.replace``).  A new enrolment of a saved name does not replace its voice unless the store
was made with ``replace=True`` (config ``speakers.replace_saved``): peers are not authenticated
per name, and one must not overwrite another's voice with their own.  The files are tiny (a 192-d
vector): reading and writing them on the event loop is fine.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
import time
from pathlib import Path

from whisper_streaming.core.speakers import VoicePrint
from whisper_streaming.errors import UsageError
from whisper_streaming.sinks.pcm import sanitize_user_id

__all__ = ["VoiceStore"]

log = logging.getLogger(__name__)


class VoiceStore:
    """Voiceprints saved by name in ``directory`` (created if missing).

    Raises:
        OSError: the directory cannot be created.
    """

    def __init__(self, directory: str | os.PathLike[str], *, replace: bool = False) -> None:
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        self.directory = path.resolve()
        self.replace = replace  # whether an enrolment may replace a saved voice of the same name

    def path_for(self, name: str) -> Path:
        """The file of ``name`` (inside :attr:`directory`).

        Raises:
            UsageError: the path would leave the directory (cannot happen with the sanitized name; checked anyway).
        """
        digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:12]
        candidate = self.directory / f"{sanitize_user_id(name, max_chars=40)}-{digest}.json"
        resolved = candidate.resolve()
        if resolved.parent != self.directory or resolved.name != candidate.name:
            raise UsageError(f"refusing a voice file outside {self.directory}: {candidate.name!r}")
        return resolved

    def save(self, name: str, voice: VoicePrint) -> Path | None:
        """Save ``name``'s voice; returns its file, or None when a voice of that name is saved
        already and :attr:`replace` is off (any peer may enrol any name: by default nobody can
        overwrite a saved voice with their own).

        Raises:
            OSError: the file cannot be written.
        """
        path = self.path_for(name)
        if not self.replace and path.exists():
            return None
        body = {"name": name, "vector": [round(float(x), 7) for x in voice.vector], "speech_s": round(voice.speech_s, 3),
                "saved_at": round(time.time(), 3)}
        fd, tmp = tempfile.mkstemp(prefix=".voice-", suffix=".tmp", dir=self.directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(body, f, ensure_ascii=False)
            os.chmod(tmp, 0o640)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        return path

    def load(self, name: str) -> VoicePrint | None:
        """``name``'s saved voice, or None when there is none (or its file is unreadable or not a voice: logged)."""
        path = self.path_for(name)
        try:
            body = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("saved voice %s unreadable: %s", path.name, exc)
            return None
        try:
            if body["name"] != name:
                raise ValueError("another name")
            vector = tuple(float(x) for x in body["vector"])
            speech_s = float(body["speech_s"])
            if not vector or not all(math.isfinite(x) for x in vector) or not math.isfinite(speech_s):
                raise ValueError("not finite")
            return VoicePrint.from_array(vector, speech_s)
        except (KeyError, TypeError, ValueError, UsageError) as exc:
            log.warning("saved voice %s is not a voice: %s", path.name, exc)
            return None
