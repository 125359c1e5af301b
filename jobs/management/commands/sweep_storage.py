"""Remove what dead processes left (the periodic sweep, run now); --dry-run only lists it."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand

from jobs.services.sweep import storage_sweep


class Command(BaseCommand):
    help = "Sweep work folders, staging, stray uploads, unreferenced blobs and old checkpoints."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="Say what would go; remove none."
        )

    def handle(self, *args, dry_run: bool, **options) -> None:
        report = storage_sweep(dry_run=dry_run)
        verb = "Would remove" if dry_run else "Removed"
        if not report["counts"]:
            self.stdout.write("Nothing to sweep.")
        for kind, count in sorted(report["counts"].items()):
            self.stdout.write(f"{verb} {count} {kind.replace('_', ' ')}")
        self.stdout.write(
            f"{report['bytes_freed']:,} bytes; {report['kept_for_grace']} kept for now"
        )
        if options.get("verbosity", 1) > 1:
            self.stdout.write(json.dumps(report["removed"], indent=2))
