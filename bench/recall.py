"""What a recall through the lineage costs, against blocking one version alone.

Builds a base model with a tree of fine-tunes and adapters under it (FANOUT
children per version, DEPTH levels), one live approval per descendant, then
times, in one run:

- baseline: a hold placed on one version and lifted again (what a steward's
  block of a single version costs through the same services);
- recall: an incident on the base with a recall (every descendant blocked,
  every approval suspended, holders and makers notified), then the lift
  (everything restored).

Prints the versions and approvals reached, seconds, SQL queries and the ratio
of the recall to the baseline, per version reached. Setup writes the lineage
and approvals directly (they are not what is measured); the measured calls are
the real services inside their transactions.

Usage: .venv/bin/python bench/recall.py [--fanout 3] [--depth 5]
Needs PostgreSQL at BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/portal_recall_bench).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _setup() -> None:
    database_url = os.environ.get(
        "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/portal_recall_bench"
    )
    os.environ.update(
        {
            "DATABASE_URL": database_url,
            "DEBUG": "1",
            "CELERY_BROKER_URL": os.environ.get("BENCH_BROKER_URL", "memory://"),
            "LOG_LEVEL": "WARNING",
            "EMAIL_URL": "console://",
            "DJANGO_SETTINGS_MODULE": "portal.settings",
        }
    )
    from bench._database import create_and_migrate

    create_and_migrate(database_url)


def _lineage(fanout: int, depth: int):
    from django.contrib.auth.models import Group, User
    from django.utils import timezone

    from governance.models import License, ReuseRequest
    from zoo.models import CatalogModel, ModelVersion

    stamp = f"{time.time_ns():x}"
    steward = User.objects.create(username=f"steward-{stamp}")
    steward.groups.set(Group.objects.filter(name="stewards"))
    license = License.objects.get(spdx_id="apache-2.0")
    owner = User.objects.create(username=f"owner-{stamp}")

    def version(name: str, parent=None):
        model = CatalogModel.objects.create(
            repo_id=f"bench-{stamp}/{name}", title=name, status="available", owner=owner
        )
        return ModelVersion.objects.create(
            model=model,
            revision=f"{abs(hash((stamp, name))):040x}"[-40:],
            label="v1",
            parent=parent,
            kind="finetuned" if parent else "base",
            license=license,
            source="folder",
            created_by=owner,
        )

    base = version("base")
    level, made = [base], []
    for d in range(depth):
        level = [version(f"l{d}-{i}-{j}", p) for i, p in enumerate(level) for j in range(fanout)]
        made.extend(level)
    holder = User.objects.create(username=f"holder-{stamp}")
    expires = timezone.now() + timedelta(days=60)
    ReuseRequest.objects.bulk_create(
        ReuseRequest(
            requester=holder, version=v, intended_use="bench", use_type="research",
            business_unit="bench", data_sensitivity="public", justification="bench",
            status="approved", required_roles=["legal"], expires_at=expires,
        )
        for v in made
    )  # fmt: skip
    lone = version("lone")
    return steward, base, made, lone


def _timed(func):
    from django.db import connection

    count = [0]

    def counting(execute, sql, params, many, context):
        count[0] += 1
        return execute(sql, params, many, context)

    with connection.execute_wrapper(counting):
        began = time.perf_counter()
        result = func()
        seconds = time.perf_counter() - began
    return result, seconds, count[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fanout", type=int, default=3)
    parser.add_argument("--depth", type=int, default=5)
    args = parser.parse_args()
    _setup()
    from governance.services import incidents
    from zoo.services.holds import version_hold_place, version_holds_lift

    steward, base, made, lone = _lineage(args.fanout, args.depth)

    def block_one():
        version_hold_place(
            version=lone, source="bench:lone", reason="Bench block.", blocks=True, actor=steward
        )
        version_holds_lift(source="bench:lone", actor=steward)

    _, base_s, base_q = _timed(block_one)

    def recall():
        return incidents.incident_open(
            version=base, actor=steward, category="backdoor", severity=4,
            title="Bench recall", description="A recall measured by bench/recall.py.",
            recall=True,
        )  # fmt: skip

    incident, recall_s, recall_q = _timed(recall)
    suspended = sum(len(e.suspended_requests) for e in incident.effects.all())
    restored, lift_s, lift_q = _timed(
        lambda: incidents.incident_recall_lift(
            incident=incident, actor=steward, reason="Bench lift after measuring."
        )
    )
    reached = 1 + len(made)
    print(f"lineage: fanout {args.fanout}, depth {args.depth}: {reached} versions")
    print(f"baseline  block + lift of one version: {base_s * 1000:8.1f} ms, {base_q} queries")
    print(
        f"recall    {reached} versions, {suspended} approvals suspended: "
        f"{recall_s * 1000:8.1f} ms, {recall_q} queries"
    )
    print(
        f"lift      {len(restored)} approvals restored: {lift_s * 1000:8.1f} ms, {lift_q} queries"
    )
    print(
        f"ratio     recall + lift / baseline: {(recall_s + lift_s) / base_s:.1f}x in all, "
        f"{(recall_s + lift_s) / base_s / reached:.2f}x per version reached"
    )


if __name__ == "__main__":
    main()
