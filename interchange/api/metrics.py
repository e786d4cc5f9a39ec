"""The Prometheus metrics of one server process (`/metrics`): receipts, target times (SPEC §8),
the work queue, forwarding upstream and deliveries."""

from __future__ import annotations

import logging
import platform
from datetime import datetime
from importlib import metadata

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import Info as InfoMetric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from interchange.forwarding.work import Hooks
from interchange.jobs.policy import BREAKER_STATES
from interchange.jobs.runner import Ran
from interchange.store.deliveries import Delivery
from interchange.store.types import Dossier, Overdue

log = logging.getLogger("interchange.results")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._queue_seen: set[tuple[str, str]] = set()
        self._http_series: dict[tuple[str, str, int], tuple] = {}
        self._process_and_http()
        self._receipts_and_work()
        self._upstream_and_deliveries()

    def _process_and_http(self) -> None:
        # the process (CPU, memory, open files, start time), the Python platform and its GC
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        InfoMetric("interchange_build", "The running server's version and Python", registry=self.registry).info(
            {"version": _version(), "python": platform.python_version(), "implementation": platform.python_implementation()}
        )
        self.http_requests = Counter(
            "interchange_http_requests", "HTTP requests answered, by route template, method and status",
            ["route", "method", "status"], registry=self.registry,
        )  # fmt: skip
        self.http_seconds = Histogram(
            "interchange_http_request_seconds", "Time to answer an HTTP request, by route template and method",
            ["route", "method"], buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )  # fmt: skip

    def _receipts_and_work(self) -> None:
        self.receipts = Counter(
            "interchange_receipts",
            "POSTed dossiers answered, by outcome (received, refused: TU_CHOI after reading it, replayed, "
            "rejected: refused before it was read or stored) and HTTP status",
            ["outcome", "status"], registry=self.registry,
        )  # fmt: skip
        self.work_queue = Gauge(
            "interchange_work_queue_items",
            "Work items not done, by kind and state (ready: may be claimed now; waiting: later; claimed); "
            "the whole queue: every process reports the same value, aggregate with max",
            ["kind", "state"], registry=self.registry,
        )  # fmt: skip
        self.receipt_seconds = Histogram(
            "interchange_receipt_seconds",
            "Time from request to signed receipt notice",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.receipt_stage_seconds = Histogram(
            "interchange_receipt_stage_seconds",
            "Where a stored or replayed receipt's time went, by stage: check (the receipt's layers in a "
            "worker process, with the wait for one), sign (until its notice is signed: its batch, the "
            "numbering read, a worker to sign), write (until its batch is committed)",
            ["stage"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        # Compliance with the target times (SPEC §8). The gauges are refreshed by the work scheduler.
        self.work_overdue = Gauge(
            "interchange_work_overdue_items",
            "Work items past their due time and not done, by kind (the whole queue: every process "
            "reports the same value, aggregate with max)",
            ["kind"],
            registry=self.registry,
        )
        self.work_overdue_age = Gauge(
            "interchange_work_overdue_age_seconds",
            "How long the oldest overdue work item of a kind is past its due time",
            ["kind"],
            registry=self.registry,
        )
        self.work_runs = Counter(
            "interchange_work_runs",
            "Work items run by this process, by kind and outcome (done, retry, failed, lost)",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self.time_to_result = Histogram(
            "interchange_time_to_result_seconds",
            "Time from receipt to the KET_QUA, by procedure",
            ["procedure"],
            buckets=(60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800, 432000, 864000, 1728000),
            registry=self.registry,
        )

    def _upstream_and_deliveries(self) -> None:
        # Role ivan (interchange.forwarding): forwarding upstream within its target (SPEC §8).
        self.time_to_forward = Histogram(
            "interchange_time_to_forward_seconds",
            "Time from receipt to the upstream's answer to the forwarded bytes (its TIEP_NHAN or TU_CHOI)",
            buckets=(1, 5, 15, 60, 180, 300, 600, 900, 1800, 3600, 7200, 14400, 86400),
            registry=self.registry,
        )
        self.forward_attempts = Counter(
            "interchange_forward_attempts",
            "Tries upstream by this process, by kind (forward, poll) and outcome (accepted, replayed, "
            "refused, relayed, not_yet, unreachable, timeout, server_error, throttled, client_error, bad_notice)",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self.forward_breaker = Gauge(
            "interchange_forward_breaker_state",
            "This process's circuit breaker for the upstream: 0 closed, 1 half-open (probing), 2 open",
            registry=self.registry,
        )

        self.deliveries = Counter(
            "interchange_deliveries",
            "Runs of result deliveries by channel (callback, email) and outcome (delivered, retry, "
            "failed: given up, deferred: circuit open, skipped: e-mail off)",
            ["channel", "outcome"],
            registry=self.registry,
        )
        self.delivery_seconds = Histogram(
            "interchange_delivery_seconds",
            "Time from a notice to its delivery, by channel",
            ["channel"],
            buckets=(1, 5, 15, 60, 300, 900, 1800, 3600, 7200, 14400, 43200, 86400),
            registry=self.registry,
        )

    def http_request(self, route: str, method: str, status: int, seconds: float) -> None:
        # the children of a (route, method, status) kept: labels() checks and joins its labels
        # at each call (bounded: route templates, methods and statuses)
        series = self._http_series.get((route, method, status))
        if series is None:
            series = self._http_series[(route, method, status)] = (
                self.http_requests.labels(route=route, method=method, status=str(status)),
                self.http_seconds.labels(route=route, method=method),
            )
        series[0].inc()
        series[1].observe(seconds)

    def set_queue(self, depth: dict[tuple[str, str], int]) -> None:
        """(kind, state) -> items; a pair no longer there is set to 0 so that its series never go stale."""
        for labels in {*self._queue_seen, *depth}:
            self.work_queue.labels(kind=labels[0], state=labels[1]).set(depth.get(labels, 0))
        self._queue_seen |= set(depth)

    def delivery_ran(self, delivery: Delivery, outcome: str, now: datetime) -> None:
        self.deliveries.labels(channel=delivery.channel, outcome=outcome).inc()
        if outcome == "delivered":
            self.delivery_seconds.labels(channel=delivery.channel).observe((now - delivery.created_at).total_seconds())

    def set_overdue(self, kinds: list[str], overdue: list[Overdue], now: datetime) -> None:
        """Every kind gets a value (0 when nothing is overdue), so that its series never go stale."""
        by_kind = {o.kind: o for o in overdue}
        for kind in sorted({*kinds, *by_kind}):
            o = by_kind.get(kind)
            self.work_overdue.labels(kind=kind).set(o.count if o else 0)
            self.work_overdue_age.labels(kind=kind).set((now - o.oldest_due_at).total_seconds() if o else 0)

    def ran(self, ran: Ran) -> None:
        self.work_runs.labels(kind=ran.item.kind, outcome=ran.outcome).inc()

    def result_given(self, dossier: Dossier, at: datetime) -> None:
        """A KET_QUA was stored (or relayed): the metric and one log line (id, unit, procedure, outcome,
        milliseconds from receipt)."""
        seconds = (at - dossier.received_at).total_seconds()
        self.time_to_result.labels(procedure=dossier.procedure or "").observe(seconds)
        log.info("result of %s: %s", dossier.id, dossier.state, extra={"event": "result", "fields": {
            "id": dossier.id, "so_ho_so": dossier.so_ho_so, "unit": dossier.unit_mst, "procedure": dossier.procedure,
            "outcome": dossier.state, "ms": round(seconds * 1000)}})  # fmt: skip

    def forwarding_hooks(self) -> Hooks:
        return Hooks(
            attempt=lambda kind, outcome: self.forward_attempts.labels(kind=kind, outcome=outcome).inc(),
            forwarded=self.time_to_forward.observe,
            result=self.result_given,
        )

    def breaker_changed(self, state: str) -> None:
        self.forward_breaker.set(BREAKER_STATES[state])


def _version() -> str:
    try:
        return metadata.version("interchange")
    except metadata.PackageNotFoundError:
        return "unknown"
