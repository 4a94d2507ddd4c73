"""A full job store answers 429 before the upload is decoded (a decode costs CPU and up to
``max_duration_s`` of float32 audio in memory)."""

from __future__ import annotations

import pytest

from test_batch_api import JOBS, TRANSCRIPTIONS, api, error_of, upload

pytestmark = pytest.mark.timeout(60)


def test_a_full_store_refuses_before_decoding() -> None:
    with api(max_queued=1) as a:
        a.fake.auto_release = False
        assert a.client.post(JOBS, files=upload()).status_code == 202
        for path in (JOBS, TRANSCRIPTIONS):
            r = a.client.post(path, files=upload(b"not audio at all" * 64))  # would be 4xx MEDIA_CORRUPT if decoded
            assert r.status_code == 429, r.text
            assert error_of(r)["code"] == "SERVER_TOO_BUSY"
        a.release()
