from __future__ import annotations

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import CommandError, call_command

pytestmark = pytest.mark.django_db


def test_seed_demo_creates_one_user_per_role_and_is_idempotent(settings, capsys):
    settings.DEBUG = True
    call_command("seed_demo", "--users-only")
    call_command("seed_demo", "--users-only")

    User = get_user_model()
    assert User.objects.filter(username__in=["alice", "sam", "lena", "sean", "cora"]).count() == 5
    assert User.objects.count() == 7
    roles = {u.username: set(u.groups.values_list("name", flat=True)) for u in User.objects.all()}
    assert roles["lena"] == {"legal"}
    assert roles["sam"] == {"stewards"}
    assert roles["bob"] == set()
    assert User.objects.get(username="admin").is_superuser
    out = capsys.readouterr().out
    assert "zoo-demo-2026" in out
    assert authenticate(username="sean", password="zoo-demo-2026") is not None


def test_seed_demo_refuses_with_debug_off(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="published password"):
        call_command("seed_demo")
    assert not get_user_model().objects.exists()


def test_roles_exist_as_groups_after_migrate():
    from django.contrib.auth.models import Group

    names = set(Group.objects.values_list("name", flat=True))
    assert {"ml-engineers", "stewards", "legal", "security", "compliance"} <= names


def test_seed_demo_imports_real_pretrained_weights_once(settings, capsys):
    from zoo.models import CatalogModel, ModelVersion

    settings.DEBUG = True
    call_command("seed_demo")
    call_command("seed_demo")

    out = capsys.readouterr().out
    assert "sentence-transformers/all-MiniLM-L6-v2 v1 imported" in out
    assert "sentence-transformers/all-MiniLM-L6-v2 v1 already present" in out
    assert ModelVersion.objects.count() == 3
    minilm = CatalogModel.objects.get(repo_id="sentence-transformers/all-MiniLM-L6-v2")
    assert minilm.status == "available"
    assert 22_000_000 < minilm.parameter_count < 23_500_000
    version = minilm.versions.get()
    assert version.license.spdx_id == "apache-2.0"
    assert "one billion" in version.bias_notes
    effnet = ModelVersion.objects.get(model__repo_id="google/efficientnet-lite0")
    pth = effnet.artifacts.get(format="pickle")
    assert pth.scan_status == "clean"  # a plain state dict: only torch's rebuild helpers
    assert not effnet.is_blocked
    tiny = CatalogModel.objects.get(repo_id="portal-demo/tiny-random-bert")
    assert tiny.parameter_count < 2_000_000
    assert "negative-control" in tiny.domain_tags


def test_seed_demo_gives_alice_the_demo_datasets_once(settings, capsys):
    from zoo.models import Dataset, DatasetVersion

    settings.DEBUG = True
    call_command("seed_demo")
    call_command("seed_demo")

    out = capsys.readouterr().out
    assert "dataset alice/sms-spam v1: 5,160 rows uploaded" in out
    assert "dataset alice/sms-spam v1: 5,160 rows already present" in out
    assert DatasetVersion.objects.count() == 2
    sms = DatasetVersion.objects.get(dataset__name="sms-spam")
    assert sms.label_counts == {"ham": 4518, "spam": 642}
    assert any("duplicate" in w for w in sms.warnings)
    digits = Dataset.objects.get(name="digits")
    assert digits.modality == "vision"
    assert digits.versions.get().n_rows == 1797
