from django.db import migrations, models


class Migration(migrations.Migration):
    """Events already recorded were chained with plain SHA-256; new ones are keyed.

    Adding the column with a default is a catalogue change in PostgreSQL: no
    row is updated, so the append-only trigger has nothing to refuse.
    """

    dependencies = [("governance", "0010_accesstoken")]

    operations = [
        migrations.AddField(
            model_name="auditevent",
            name="scheme",
            field=models.CharField(default="sha256", max_length=16),
            preserve_default=False,
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="scheme",
            field=models.CharField(default="hmac-sha256", max_length=16),
        ),
    ]
