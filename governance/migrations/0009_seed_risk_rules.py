"""Policy rows that make a version's open risks count."""

from django.db import migrations

RULES = [
    (
        "High open risk",
        3,
        ["security", "compliance"],
        "The version has a high or critical open risk in its register.",
    ),
]


def seed(apps, schema_editor):
    PolicyRule = apps.get_model("governance", "PolicyRule")
    for name, level, roles, reason in RULES:
        PolicyRule.objects.update_or_create(
            name=name,
            defaults={
                "min_risk": level,
                "outcome": "review",
                "required_roles": roles,
                "reason": reason,
            },
        )


def unseed(apps, schema_editor):
    apps.get_model("governance", "PolicyRule").objects.filter(
        name__in=[r[0] for r in RULES]
    ).delete()


class Migration(migrations.Migration):
    dependencies = [("governance", "0008_risk_register")]
    operations = [migrations.RunPython(seed, unseed)]
