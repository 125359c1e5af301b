"""What a newcomer met: blocked results shown as blocked, requests in plain words, refusals
on the page they came from, cards read as a person would, a form that shows one source."""

from __future__ import annotations

import pickle

import pytest
from django.test import TestCase

from governance.models import ReuseRequest
from governance.services import reuse as gov_reuse
from jobs.engine import job_execute
from jobs.services.imports import import_launch
from tests.builders.catalogue import import_model, small_model
from tests.builders.files import Evil
from tests.builders.governance import submit_reuse
from tests.factories import UserFactory
from zoo.cards import parse_card

pytestmark = pytest.mark.django_db


@pytest.fixture
def blocked_job(sam, tmp_path):
    folder = small_model("evil", extra={"pytorch_model.bin": pickle.dumps(Evil("true"))})
    job = import_launch(actor=sam, source="folder", repo_id="acme/evil", folder=str(folder))
    job_execute(job_id=job.pk)
    job.refresh_from_db()
    return job


def test_a_blocked_import_reads_as_blocked_with_its_reasons_in_words(client, sam, blocked_job):
    client.force_login(sam)

    html = client.get(f"/jobs/{blocked_job.pk}/").content.decode()

    assert blocked_job.status == "succeeded"
    assert "Imported, but blocked:" in html
    assert 'data-testid="result-blocked"' in html
    assert "<li>pytorch_model.bin: unsafe pickle (posix.system).</li>" in html
    assert "[&#x27;" not in html  # no Python list repr anywhere
    assert "Block reasons" not in html


def test_a_blocked_version_offers_only_what_can_be_done(client, sam, bob, blocked_job):
    page = "/catalogue/acme/evil/"
    client.force_login(sam)
    html = client.get(page).content.decode()

    assert "nobody may download, probe or fine-tune it" in html
    assert 'data-testid="blocked-actions"' in html
    assert "waive its scan result" in html
    assert "Convert its torch checkpoints to safetensors" in html
    assert 'id="snippet-hub"' not in html
    assert "Probe v1 on one of your datasets" not in html
    assert "its files are not served to anyone" in html


def test_a_request_says_where_it_stands_and_which_roles_are_left(client, alice, lena, sam):
    version = import_model(small_model("router"), "acme/router", actor=sam)
    with TestCase.captureOnCommitCallbacks(execute=True):
        request = submit_reuse(alice, version, use_type="commercial", sensitivity="confidential")
        roles = request.required_roles
        assert roles == ["legal", "security", "compliance"], roles
        gov_reuse.review_submit(request=request, reviewer=lena, role="legal", decision="approve")
    client.force_login(alice)

    html = client.get(f"/governance/requests/{request.pk}/").content.decode()

    assert request.policy_explanation.startswith("Needs legal, security and compliance review.")
    assert "Waiting for security and compliance review (1 of 3 approved)" in html
    assert "✓ <strong>legal</strong>: approve by lena" in html
    assert "○ <strong>security</strong>: to decide" in html


def test_a_review_message_is_a_sentence(client, alice, sam):
    version = import_model(small_model("router"), "acme/router", actor=sam)
    reviewer = UserFactory(username="lena", roles=["legal"])
    request = submit_reuse(alice, version, sensitivity="public")
    client.force_login(reviewer)

    answer = client.post(
        f"/governance/requests/{request.pk}/review/",
        {"role": "legal", "decision": "changes", "comment": "Say which tickets."},
        follow=True,
    )

    assert ReuseRequest.objects.get(pk=request.pk).status == "changes_requested"
    assert f"Request #{request.pk}: back with the requester for changes." in (
        answer.content.decode()
    )


def test_a_refused_button_press_returns_to_the_page_with_the_message(client, bob, sam):
    version = import_model(small_model("router"), "acme/router", actor=sam)
    page = "/catalogue/acme/router/"
    client.force_login(bob)

    answer = client.post(
        f"/catalogue/import/convert/{version.pk}/", HTTP_REFERER=f"http://testserver{page}"
    )
    followed = client.get(answer["Location"])

    assert answer.status_code == 302
    assert answer["Location"] == page
    assert "Only stewards may convert a version." in followed.content.decode()
    # Without a page to return to (or from another site) it is still the 403 page.
    assert client.post(f"/catalogue/import/convert/{version.pk}/").status_code == 403
    elsewhere = client.post(
        f"/catalogue/import/convert/{version.pk}/", HTTP_REFERER="https://evil.example/x"
    )
    assert elsewhere.status_code == 403


def test_an_administrator_without_roles_is_told_what_they_are(client):
    admin = UserFactory(username="ada", is_staff=True)
    client.force_login(admin)

    html = client.get("/").content.decode()

    assert "You are an administrator" in html
    assert "You hold no review or steward role" not in html


def test_every_page_has_an_icon(client, bob):
    client.force_login(bob)

    assert 'rel="icon"' in client.get("/").content.decode()
    icon = client.get("/favicon.ico")
    assert icon.status_code == 301
    assert icon["Location"].endswith("favicon.svg")


def test_cards_are_read_as_a_person_would():
    card = parse_card(
        "---\nlicense: mit\n---\n# Ticket **router**\n\n"
        "A **tiny** BERT for `support_tickets`, see *the notes*; keeps my_model_name.\n\n"
        "## Bias, Risks, and Limitations\n\nLearned from English tickets only.\n\n"
        "## Training\n\nThree epochs.\n"
    )

    assert card.title == "Ticket router"
    assert card.summary == "A tiny BERT for support_tickets, see the notes; keeps my_model_name."
    assert card.section("limitation") == "Learned from English tickets only."
    assert card.section("nothing") == ""


def test_an_import_takes_title_and_limitations_from_the_card(sam):
    card = (
        "---\nlicense: apache-2.0\n---\n# Ticket Router\n\nRoutes tickets.\n\n"
        "## Limitations\n\nEnglish only.\n\n## Bias\n\nOver-represents billing.\n\n"
        "## Intended use\n\nRouting.\n\n## Training data\n\nTickets.\n\n"
        "## Evaluation\n\nNone yet.\n"
    )
    version = import_model(
        small_model("router", extra={"README.md": card.encode()}), "acme/r", actor=sam
    )

    assert version.model.title == "Ticket Router"
    assert version.limitations == "English only."
    assert version.bias_notes == "Over-represents billing."


def test_the_import_form_shows_one_source_at_a_time_and_says_drafts_come_first(client, sam):
    client.force_login(sam)

    html = client.get("/catalogue/import/").content.decode()

    assert html.count('data-show-when="source=hub"') == 2
    assert 'data-show-when="source=folder"' in html
    assert 'data-show-when="source=archive"' in html
    assert "An imported model lands as a draft" in html


def test_the_audit_page_folds_a_snapshot_download_into_one_row(client, sam):
    from django.db import transaction

    from governance.audit import audit_record

    version = import_model(small_model("router"), "acme/router", actor=sam)
    with transaction.atomic():
        for path in ("config.json", "model.safetensors", "README.md"):
            audit_record(actor=sam, verb="hub.download", target=version, payload={"path": path})
        audit_record(actor=sam, verb="token.create", payload={"name": "ünïcode"})
    client.force_login(sam)

    html = client.get("/governance/audit/").content.decode()
    filtered = client.get("/governance/audit/", {"verb": "hub.download"}).content.decode()
    unknown = client.get("/governance/audit/", {"verb": "no.such"}).content.decode()

    assert '<span class="badge" data-testid="download-count">3 files</span>' in html
    assert "<li><code>model.safetensors</code></li>" in html
    assert "&quot;name&quot;: &quot;ünïcode&quot;" in html  # JSON, not a Python repr
    assert '<option value="hub.download" selected>hub.download</option>' in filtered
    assert "No events match." in unknown
    csv = client.get("/governance/audit/", {"format": "csv"})
    assert b"".join(csv.streaming_content).count(b"hub.download") == 3


def test_the_same_file_under_a_new_name_is_pointed_out(client, alice):
    from tests.builders.datasets import csv_bytes, spam_rows, text_dataset, upload

    existing = text_dataset(alice, name="sms")
    client.force_login(alice)

    page = client.post(
        "/datasets/upload/", {"file": upload("renamed.csv", csv_bytes(spam_rows()))}
    ).content.decode()

    assert 'data-testid="same-file"' in page
    assert f'href="{existing.dataset.get_absolute_url()}?version={existing.label}"' in page


def test_server_paths_of_imports_are_for_stewards_only(client, bob, sam):
    version = import_model(small_model("router"), "acme/router", actor=sam)
    client.force_login(bob)
    as_bob = client.get("/catalogue/acme/router/").content.decode()
    client.force_login(sam)
    as_sam = client.get("/catalogue/acme/router/").content.decode()

    assert version.source_repo.startswith("/")
    assert version.source_repo not in as_bob
    assert version.source_repo in as_sam


def test_approved_users_download_single_files_from_the_page(client, bob, lena, sam):
    from governance.models import AuditEvent
    from tests.builders.governance import approve

    version = import_model(small_model("router"), "acme/router", actor=sam)
    url = f"/catalogue/acme/router/versions/{version.label}/files/config.json"
    client.force_login(bob)

    assert 'data-testid="download-' not in client.get("/catalogue/acme/router/").content.decode()
    refused = client.get(url)
    assert refused.status_code == 403
    assert "you hold no approved, unexpired reuse request" in refused.content.decode()
    assert AuditEvent.objects.filter(verb="hub.refused", actor=bob).exists()

    with TestCase.captureOnCommitCallbacks(execute=True):
        approve(bob, version, reviewer=lena)
    page = client.get("/catalogue/acme/router/").content.decode()
    answer = client.get(url)

    assert f'href="{url}" download' in page
    assert answer.status_code == 200
    assert answer["Content-Disposition"] == 'attachment; filename="config.json"'
    assert answer["X-Content-Type-Options"] == "nosniff"
    assert (
        b"".join(answer.streaming_content) == (small_model("router") / "config.json").read_bytes()
    )
    event = AuditEvent.objects.filter(verb="hub.download", actor=bob).get()
    assert event.payload["path"] == "config.json"
    assert client.get(url.replace("config.json", "nope.bin")).status_code == 404


def test_image_datasets_show_thumbnails_of_their_sample(client, alice, bob):
    import io

    from PIL import Image

    from tests.builders.datasets import image_zip_bytes, upload
    from zoo.services import datasets as dataset_services

    staged = dataset_services.dataset_stage_upload(
        actor=alice, upload=upload("shapes.zip", image_zip_bytes({"red": 3, "blue": 3}))
    )
    version, _ = dataset_services.dataset_create(
        actor=alice, staged=staged, name="shapes", sensitivity="internal"
    )
    client.force_login(alice)

    page = client.get(version.dataset.get_absolute_url()).content.decode()
    thumb = client.get(f"/datasets/{version.dataset.pk}/versions/{version.label}/thumbnails/0.png")

    assert f'src="/datasets/{version.dataset.pk}/versions/{version.label}/thumbnails/0.png"' in page
    assert thumb.status_code == 200
    assert thumb["Content-Type"] == "image/png"
    with Image.open(io.BytesIO(thumb.content)) as picture:
        assert max(picture.size) <= 96
    missing = f"/datasets/{version.dataset.pk}/versions/{version.label}/thumbnails/99.png"
    assert client.get(missing).status_code == 404
    client.force_login(bob)  # not shared with bob
    assert client.get(missing.replace("99", "0")).status_code == 404
