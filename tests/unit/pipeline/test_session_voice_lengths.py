"""Saved voices of another length than the session's (saved by another embedding model) end the
session with ``UNKNOWN_SPEAKER`` or leave a result unlabelled; they never raise out of the session."""

from __future__ import annotations

import numpy as np

from test_session import assert_error
from test_session_speakers import harness, options, results, stream
from whisper_streaming.core.speakers import VoicePrint


def unit(dim: int, seed: int) -> VoicePrint:
    return VoicePrint.from_array(np.random.default_rng(seed).standard_normal(dim), 4.0)


def test_saved_voices_of_two_lengths_end_the_session_with_unknown_speaker() -> None:
    h = harness().ready()
    options(h, "speakers=alice,bob")
    assert_error(h.session.voices_loaded({"alice": unit(16, 1), "bob": unit(8, 2)}), "UNKNOWN_SPEAKER")


def test_a_result_whose_voice_does_not_fit_the_saved_ones_goes_out_unlabelled() -> None:
    h = harness().ready()
    options(h, "speakers=alice")
    assert h.session.voices_loaded({"alice": unit(8, 1)}) == []
    assert results(stream(h, [unit(16, 3)])) == [()]  # the analyzer's print is 16-d, the saved one 8-d
