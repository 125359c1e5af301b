"""Seed the default reuse policy; stewards and admins edit it in the admin."""

from django.db import migrations

NC, UNK, RU, CL, WC, PR = (
    "non-commercial",
    "unknown",
    "restricted-use",
    "copyleft",
    "weak-copyleft",
    "proprietary",
)

# name, license categories, use types, sensitivities, outcome, roles, reason
RULES = [
    (
        "Non-commercial license, commercial use",
        [NC],
        ["commercial"],
        [],
        "refuse",
        [],
        "The model's license forbids commercial use.",
    ),
    (
        "Unknown license beyond research",
        [UNK],
        ["internal", "commercial"],
        [],
        "refuse",
        [],
        "The license is unknown; only research use can be considered until a steward sets it.",
    ),
    (
        "Every request: legal",
        [],
        [],
        [],
        "review",
        ["legal"],
        "Legal checks every reuse against the license terms.",
    ),
    (
        "Copyleft, restricted-use or proprietary terms",
        [CL, WC, RU, PR],
        [],
        [],
        "review",
        ["legal", "compliance"],
        "The license carries obligations or use restrictions that compliance must track.",
    ),
    (
        "Customer-facing use",
        [],
        ["commercial"],
        [],
        "review",
        ["security"],
        "Customer-facing systems need a security review of the model and its files.",
    ),
    (
        "Confidential or restricted data",
        [],
        [],
        ["confidential", "restricted"],
        "review",
        ["security", "compliance"],
        "Sensitive data needs security and compliance review.",
    ),
]


def seed(apps, schema_editor):
    PolicyRule = apps.get_model("governance", "PolicyRule")
    for name, cats, uses, sens, outcome, roles, reason in RULES:
        PolicyRule.objects.update_or_create(
            name=name,
            defaults={
                "license_categories": cats,
                "use_types": uses,
                "sensitivities": sens,
                "outcome": outcome,
                "required_roles": roles,
                "reason": reason,
            },
        )


def unseed(apps, schema_editor):
    apps.get_model("governance", "PolicyRule").objects.filter(
        name__in=[r[0] for r in RULES]
    ).delete()


class Migration(migrations.Migration):
    dependencies = [("governance", "0006_reuse")]
    operations = [migrations.RunPython(seed, unseed)]
