"""Prometheus metrics of one :class:`~whisper_streaming.runtime.runtime.Runtime` (``GET /metrics``).

A custom collector reads the runtime's own counters (:class:`~whisper_streaming.runtime.stats.RuntimeStats`)
and the backend's (:meth:`~whisper_streaming.backends.base.AsrBackend.status`,
:meth:`~whisper_streaming.backends.base.AsrBackend.capacity`) at scrape time, so nothing is
counted twice and the hot path does no Prometheus work.  Each runtime has its own
:class:`prometheus_client.CollectorRegistry` (:func:`metrics_registry`; not the global
default: tests run several servers in one process).

Metrics (all prefixed ``whisper_streaming_``; counters end in ``_total`` on the wire):

=====================================  =========  ==================================================
name                                   type       what
=====================================  =========  ==================================================
``sessions{transport}``                gauge      admitted sessions open now, per door
``sessions_started``                   counter    sessions admitted
``sessions_rejected``                  counter    sessions refused (limits, overload, shutdown)
``errors{reason}``                     counter    sessions ended or refused with an ``ErrorReason`` (``%E``)
``utterances``                         counter    utterances transcribed by the workers
``utterances_failed``                  counter    utterances that failed after their retry
``finals``                             counter    final results delivered
``final_latency_seconds``              histogram  from an utterance's endpoint to its final result
``partials``                           counter    partial hypotheses delivered
``queue_depth``                        gauge      utterances waiting for a worker
``engines{state}``                     gauge      engines per state (idle, busy, restarting ...)
``worker_restarts``                    counter    worker processes restarted (crash or hang)
``audio_seconds``                      counter    seconds of stream audio received
``worker_seconds``                     counter    seconds workers spent on jobs
``real_time_factor``                   gauge      ``worker_seconds / audio_seconds`` since start (0 before any audio)
``broker_connected``                   gauge      Redis backend only: 1 while Redis answers
``worker_hosts``                       gauge      Redis backend only: live worker hosts
``jobs_in_flight``                     gauge      Redis backend only: utterances handed to Redis, not yet answered
``jobs_redelivered``                   counter    Redis backend only: jobs taken over from hosts that stopped (hosts that left included)
``duplicate_results``                  counter    Redis backend only: second answers to an utterance, dropped
=====================================  =========  ==================================================
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from whisper_streaming.backends.base import EngineState
from whisper_streaming.runtime.runtime import Runtime

__all__ = ["RuntimeCollector", "metrics_registry", "render_metrics", "METRIC_PREFIX", "CONTENT_TYPE"]

METRIC_PREFIX = "whisper_streaming_"
CONTENT_TYPE = CONTENT_TYPE_LATEST
"""The ``Content-Type`` of :func:`render_metrics`' text (Prometheus text format 0.0.4)."""


class RuntimeCollector(Collector):
    """Builds every metric from ``runtime`` at each scrape (see the module docstring)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def collect(self) -> Iterator[Metric]:
        runtime = self.runtime
        stats = runtime.stats
        status = runtime.backend.status()
        p = METRIC_PREFIX

        sessions = GaugeMetricFamily(p + "sessions", "Admitted sessions open now, per door.", labels=["transport"])
        open_now = runtime.sessions_by_transport()
        doors = [name for name in (getattr(t, "name", None) for t in runtime.transports) if isinstance(name, str)]
        for name in dict.fromkeys([*doors, *open_now]):
            sessions.add_metric([name], open_now.get(name, 0))
        yield sessions
        yield CounterMetricFamily(p + "sessions_started", "Sessions admitted.", value=stats.sessions_started)
        yield CounterMetricFamily(p + "sessions_rejected", "Sessions refused (limits, overload, shutdown).", value=stats.sessions_rejected)
        errors = CounterMetricFamily(p + "errors", "Sessions ended or refused with an error reason (%E).", labels=["reason"])
        for reason, count in sorted(stats.errors.items()):
            errors.add_metric([reason], count)
        yield errors
        yield CounterMetricFamily(p + "utterances", "Utterances transcribed by the workers.", value=status.utterances_done)
        yield CounterMetricFamily(p + "utterances_failed", "Utterances that failed after their retry.", value=status.utterances_failed)
        yield CounterMetricFamily(p + "finals", "Final results delivered.", value=stats.finals)
        h = stats.final_latency
        cumulative = list(itertools.accumulate(h.counts))
        buckets = [(_le(bound), count) for bound, count in zip(h.bounds_s, cumulative)] + [("+Inf", cumulative[-1])]
        yield HistogramMetricFamily(p + "final_latency_seconds", "Seconds from an utterance's endpoint to its final result.",
                                    buckets=buckets, sum_value=h.sum_s)
        yield CounterMetricFamily(p + "partials", "Partial hypotheses delivered.", value=stats.partials_sent)
        yield GaugeMetricFamily(p + "queue_depth", "Utterances waiting for a worker.", value=runtime.backend.capacity().queue_depth)
        engines = GaugeMetricFamily(p + "engines", "ASR engines per state.", labels=["state"])
        for state in EngineState:
            engines.add_metric([state.value], sum(s is state for s in status.engines))
        yield engines
        yield CounterMetricFamily(p + "worker_restarts", "Worker processes restarted (crash or hang).", value=status.worker_restarts)
        yield CounterMetricFamily(p + "audio_seconds", "Seconds of stream audio received.", value=stats.audio_in_s)
        yield CounterMetricFamily(p + "worker_seconds", "Seconds workers spent on jobs.", value=status.worker_s)
        rtf = status.worker_s / stats.audio_in_s if stats.audio_in_s > 0 else 0.0
        yield GaugeMetricFamily(p + "real_time_factor", "Worker seconds per second of audio received, since start.", value=rtf)
        r = status.remote
        if r is not None:
            yield GaugeMetricFamily(p + "broker_connected", "1 while the Redis backend's broker answers.", value=int(r.connected))
            yield GaugeMetricFamily(p + "worker_hosts", "Live worker hosts of the Redis backend.", value=r.workers_live)
            yield GaugeMetricFamily(p + "jobs_in_flight", "Utterances handed to the broker and not yet answered.", value=r.jobs_in_flight)
            yield CounterMetricFamily(p + "jobs_redelivered", "Utterances taken over from a worker host that stopped.", value=r.jobs_redelivered)
            yield CounterMetricFamily(p + "duplicate_results", "Second answers to an utterance, dropped.", value=r.duplicates_dropped)


def _le(bound_s: float) -> str:
    return repr(float(bound_s))


def metrics_registry(runtime: Runtime) -> CollectorRegistry:
    """A new registry holding one :class:`RuntimeCollector` of ``runtime``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RuntimeCollector(runtime))
    return registry


def render_metrics(registry: CollectorRegistry) -> bytes:
    """The Prometheus text exposition of ``registry`` (served with :data:`CONTENT_TYPE`)."""
    return generate_latest(registry)
