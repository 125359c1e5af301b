"""Walk the audit chain and hold it to its anchors; exit 1 naming the first problem."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from governance.anchors import anchor_path, anchors_read
from governance.audit import verify_chain
from governance.models import AuditEvent


class Command(BaseCommand):
    help = (
        "Verify the audit log: every keyed link, and every signed anchor in AUDIT_ANCHOR_FILE "
        "(an anchored event must still be there, unchanged, at its place)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--anchors", type=Path, help="anchor file (default: AUDIT_ANCHOR_FILE)")

    def handle(self, *args, **options) -> None:
        path = options["anchors"] or anchor_path()
        found = anchors_read(path)
        if found.problems:
            raise CommandError(f"Audit anchors tampered with: {'; '.join(found.problems[:5])}.")
        report = verify_chain(found.anchors)
        if report.broken_at is not None:
            raise CommandError(
                f"Audit chain broken at event #{report.broken_at}: {report.reason} "
                f"({report.checked} events before it verified)."
            )
        if not found.anchors and self._overdue():
            raise CommandError(
                f"No audit anchors in {path}, though events are older than two anchor "
                "intervals: the newest events cannot be vouched for. Is AUDIT_ANCHOR_FILE "
                "right, and is beat running? (manage.py anchor_audit writes one now.)"
            )
        latest = max((a.event_id for a in found.anchors), default=0)
        after = AuditEvent.objects.filter(id__gt=latest).count()
        self.stdout.write(
            self.style.SUCCESS(
                f"Audit chain intact: {report.checked} events, {report.anchors} anchors held; "
                f"{after} events since the last anchor."
            )
        )

    def _overdue(self) -> bool:
        oldest = AuditEvent.objects.order_by("id").values_list("created_at", flat=True).first()
        grace = timedelta(seconds=2 * settings.AUDIT_ANCHOR_EVERY_S)
        return oldest is not None and oldest < timezone.now() - grace
