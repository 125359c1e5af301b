"""Prometheus metrics at /metrics, for a scraper holding METRICS_TOKEN.

Request latency is measured in each web process (with gunicorn, set
PROMETHEUS_MULTIPROC_DIR so every worker's samples are summed); the jobs
figures are read from the database and the broker at each scrape, so any
process answers them whole:

* ``portal_jobs`` (gauge): jobs by kind and state;
* ``portal_queue_depth`` (gauge): messages waiting on each queue;
* ``portal_queue_oldest_seconds`` (gauge): how long the oldest queued job has waited;
* ``portal_job_requeues_total`` / ``portal_job_resends_total`` (counters): jobs given
  back after a dead worker, messages sent again after the broker lost them;
* ``portal_job_duration_seconds`` (histogram): run time of every finished job;
* ``portal_workers_alive`` (gauge): workers with a fresh heartbeat, by queue;
* ``portal_worker_heartbeat_age_seconds`` / ``portal_worker_running_jobs`` (gauges): per
  worker node (Celery hostname), so several hosts can be told apart.
"""

from __future__ import annotations

import hmac
import os
import time
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, DurationField, ExpressionWrapper, F, Min, Q, Sum
from django.http import Http404, HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)

from governance.models import AuditEvent
from jobs.models import Job, WorkerHeartbeat
from portal import broker
from portal.celery import QUEUES

REQUEST_SECONDS = Histogram(
    "portal_http_request_duration_seconds",
    "Time to answer an HTTP request, by method, route and status class.",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
DURATION_BUCKETS = (1, 10, 60, 300, 900, 3600, 4 * 3600, 12 * 3600)


class RequestTimer:
    """Middleware: one latency sample per request, labelled by the route, not the raw path."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest):
        began = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        route = (match.route or match.view_name) if match else "unmatched"
        REQUEST_SECONDS.labels(
            request.method, route[:100], f"{response.status_code // 100}xx"
        ).observe(time.perf_counter() - began)
        return response


class JobsCollector:
    """The job, queue and worker figures, read fresh at each scrape."""

    def collect(self):
        now = timezone.now()
        yield self._jobs()
        depth = GaugeMetricFamily(
            "portal_queue_depth", "Messages waiting on a queue.", labels=["queue"]
        )
        for queue, n in broker.queue_depths(list(QUEUES)).items():
            if n is not None:
                depth.add_metric([queue], n)
        yield depth
        oldest = GaugeMetricFamily(
            "portal_queue_oldest_seconds",
            "Seconds the oldest queued job of a queue has waited (0: none waiting).",
            labels=["queue"],
        )
        waiting = {
            row["queue"]: row["first"]
            for row in Job.objects.filter(status=Job.Status.QUEUED)
            .values("queue")
            .annotate(first=Min("created_at"))
        }
        for queue in QUEUES:
            first = waiting.get(queue)
            oldest.add_metric([queue], (now - first).total_seconds() if first else 0.0)
        yield oldest
        for verb, name, text in (
            (
                "job.requeue",
                "portal_job_requeues",
                "Jobs given back to their queue after a dead worker.",
            ),
            (
                "job.resend",
                "portal_job_resends",
                "Job messages sent again after the broker lost them.",
            ),
        ):
            counter = CounterMetricFamily(name, text)
            counter.add_metric([], AuditEvent.objects.filter(verb=verb).count())
            yield counter
        yield self._durations()
        alive = GaugeMetricFamily(
            "portal_workers_alive", "Workers with a fresh heartbeat, by queue.", labels=["queue"]
        )
        fresh = WorkerHeartbeat.objects.filter(
            last_seen__gte=now - timedelta(seconds=settings.WORKER_STALE_S)
        )
        for queue in QUEUES:
            alive.add_metric([queue], fresh.filter(queues__contains=[queue]).count())
        yield alive
        yield from self._per_worker(now)

    def _per_worker(self, now):
        """One series per worker node (its Celery hostname), so a scraper sees which of
        several hosts has gone quiet or holds the work, not only how many are alive."""
        seen = GaugeMetricFamily(
            "portal_worker_heartbeat_age_seconds",
            "Seconds since a worker last said it was alive, by worker hostname.",
            labels=["hostname", "device"],
        )
        running = GaugeMetricFamily(
            "portal_worker_running_jobs",
            "Jobs running on a worker, by hostname.",
            labels=["hostname"],
        )
        busy = {
            row["worker"]: row["n"]
            for row in Job.objects.filter(status=Job.Status.RUNNING)
            .values("worker")
            .annotate(n=Count("pk"))
            .order_by()
        }
        for beat in WorkerHeartbeat.objects.all():
            seen.add_metric([beat.hostname, beat.device], (now - beat.last_seen).total_seconds())
            running.add_metric([beat.hostname], busy.get(beat.hostname, 0))
        yield seen
        yield running

    def _jobs(self):
        gauge = GaugeMetricFamily(
            "portal_jobs", "Jobs by kind and state.", labels=["kind", "state"]
        )
        counts = {
            (row["kind"], row["status"]): row["n"]
            for row in Job.objects.values("kind", "status").annotate(n=Count("pk")).order_by()
        }
        for kind in Job.Kind.values:
            for state in Job.Status.values:
                gauge.add_metric([kind, state], counts.get((kind, state), 0))
        return gauge

    def _durations(self):
        ran = ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
        finished = Job.objects.filter(
            status__in=Job.FINISHED, started_at__isnull=False, finished_at__isnull=False
        ).annotate(ran=ran)
        figures = finished.aggregate(
            total=Sum("ran"),
            n=Count("pk"),
            **{
                f"le_{b}": Count("pk", filter=Q(ran__lte=timedelta(seconds=b)))
                for b in DURATION_BUCKETS
            },
        )
        buckets = [(str(float(b)), figures[f"le_{b}"]) for b in DURATION_BUCKETS]
        buckets.append(("+Inf", figures["n"]))
        total = figures["total"].total_seconds() if figures["total"] else 0.0
        return HistogramMetricFamily(
            "portal_job_duration_seconds",
            "Run time of finished jobs (claim to end of the last attempt).",
            buckets=buckets,
            sum_value=total,
        )


def _registry() -> CollectorRegistry:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = CollectorRegistry()
        registry.register(_ProcessLocal())
    registry.register(JobsCollector())
    return registry


class _ProcessLocal:
    """This process's own samples (request latency), when not in multiprocess mode."""

    def collect(self):
        yield from REQUEST_SECONDS.collect()


def _authorised(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return bool(token) and scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), token)


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """The metrics, for a caller with the token; anyone else learns nothing, not even that
    there are metrics here (404)."""
    if not _authorised(request):
        raise Http404
    return HttpResponse(generate_latest(_registry()), content_type=CONTENT_TYPE_LATEST)
