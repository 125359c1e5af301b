"""How long a SIGKILLed worker's job waits before another worker runs it, and what a flush costs.

Each round queues a worker-check drill (a job that holds its worker, reporting
every second), lets a worker process take it, starts a second worker, and
SIGKILLs the first: no cleanup, no acknowledgement. The time from the kill to
the job running again on the second worker is the recovery time; beat runs the
requeue task as in production. The rounds use the portal's default lease,
heartbeat and requeue interval; the baseline round uses the settings of before
(a ten-minute lease renewed only by progress reports, requeue every minute).

Then the lost-message case: 50 queued jobs, the broker flushed (a Redis server
of the script's own), and the time until all 50 are done once a worker and
beat are back.

Usage: .venv/bin/python bench/recovery.py [--kills 10] [--skip-baseline] [--skip-flush]
Needs PostgreSQL at BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/portal_bench)
and redis-server on PATH.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OLD = {"JOB_LEASE_S": "600", "JOB_HEARTBEAT_S": "100000", "REQUEUE_EVERY_S": "60"}


def _setup(work: Path, broker_url: str) -> None:
    database_url = os.environ.get(
        "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/portal_bench"
    )
    os.environ.update(
        {
            "DATABASE_URL": database_url,
            "DEBUG": "1",
            "CELERY_BROKER_URL": broker_url,
            "LOG_LEVEL": "WARNING",
            "MEDIA_ROOT": str(work / "media"),
            "IMPORT_STAGING_DIR": str(work / "staging"),
            "WORK_DIR": str(work / "work"),
            "DJANGO_SETTINGS_MODULE": "portal.settings",
        }
    )
    from bench._database import create_and_migrate

    create_and_migrate(database_url)


def _wait(job, predicate, timeout: float) -> float:
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        job.refresh_from_db()
        if predicate(job):
            return time.monotonic() - began
        time.sleep(0.2)
    raise SystemExit(f"job {job.pk} stuck: {job.status}, attempt {job.attempts}")


def _recovery(work: Path, index: int, env: dict[str, str]) -> float:
    from jobs.engine import job_cancel
    from jobs.models import Job
    from jobs.services.checks import worker_check_launch
    from tests.builders.processes import start_worker

    job = worker_check_launch(actor=None, queue="default", hold_s=1200)
    first = start_worker(f"first{index}", work, queues="default", **env)
    second = None
    try:
        _wait(job, lambda j: j.status == Job.Status.RUNNING, 120)
        second = start_worker(f"second{index}", work, queues="default", **env)
        time.sleep(2)  # the second worker is up and idle before the kill
        first.kill()
        seconds = _wait(job, lambda j: j.status == Job.Status.RUNNING and j.attempts == 2, 30 * 60)
        job_cancel(job=job, actor=None)
        _wait(job, lambda j: not j.is_active, 60)
        return seconds
    finally:
        first.stop()
        if second is not None:
            second.stop()


def _rounds(work: Path, kills: int, env: dict[str, str]) -> list[float]:
    from tests.builders.processes import start_beat

    beat = start_beat(work, **env)
    try:
        return [_recovery(work, i, env) for i in range(kills)]
    finally:
        beat.stop()


def _flush(work: Path) -> float:
    from django.conf import settings

    from jobs.models import Job
    from jobs.services.checks import worker_check_launch
    from tests.builders.processes import RedisServer, broker_at, start_beat, start_worker

    redis = RedisServer(work)
    redis.start()
    try:
        with broker_at(redis.url, settings):
            ids = [worker_check_launch(actor=None, queue="default").pk for _ in range(50)]
            redis.flushall()
            worker = start_worker("flush", work, queues="default", CELERY_BROKER_URL=redis.url)
            beat = start_beat(work, CELERY_BROKER_URL=redis.url)
            began = time.monotonic()
            try:
                while Job.objects.filter(pk__in=ids, status=Job.Status.SUCCEEDED).count() < 50:
                    if time.monotonic() - began > 600:
                        raise SystemExit("the flushed jobs did not all run in 10 minutes")
                    time.sleep(0.5)
                return time.monotonic() - began
            finally:
                beat.stop()
                worker.stop()
    finally:
        redis.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--skip-flush", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-recovery-") as tmp:
        work = Path(tmp)
        _setup(work, os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/14"))
        from portal.celery import app

        app.control.purge()
        times = _rounds(work, args.kills, {})
        median, worst = statistics.median(times), max(times)
        print(f"defaults: kill -> running again, {len(times)} kills: median {median:.1f} s, "
              f"max {worst:.1f} s  ({', '.join(f'{t:.0f}' for t in times)})")  # fmt: skip
        if not args.skip_baseline:
            (base,) = _rounds(work, 1, OLD)
            print(f"baseline (10-minute lease, requeue every minute): {base:.1f} s; "
                  f"defaults / baseline = {median / base:.2f}x (median)")  # fmt: skip
        if not args.skip_flush:
            print(f"50 queued jobs, broker flushed: all done {_flush(work):.1f} s after it "
                  "came back (defaults: reconcile every 30 s, grace 30 s)")  # fmt: skip


if __name__ == "__main__":
    main()
