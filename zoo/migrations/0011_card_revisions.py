"""Card revisions, and the card sections policy requires before a draft is published (seeded)."""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models

# heading, other headings that count, what the section should say
PUBLISHING = [
    (
        "Intended use",
        ["Uses", "Direct use"],
        "What the model is for, who may use it and for what; what it must not be used for.",
    ),
    (
        "Limitations",
        ["Risks", "Caveats"],
        "Where it works badly or not at all: languages, domains, input sizes, known biases.",
    ),
    (
        "Training data",
        ["Training dataset", "Datasets"],
        "What it was trained (or fine-tuned) on, with links or dataset ids, and how it was split.",
    ),
    (
        "Evaluation",
        ["Results", "Metrics", "Benchmarks"],
        "How it was measured, on what data, with the figures; or that it was not evaluated.",
    ),
]


def seed(apps, schema_editor):
    CardRequirement = apps.get_model("zoo", "CardRequirement")
    for position, (heading, also, help_text) in enumerate(PUBLISHING, start=1):
        CardRequirement.objects.update_or_create(
            state="published",
            heading=heading,
            defaults={
                "also_accepted": "\n".join(also),
                "help_text": help_text,
                "position": position,
            },
        )


def unseed(apps, schema_editor):
    apps.get_model("zoo", "CardRequirement").objects.filter(
        state="published", heading__in=[h for h, _, _ in PUBLISHING]
    ).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("zoo", "0010_version_holds"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="CardRequirement",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "state",
                    models.CharField(
                        choices=[("published", "Published (a draft made available)")],
                        default="published",
                        max_length=16,
                    ),
                ),
                (
                    "heading",
                    models.CharField(
                        help_text="The section, as a card heading names it.", max_length=100
                    ),
                ),
                (
                    "also_accepted",
                    models.TextField(
                        blank=True,
                        help_text="Other headings that count as this section, one per line.",
                    ),
                ),
                (
                    "help_text",
                    models.TextField(
                        blank=True,
                        help_text="What the section should say; shown to stewards editing a card.",
                    ),
                ),
                (
                    "position",
                    models.PositiveSmallIntegerField(default=0, help_text="Order in the lists."),
                ),
                ("active", models.BooleanField(default=True)),
            ],
            options={
                "ordering": ["state", "position", "id"],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("state", "heading"), name="cardrequirement_unique_heading"
                    ),
                    models.CheckConstraint(
                        condition=models.Q(("state__in", ["published"])),
                        name="cardrequirement_state_valid",
                    ),
                ],
            },
        ),
        migrations.CreateModel(
            name="CardRevision",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("number", models.PositiveIntegerField()),
                ("markdown", models.TextField(blank=True)),
                ("reason", models.TextField()),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                (
                    "author",
                    models.ForeignKey(
                        blank=True,
                        help_text="Empty for the system: the card as imported.",
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "version",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="card_revisions",
                        to="zoo.modelversion",
                    ),
                ),
            ],
            options={
                "ordering": ["version_id", "number"],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("version", "number"), name="cardrevision_unique_number"
                    ),
                    models.CheckConstraint(
                        condition=models.Q(("number__gte", 1)), name="cardrevision_number_positive"
                    ),
                ],
            },
        ),
        migrations.RunPython(seed, unseed),
    ]
