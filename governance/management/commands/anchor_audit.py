"""Append a signed anchor of the audit chain's head to AUDIT_ANCHOR_FILE now."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from governance.anchors import anchor_path, anchor_write


class Command(BaseCommand):
    help = "Write a signed checkpoint of the audit chain's newest event (beat does this too)."

    def handle(self, *args, **options) -> None:
        anchor = anchor_write()
        if anchor is None:
            self.stdout.write("The audit log is empty: nothing to anchor.")
            return
        self.stdout.write(
            self.style.SUCCESS(
                f"Anchored event #{anchor.event_id} ({anchor.count} events) in {anchor_path()}."
            )
        )
