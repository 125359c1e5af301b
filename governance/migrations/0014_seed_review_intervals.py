"""Seeded re-review intervals: a year by default, sooner for riskier versions."""

from django.db import migrations

INTERVALS = [
    # name, license categories, min risk, days, overdue suspends new approvals
    ("Every published version", [], None, 365, False),
    (
        "Restricted, proprietary or copyleft license",
        ["restricted-use", "proprietary", "copyleft", "non-commercial"],
        None,
        180,
        False,
    ),
    ("High open risk", [], 3, 90, True),
    ("Critical open risk", [], 4, 30, True),
]


def seed(apps, schema_editor):
    ReviewInterval = apps.get_model("governance", "ReviewInterval")
    for name, categories, risk, days, suspends in INTERVALS:
        ReviewInterval.objects.update_or_create(
            name=name,
            defaults={
                "license_categories": categories,
                "min_risk": risk,
                "days": days,
                "overdue_suspends_approvals": suspends,
            },
        )


def unseed(apps, schema_editor):
    apps.get_model("governance", "ReviewInterval").objects.filter(
        name__in=[i[0] for i in INTERVALS]
    ).delete()


class Migration(migrations.Migration):
    dependencies = [("governance", "0013_lifecycle")]
    operations = [migrations.RunPython(seed, unseed)]
