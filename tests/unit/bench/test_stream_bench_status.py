"""bench/stream_bench.py reads its counters from the server's ``%C`` text."""

from __future__ import annotations

from bench.stream_bench import speculation_counts, stopped_count

STATUS = """engine 0: idle
speculative transcriptions: started 40, used 37
withdrawn jobs stopped early: 2
partials: decoded 9, sent 9, dropped under load 0
"""


def test_the_speculation_and_stop_counters_are_read() -> None:
    assert speculation_counts(STATUS) == (40, 37)
    assert stopped_count(STATUS) == 2


def test_a_server_without_the_lines_gives_none() -> None:
    assert speculation_counts("engine 0: idle\n") is None and stopped_count("engine 0: idle\n") is None
    assert stopped_count(None) is None
