"""Where partial hypotheses run, from the config: their own workers, paused while finals need the cores."""

from __future__ import annotations

import pytest

from whisper_streaming.app.wiring import engine_options_from_config, pause_partials_at, pool_options_from_config, session_options_from_config
from whisper_streaming.config.schema import load_config, with_overrides


def test_one_partial_worker_by_default_paused_by_one_busy_final_on_two_cores() -> None:
    config = load_config(None)
    assert config.partials.workers == 1
    assert pause_partials_at(config, cores=2) == 1
    assert pause_partials_at(config, cores=16) == 15  # cores to spare: partials never wait for 2 workers
    assert pause_partials_at(with_overrides(config, **{"model.cpu_threads": 4}), cores=16) == 3
    assert pause_partials_at(with_overrides(config, **{"model.device": "cuda"}), cores=2) is None  # the decode is not on the cores
    options = pool_options_from_config(config, engine_options_from_config(config))
    assert options.partial_workers == 1


@pytest.mark.parametrize(("channel", "workers", "enabled", "offered"),
                         [(1, 1, True, True), (1, 0, True, False), (2, 0, True, True), (2, 1, False, False)])
def test_partials_are_offered_when_some_worker_can_run_them(channel: int, workers: int, enabled: bool, offered: bool) -> None:
    config = with_overrides(load_config(None), **{"model.channel": channel, "partials.workers": workers, "partials.enabled": enabled})
    policy = session_options_from_config(config).option_policy
    assert ("partials" not in policy) is offered
    pool = pool_options_from_config(config, engine_options_from_config(config))
    assert pool.partial_workers == (workers if enabled else 0)
