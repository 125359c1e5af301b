"""Dataset upload, versions by content hash, visibility and sharing: pages, services and API."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from rest_framework.test import APIClient

from governance.models import AuditEvent
from portal.errors import PortalError
from tests.builders.datasets import (
    csv_bytes,
    image_zip_bytes,
    jsonl_bytes,
    spam_rows,
    text_dataset,
    upload,
)
from zoo.models import Dataset, DatasetVersion
from zoo.services import datasets as dataset_services

pytestmark = pytest.mark.django_db


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _upload_in_browser(client, filename, data, **choices):
    """The two steps of the upload page: send the file, then confirm the columns."""
    first = client.post("/datasets/upload/", {"file": upload(filename, data)})
    assert first.status_code == 200
    html = first.content.decode()
    token = re.search(r'name="token" value="([^"]+)"', html)
    assert token, html[:2000]
    return first, client.post(
        "/datasets/upload/confirm/", {"token": token.group(1), "sensitivity": "internal", **choices}
    )


def test_upload_previews_then_records_a_version_with_its_counts(alice):
    client = _client(alice)
    first, second = _upload_in_browser(
        client,
        "tickets.csv",
        csv_bytes(spam_rows()),
        name="tickets",
        text_column="message",
        label_column="label",
        slice_column="region",
    )

    assert "WINNER! You have won" in first.content.decode()  # the preview shows the rows
    assert second.status_code == 302
    version = DatasetVersion.objects.get()
    assert second["Location"] == f"/datasets/{version.dataset_id}/?version=v1"
    assert version.dataset.owner == alice
    assert version.dataset.modality == "text"
    assert version.n_rows == 48
    assert version.label_counts == {"ham": 24, "spam": 24}
    assert version.slice_column == "region"
    assert version.sample[0]["slice"] == "north"
    assert len(version.sha256) == 64
    event = AuditEvent.objects.get(verb="dataset.upload")
    assert event.actor_name == "alice"
    assert event.payload["rows"] == 48

    page = client.get(version.dataset.get_absolute_url())
    body = page.content.decode()
    assert page.status_code == 200
    assert "label-chart" in body
    assert "WINNER! You have won" in body


def test_the_same_file_twice_is_the_same_version(alice):
    first = text_dataset(alice)
    staged = dataset_services.dataset_stage_upload(
        actor=alice, upload=upload("again.csv", csv_bytes(spam_rows()))
    )
    again, created = dataset_services.dataset_create(
        actor=alice,
        staged=staged,
        dataset=first.dataset,
        sensitivity="internal",
        text_column="message",
        label_column="label",
    )

    assert created is False
    assert again.pk == first.pk
    assert DatasetVersion.objects.count() == 1


def test_the_same_file_with_other_columns_is_refused_rather_than_dropped(alice):
    first = text_dataset(alice)
    staged = dataset_services.dataset_stage_upload(
        actor=alice, upload=upload("again.csv", csv_bytes(spam_rows()))
    )
    with pytest.raises(PortalError, match=r"already .* with columns text='message'"):
        dataset_services.dataset_create(
            actor=alice,
            staged=staged,
            dataset=first.dataset,
            sensitivity="internal",
            text_column="region",
            label_column="label",
        )
    assert DatasetVersion.objects.count() == 1


def test_a_new_file_becomes_the_next_version(alice):
    first = text_dataset(alice)
    rows = spam_rows(repeat=5)
    staged = dataset_services.dataset_stage_upload(
        actor=alice, upload=upload("more.csv", csv_bytes(rows))
    )
    second, created = dataset_services.dataset_create(
        actor=alice,
        staged=staged,
        dataset=first.dataset,
        sensitivity="confidential",
        text_column="message",
        label_column="label",
    )
    assert created
    assert second.label == "v2"
    assert second.n_rows == 60
    first.dataset.refresh_from_db()
    assert first.dataset.sensitivity == "confidential"  # the most sensitive upload sets the level


def test_a_single_class_file_gets_a_clear_message_and_creates_nothing(alice):
    rows = [{"message": f"hello {i}", "label": "ham"} for i in range(10)]
    _, second = _upload_in_browser(
        _client(alice),
        "one.csv",
        csv_bytes(rows),
        name="one",
        text_column="message",
        label_column="label",
    )

    assert second.status_code == 200
    assert "a classifier needs at least two classes" in second.content.decode()
    assert not Dataset.objects.exists()
    assert not AuditEvent.objects.filter(verb="dataset.upload").exists()


def test_an_unreadable_file_is_refused_at_the_first_step(alice):
    response = _client(alice).post("/datasets/upload/", {"file": upload("x.exe", b"MZ\x90\x00")})
    assert response.status_code == 200
    assert "Upload a CSV, TSV or JSONL file" in response.content.decode()
    assert not Dataset.objects.exists()


def test_a_forged_or_foreign_upload_token_is_refused(alice, bob):
    staged = dataset_services.dataset_stage_upload(
        actor=alice, upload=upload("a.csv", csv_bytes(spam_rows()))
    )
    response = _client(bob).post(
        "/datasets/upload/confirm/",
        {
            "token": staged.token(alice),
            "name": "stolen",
            "sensitivity": "public",
            "text_column": "message",
            "label_column": "label",
        },
        follow=True,
    )
    assert "not yours" in response.content.decode()
    assert not Dataset.objects.exists()


def test_duplicate_names_are_refused_with_a_message(alice):
    text_dataset(alice, name="sms")
    staged = dataset_services.dataset_stage_upload(
        actor=alice, upload=upload("b.csv", csv_bytes(spam_rows(repeat=3)))
    )
    with pytest.raises(PortalError, match="already have a dataset called 'sms'"):
        dataset_services.dataset_create(
            actor=alice,
            staged=staged,
            name="sms",
            sensitivity="internal",
            text_column="message",
            label_column="label",
        )


def test_others_cannot_see_a_dataset_until_it_is_shared(alice, bob):
    version = text_dataset(alice)
    url = version.dataset.get_absolute_url()
    assert _client(bob).get(url).status_code == 404
    assert _client(bob).post(f"{url}share/", {"username": "bob"}).status_code == 404

    owner = _client(alice)
    owner.post(f"{url}share/", {"username": "bob"})
    assert _client(bob).get(url).status_code == 200
    assert AuditEvent.objects.filter(verb="dataset.share").exists()
    # Bob sees it but may not share it onwards.
    response = _client(bob).post(f"{url}share/", {"username": "alice"})
    assert response.status_code == 403

    owner.post(f"{url}unshare/", {"username": "bob"})
    assert _client(bob).get(url).status_code == 404


def test_dataset_list_shows_own_and_shared_datasets_within_a_query_budget(
    alice, bob, django_assert_max_num_queries
):
    for i in range(3):
        text_dataset(alice, name=f"set-{i}")
    mine = text_dataset(bob, name="bobs", rows=spam_rows(repeat=2))
    dataset_services.dataset_share(dataset=mine.dataset, actor=bob, user=alice)
    client = _client(alice)
    client.get("/datasets/")  # warm the session
    with django_assert_max_num_queries(8):
        response = client.get("/datasets/")
    body = response.content.decode()
    assert "set-2" in body
    assert "bobs" in body
    assert "shared with you" in body


def test_image_zip_upload_through_the_api(alice):
    api = APIClient()
    api.force_authenticate(alice)
    data = image_zip_bytes({"cat": 4, "dog": 5})
    response = api.post(
        "/api/datasets/",
        {"file": upload("pets.zip", data), "name": "pets", "sensitivity": "public"},
        format="multipart",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["modality"] == "vision"
    assert body["versions"][0]["label_counts"] == {"cat": 4, "dog": 5}
    assert body["versions"][0]["n_rows"] == 9


def test_api_upload_refusals_are_400_with_the_message_and_create_nothing(alice):
    api = APIClient()
    api.force_authenticate(alice)
    rows = [{"message": "x", "label": "a"}, {"message": "y", "label": "b"}]
    response = api.post(
        "/api/datasets/",
        {
            "file": upload("t.jsonl", jsonl_bytes(rows)),
            "name": "tiny",
            "sensitivity": "internal",
            "text_column": "message",
            "label_column": "label",
        },
        format="multipart",
    )
    assert response.status_code == 400
    assert "Every class needs at least two examples" in response.json()["detail"]
    assert not Dataset.objects.exists()


def test_api_lists_only_visible_datasets(alice, bob):
    text_dataset(alice)
    api = APIClient()
    api.force_authenticate(bob)
    assert api.get("/api/datasets/").json()["count"] == 0
    api.force_authenticate(alice)
    assert api.get("/api/datasets/").json()["count"] == 1
    assert APIClient().get("/api/datasets/").status_code == 401
