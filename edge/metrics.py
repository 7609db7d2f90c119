"""Prometheus metrics, read from the controller's own counters at scrape time.

Nothing here runs on the event path: the journal, bus, uplink and supervisor already keep plain
counters, and the collector turns them into metric families only when `/metrics` is scraped.
Each controller gets its own CollectorRegistry so several controllers in one process (tests, the
demo) never mix their numbers.

`/metrics` is served without authentication, like Prometheus exporters usually are: it carries
counts and health only (no event contents, no user names, no personal data), and the API binds
to loopback unless the site file says otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

from edge import __version__

if TYPE_CHECKING:
    from edge.daemon import Controller

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Uplink states every scrape reports (0 or 1), so dashboards see a stable set of series; a state
# the uplink reports that is not listed here still appears, with 1.
UPLINK_STATES = ("disabled", "connecting", "connected", "backoff")


@dataclass
class ApiStats:
    """Counters the HTTP API keeps for itself (plain ints: bumping them costs nothing)."""

    sse_clients: int = 0
    sse_dropped: int = 0  # events live streams skipped, including streams since closed
    logins_ok: int = 0
    logins_failed: int = 0
    logins_throttled: int = 0


class ControllerCollector(Collector):
    """Turns the controller's counters into metric families when scraped."""

    def __init__(self, controller: Controller, api: ApiStats | None = None) -> None:
        self.controller = controller
        self.api = api

    def describe(self) -> Iterator[Metric]:
        # Returning nothing keeps registration from calling collect() before the journal is open.
        return iter(())

    def collect(self) -> Iterator[Metric]:
        c = self.controller
        st = c.journal.stats

        info = InfoMetricFamily("linli", "Controller identity")
        info.add_metric(
            [], {"version": __version__, "site": c.config.site.id, "controller": c.config.controller.id}
        )
        yield info

        yield CounterMetricFamily(
            "linli_events_accepted", "Events committed to the journal (accepted)", value=st.accepted
        )
        yield SummaryMetricFamily(
            "linli_journal_commit_seconds",
            "Time spent in journal commit transactions",
            count_value=st.batches,
            sum_value=st.commit_seconds_total,
        )
        # Every accepted event was in exactly one batch, so accepted/batches is the mean batch size.
        yield SummaryMetricFamily(
            "linli_journal_commit_batch_size",
            "Events per journal commit",
            count_value=st.batches,
            sum_value=st.accepted,
        )
        yield GaugeMetricFamily(
            "linli_journal_last_batch_size", "Events in the latest commit", value=st.last_batch_size
        )
        yield GaugeMetricFamily(
            "linli_outbox_depth", "Events committed but not yet acknowledged by the uplink broker",
            value=st.outbox_depth,
        )
        yield GaugeMetricFamily(
            "linli_journal_bytes", "Bytes of event bodies stored in the journal", value=st.stored_bytes
        )
        yield GaugeMetricFamily(
            "linli_journal_budget_bytes", "Journal size budget", value=c.journal.budget_bytes
        )
        yield GaugeMetricFamily(
            "linli_journal_events", "Events stored in the journal", value=st.stored_events
        )
        yield GaugeMetricFamily("linli_journal_last_seq", "Highest journal sequence number", value=st.last_seq)
        pruned = CounterMetricFamily(
            "linli_journal_pruned_events", "Events removed by retention", labels=["delivered"]
        )
        pruned.add_metric(["true"], st.pruned_delivered)
        pruned.add_metric(["false"], st.pruned_undelivered)
        yield pruned

        yield from self._uplink(c.uplink)
        yield from self._tasks()
        yield from self._subscriptions()
        yield from self._devices()

        if self.api is not None:
            yield from self._api(self.api)

    def _api(self, api: ApiStats) -> Iterator[Metric]:
        yield GaugeMetricFamily("linli_api_sse_clients", "Open live event streams", value=api.sse_clients)
        yield CounterMetricFamily(
            "linli_api_sse_dropped_events", "Events skipped by live streams whose client was too slow",
            value=api.sse_dropped,
        )
        logins = CounterMetricFamily("linli_api_logins", "Login attempts by outcome", labels=["outcome"])
        logins.add_metric(["ok"], api.logins_ok)
        logins.add_metric(["failed"], api.logins_failed)
        logins.add_metric(["throttled"], api.logins_throttled)
        yield logins

    def _uplink(self, uplink: Any) -> Iterator[Metric]:
        state = str(getattr(uplink, "state", "disabled")) if uplink is not None else "disabled"
        states = GaugeMetricFamily("linli_uplink_state", "Uplink state (1 = current)", labels=["state"])
        for name in dict.fromkeys((*UPLINK_STATES, state)):
            states.add_metric([name], 1.0 if name == state else 0.0)
        yield states
        yield GaugeMetricFamily(
            "linli_uplink_connected", "1 while the uplink is connected to its broker",
            value=1.0 if state == "connected" else 0.0,
        )
        yield CounterMetricFamily(
            "linli_uplink_published", "Events the broker acknowledged",
            value=_number(getattr(uplink, "published", 0)),
        )
        yield CounterMetricFamily(
            "linli_uplink_reconnects", "Uplink reconnections", value=_number(getattr(uplink, "reconnects", 0))
        )

    def _tasks(self) -> Iterator[Metric]:
        running = GaugeMetricFamily("linli_task_running", "Supervised task is running", labels=["task"])
        restarts = CounterMetricFamily("linli_task_restarts", "Supervised task restarts", labels=["task"])
        for name, health in sorted(self.controller.supervisor.health.items()):
            running.add_metric([name], 1.0 if health.running else 0.0)
            restarts.add_metric([name], health.restarts)
        yield running
        yield restarts

    def _subscriptions(self) -> Iterator[Metric]:
        subs = self.controller.bus.subscriptions
        yield GaugeMetricFamily("linli_bus_subscriptions", "Open event bus subscriptions", value=len(subs))
        dropped = CounterMetricFamily(
            "linli_bus_subscription_dropped",
            "Events a live subscription dropped because its consumer was too slow",
            labels=["subscription"],
        )
        for sub in sorted(subs, key=lambda s: s.name):
            if not sub.lossless:
                dropped.add_metric([sub.name], sub.dropped)
        yield dropped

    def _devices(self) -> Iterator[Metric]:
        online = GaugeMetricFamily(
            "linli_device_online", "Device reachable (1), unreachable (0), not heard from yet (-1)",
            labels=["device", "kind", "driver"],
        )
        for dev in self.controller.devices.all():
            value = -1.0 if dev.online is None else (1.0 if dev.online else 0.0)
            online.add_metric([dev.id, dev.kind, dev.driver], value)
        yield online


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def make_registry(controller: Controller, api: ApiStats | None = None) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ControllerCollector(controller, api))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
