"""Hostile input gets a clear refusal and changes nothing: no 500, no rows, no files left.

Each case is one an outside test answered with a 500, a RecursionError message
or a 28 MB metadata row; each goes through the real path a user would take.
"""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from governance.models import AuditEvent, ReuseRequest
from tests.builders.catalogue import import_model, small_model
from tests.builders.datasets import upload
from tests.builders.files import make_model, tar_archive
from tests.builders.governance import bearer, token_for
from zoo import importers
from zoo.cards import MAX_METADATA_BYTES, CardError, parse_card
from zoo.importers import ImportRefused
from zoo.models import CatalogModel, Dataset

pytestmark = pytest.mark.django_db


def _api(user) -> APIClient:
    api = APIClient()
    api.force_authenticate(user)
    return api


# --- JSON that PostgreSQL cannot store ----------------------------------------


@pytest.mark.parametrize("escape", ["\\u0000", "\\ud800"], ids=["nul", "lone-surrogate"])
def test_jsonl_with_unstorable_escapes_is_refused_by_line(alice, escape):
    lines = [
        '{"message": "win a prize", "label": "spam"}',
        '{"message": "see you at 5", "label": "ham"}',
        f'{{"message": "free {escape} money", "label": "spam"}}',
        '{"message": "lunch?", "label": "ham"}',
    ]
    response = _api(alice).post(
        "/api/datasets/",
        {
            "file": upload("texts.jsonl", "\n".join(lines).encode()),
            "name": "texts",
            "sensitivity": "internal",
            "text_column": "message",
            "label_column": "label",
        },
        format="multipart",
    )
    assert response.status_code == 400
    assert "Line 3 holds text that cannot be stored" in response.json()["detail"]
    assert not Dataset.objects.exists()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('{"intended_use": "a\\u0000b"}', "NUL character or half of a surrogate pair"),
        ('{"intended_use": "\\udfff"}', "NUL character or half of a surrogate pair"),
        ('{"\\u0000": 1}', "a key in the body"),
        ("[" * 100_000 + "]" * 100_000, "nested more than 64 levels"),
    ],
    ids=["nul", "lone-surrogate", "nul-key", "deep"],
)
def test_api_json_the_database_cannot_store_is_a_400(bob, body, message):
    response = _api(bob).post("/api/reuse-requests/", data=body, content_type="application/json")
    assert response.status_code == 400
    assert message in response.json()["detail"]
    assert not ReuseRequest.objects.exists()


# --- /hf/ paths ---------------------------------------------------------------


def test_a_nul_in_a_hub_path_is_refused_and_recorded(client, sam, bob):
    version = import_model(small_model("router"), "acme/router", actor=sam)
    token = token_for(bob)
    for path in (
        f"/hf/acme/router/resolve/{version.revision}/config%00.json",
        "/hf/api/models/acme/rou%00ter",
        "/hf/acme/router/resolve/ma%00in/config.json",
    ):
        response = client.get(path, headers=bearer(token))
        assert response.status_code == 400, path
        assert "NUL or another control character" in response.json()["error"]
    refused = AuditEvent.objects.filter(verb="hub.refused", actor_name="bob")
    assert refused.count() == 3
    assert "\\x00" in refused.first().payload["path"]  # what came, spelled out
    anonymous = client.get("/hf/api/models/acme/rou%00ter")
    assert anonymous.status_code == 400
    assert refused.count() == 3


# --- imports --------------------------------------------------------------------


def _nothing_imported(settings):
    assert not CatalogModel.objects.exists()
    staging = settings.IMPORT_STAGING_DIR
    assert not staging.exists() or not any(staging.iterdir())


def test_a_config_nested_deeper_than_any_model_needs_is_refused(sam, tmp_path, settings):
    folder = make_model(tmp_path / "imports" / "deep")
    (folder / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ImportRefused, match=r"config\.json nests more than 100 levels"):
        importers.import_from_folder(folder=folder, repo_id="acme/deep", actor=sam)
    _nothing_imported(settings)


def test_a_folder_nested_past_the_limit_is_refused_early(sam, tmp_path, settings):
    folder = make_model(tmp_path / "imports" / "tall")
    deep = folder.joinpath(*["d"] * 100)  # a server path cannot reach 1,500 deep; an archive can
    deep.mkdir(parents=True)
    (deep / "weights.bin").write_bytes(b"x")
    with pytest.raises(ImportRefused, match="nested more than 64 folders deep"):
        importers.import_from_folder(folder=folder, repo_id="acme/tall", actor=sam)
    _nothing_imported(settings)


def test_an_archive_member_1500_levels_deep_is_refused_before_extraction(sam, tmp_path, settings):
    archive = tar_archive(tmp_path / "tall.tar.gz", {"/".join(["d"] * 1500) + "/x.bin": b"x"})
    with pytest.raises(ImportRefused, match="nested more than 64 folders deep"):
        importers.import_from_archive(
            archive=archive, repo_id="acme/tall", original_name="tall.tar.gz", actor=sam
        )
    _nothing_imported(settings)


# --- model cards ----------------------------------------------------------------

LAUGHS = "\n".join(
    ["a: &a [x, x, x, x, x, x, x, x, x]"]
    + [
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]"
        for i in range(8)
    ]
)


def test_a_card_header_with_yaml_aliases_is_refused():
    with pytest.raises(CardError, match=r"uses an alias \(\*a, line 3\)"):
        parse_card(f"---\n{LAUGHS}\n---\n# Card")


def test_card_metadata_is_capped(sam, tmp_path, settings):
    big = "\n".join(f"key{i}: {'v' * 100}" for i in range(1000))
    with pytest.raises(CardError, match=f"the limit is {MAX_METADATA_BYTES:,}"):
        parse_card(f"---\n{big}\n---\n# Card")
    folder = make_model(tmp_path / "imports" / "laughs", card=f"---\n{LAUGHS}\n---\n# Card")
    with pytest.raises(ImportRefused, match=r"README\.md: The card's YAML header uses an alias"):
        importers.import_from_folder(folder=folder, repo_id="acme/laughs", actor=sam)
    _nothing_imported(settings)


def test_dates_in_a_card_header_are_kept_as_text():
    card = parse_card("---\nlicense: mit\nreleased: 2024-05-01\n---\n# Card")
    assert card.metadata["released"] == "2024-05-01"
    json.dumps(card.metadata)
