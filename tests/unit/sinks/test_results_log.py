"""The JSON-lines results log: record shape, appends, concurrent writers never interleave."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from whisper_streaming.core.results import FinalResult
from whisper_streaming.sinks.jsonl import ResultsLog, result_record
from whisper_streaming.analyzers.sentiment import Sentiment


def test_record_fields() -> None:
    rec = result_record(session_id="c3", user_id="alice", result=FinalResult(1.25, 3.5, "I hate it", 1, "en", annotations={"sentiment": Sentiment("negative", 0.91234)}))
    assert set(rec) == {"time", "session_id", "user_id", "stream_index", "start_s", "end_s", "text", "language", "sentiment", "score"}
    assert (rec["session_id"], rec["user_id"], rec["stream_index"], rec["start_s"], rec["end_s"]) == ("c3", "alice", 1, 1.25, 3.5)
    assert (rec["text"], rec["language"], rec["sentiment"], rec["score"]) == ("I hate it", "en", "negative", 0.9123)
    assert rec["time"].endswith("Z") and len(rec["time"]) == 24
    plain = result_record(session_id="c4", user_id="b", result=FinalResult(0, 1, "x", 0, ""))
    assert (plain["sentiment"], plain["score"], plain["language"]) == (None, None, None)
    ko = result_record(session_id="c5", user_id="b", result=FinalResult(0, 1, "네", 0, "ko", annotations={"sentiment": Sentiment("unsupported", None, "ko")}))
    assert (ko["sentiment"], ko["score"]) == ("unsupported", None)


def test_appends_to_an_existing_file_and_creates_directories(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "results.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text('{"old": 1}\n', encoding="utf-8")
    log = ResultsLog(path)
    assert log.write({"text": "안녕 \"quoted\"\nnewline"})
    log.close()
    log.close()  # idempotent
    assert not log.write({"late": True})
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [{"old": 1}, {"text": "안녕 \"quoted\"\nnewline"}]
    assert ResultsLog(tmp_path / "new" / "x.jsonl").path.endswith("x.jsonl")


def _writer(path: str, writer: int, lines: int) -> None:
    log = ResultsLog(path)
    for i in range(lines):
        log.write({"writer": writer, "i": i, "text": f"w{writer}-" + "x" * (50 + 997 * (i % 9))})  # up to ~8 kB lines
    log.close()


def test_concurrent_writer_processes_never_interleave(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.jsonl")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, w, 200)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    records = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]
    assert len(records) == 800
    for w in range(4):
        mine = [r["i"] for r in records if r["writer"] == w]
        assert mine == list(range(200))  # each writer's lines whole and in its order
        assert all(r["text"].startswith(f"w{w}-") for r in records if r["writer"] == w)


def test_unwritable_path_raises_oserror(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(OSError):
        ResultsLog(tmp_path / "file" / "results.jsonl")


def test_unicode_line_separators_are_escaped_so_every_reader_sees_one_line(tmp_path) -> None:
    import json

    from whisper_streaming.core.results import FinalResult

    log = ResultsLog(tmp_path / "r.jsonl")
    log.write(result_record(session_id="c1", user_id="u", result=FinalResult(0, 1, "one\u2028two\u2029three", 0, "en")))
    log.close()
    text = (tmp_path / "r.jsonl").read_text(encoding="utf-8")
    assert len(text.splitlines()) == 1  # str.splitlines breaks at U+2028/U+2029
    assert json.loads(text)["text"] == "one\u2028two\u2029three"
