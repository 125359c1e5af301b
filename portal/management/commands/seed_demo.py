"""Create the demo accounts (and, as the portal grows, its demo catalogue and data).

Safe to run again: accounts are updated in place and their passwords reset to
the demo password, so the credentials printed at the end always work.
"""

from __future__ import annotations

import os

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from governance import roles
from zoo.demo import seed_catalogue, seed_datasets

DEFAULT_PASSWORD = "zoo-demo-2026"  # noqa: S105 - printed for local demos only

# username, full name, role (None: a plain signed-in user), staff
DEMO_USERS = (
    ("admin", "Ada Admin", None, True),
    ("alice", "Alice Engineer", roles.ML_ENGINEERS, False),
    ("sam", "Sam Steward", roles.STEWARDS, False),
    ("lena", "Lena Legal", roles.LEGAL, False),
    ("sean", "Sean Security", roles.SECURITY, False),
    ("cora", "Cora Compliance", roles.COMPLIANCE, False),
    ("bob", "Bob Analyst", None, False),
)


class Command(BaseCommand):
    help = "Create or refresh the demo accounts and print their credentials."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--allow-production",
            action="store_true",
            help="Run even with DEBUG off (the demo password is public: never in production).",
        )
        parser.add_argument(
            "--users-only", action="store_true", help="Create the accounts but not the catalogue."
        )

    def handle(
        self, *args, allow_production: bool = False, users_only: bool = False, **options
    ) -> None:
        if not settings.DEBUG and not allow_production:
            raise CommandError(
                "seed_demo creates accounts with a published password; it runs only with "
                "DEBUG on, or with --allow-production."
            )
        password = os.environ.get("DEMO_PASSWORD", DEFAULT_PASSWORD)
        with transaction.atomic():
            rows = seed_users(password)
        self.stdout.write(self.style.SUCCESS(f"Demo accounts (password for all: {password})"))
        for username, role, staff in rows:
            label = role or ("administrator" if staff else "no role")
            self.stdout.write(f"  {username:<8} {label}")
        if users_only:
            return
        steward = get_user_model().objects.get(username="sam")
        for version, created in seed_catalogue(steward):
            state = "imported" if created else "already present"
            blocked = f" (blocked: {' '.join(version.block_reasons)})" if version.is_blocked else ""
            self.stdout.write(f"  {version.model.repo_id} {version.label} {state}{blocked}")
        alice = get_user_model().objects.get(username="alice")
        for version, created in seed_datasets(alice):
            state = "uploaded" if created else "already present"
            self.stdout.write(
                f"  dataset {version.dataset} {version.label}: {version.n_rows:,} rows {state}"
            )


def seed_users(password: str) -> list[tuple[str, str | None, bool]]:
    User = get_user_model()
    groups = {g.name: g for g in Group.objects.filter(name__in=roles.ALL_ROLES)}
    missing = set(roles.ALL_ROLES) - set(groups)
    if missing:
        raise CommandError(
            f"Role groups missing ({', '.join(sorted(missing))}): run migrate first."
        )
    rows = []
    for username, full_name, role, staff in DEMO_USERS:
        first, last = full_name.split(" ", 1)
        user, _ = User.objects.get_or_create(username=username)
        user.first_name, user.last_name = first, last
        user.email = f"{username}@example.com"
        user.is_staff = user.is_superuser = staff
        user.is_active = True
        user.set_password(password)
        user.save()
        user.groups.set([groups[role]] if role else [])
        rows.append((username, role, staff))
    return rows
