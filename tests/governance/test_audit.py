"""The audit log: every action writes one event and the keyed chain holds.

Attacks on the table itself are in test_audit_tamper.py.
"""

from __future__ import annotations

import hashlib
import hmac
import threading

import pytest
from django.db import connection, transaction
from rest_framework.test import APIClient

from governance.audit import GENESIS, audit_record, canonical, verify_chain
from governance.models import AuditEvent, License
from jobs.engine import job_cancel, job_create
from jobs.models import Job
from tests.builders.files import make_model
from tests.factories import (
    PUBLISHABLE_CARD,
    CatalogModelFactory,
    JobFactory,
    ModelVersionFactory,
)
from zoo import importers
from zoo.services import catalogue as catalogue_services

pytestmark = pytest.mark.django_db


def _verbs():
    return list(AuditEvent.objects.order_by("id").values_list("verb", flat=True))


def test_events_form_a_chain_from_genesis(alice):
    with transaction.atomic():
        first = audit_record(actor=alice, verb="test.one", payload={"n": 1})
        second = audit_record(actor=None, verb="test.two")

    assert first.prev_hash == GENESIS
    assert second.prev_hash == first.hash
    assert second.actor_name == "system"
    assert verify_chain().broken_at is None
    assert verify_chain().checked == 2


@pytest.mark.django_db(transaction=True)
def test_recording_outside_a_transaction_is_a_programming_error(alice):
    with pytest.raises(RuntimeError, match="inside the action's transaction"):
        audit_record(actor=alice, verb="test.loose")


def test_links_are_keyed_with_the_audit_key(alice, settings):
    with transaction.atomic():
        event = audit_record(actor=alice, verb="test.one")
    assert event.scheme == "hmac-sha256"
    expected = hmac.new(
        settings.AUDIT_KEY.encode(),
        (event.prev_hash + canonical(event)).encode(),
        hashlib.sha256,
    ).hexdigest()
    assert event.hash == expected
    settings.AUDIT_KEY = "another key"
    assert verify_chain().broken_at == event.pk  # the key, not the table, vouches for it


@pytest.mark.django_db(transaction=True)
def test_concurrent_appends_never_fork_the_chain(alice):
    errors = []

    def writer(n):
        try:
            for i in range(10):
                with transaction.atomic():
                    audit_record(actor=None, verb="test.concurrent", payload={"w": n, "i": i})
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert not errors
    assert AuditEvent.objects.count() == 40
    prevs = list(AuditEvent.objects.values_list("prev_hash", flat=True))
    assert len(set(prevs)) == 40  # no two events extend the same link
    assert verify_chain().broken_at is None


def test_job_actions_are_audited(alice):
    with transaction.atomic():
        job = job_create(kind=Job.Kind.WORKER_CHECK, requested_by=alice)
    job_cancel(job=job, actor=alice)
    events = list(AuditEvent.objects.order_by("id"))
    assert [e.verb for e in events] == ["job.create", "job.cancel"]
    assert events[1].target_type == "jobs.job"
    assert events[1].target_id == str(job.pk)
    assert events[1].payload == {"before": {"status": "queued"}}
    assert events[1].actor_name == "alice"


def test_catalogue_actions_are_audited(sam, tmp_path):
    folder = make_model(tmp_path / "imports" / "router")
    version, _ = importers.import_from_folder(folder=folder, repo_id="acme/router", actor=sam)
    model = version.model
    catalogue_services.catalog_model_update(model=model, actor=sam, title="Router")
    catalogue_services.catalog_model_set_status(model=model, status="available", actor=sam)
    catalogue_services.version_set_license(
        version=version, license=License.objects.get(spdx_id="apache-2.0"), actor=sam
    )
    catalogue_services.version_update_metadata(
        version=version, actor=sam, limitations="English only"
    )

    assert _verbs() == [
        "version.import",
        "model.update",
        "model.status",
        "version.license",
        "version.update",
    ]
    imported = AuditEvent.objects.get(verb="version.import")
    assert imported.payload["revision"] == version.revision
    assert set(imported.payload["files"]) == {"model.safetensors", "config.json", "README.md"}
    license_event = AuditEvent.objects.get(verb="version.license")
    assert license_event.payload["before"]["license"] == "mit"
    assert license_event.payload["after"]["license"] == "apache-2.0"


def test_a_refused_import_writes_no_event(sam, tmp_path):
    folder = make_model(tmp_path / "imports" / "bad", card="---\nlicense: [x\n---\n")
    with pytest.raises(importers.ImportRefused):
        importers.import_from_folder(folder=folder, repo_id="acme/bad", actor=sam)
    assert not AuditEvent.objects.exists()


def test_refused_authorizations_are_recorded(client, bob):
    model = ModelVersionFactory().model
    client.force_login(bob)
    client.post(f"/catalogue/{model.repo_id}/status/", {"status": "blocked", "reason": "x"})
    api = APIClient()
    api.force_authenticate(bob)
    api.post("/api/jobs/worker-check/", {"queue": "default"})

    refused = list(AuditEvent.objects.filter(verb="access.refused").order_by("id"))
    assert [e.payload["path"] for e in refused] == [
        f"/catalogue/{model.repo_id}/status/",
        "/api/jobs/worker-check/",
    ]
    assert all(e.actor_name == "bob" for e in refused)


def test_request_id_is_carried_into_events(client, sam):
    version = ModelVersionFactory(
        model=CatalogModelFactory(status="draft"), card_markdown=PUBLISHABLE_CARD
    )
    client.force_login(sam)
    response = client.post(
        f"/catalogue/{version.model.repo_id}/status/",
        {"status": "available"},
        HTTP_X_REQUEST_ID="req-123",
    )
    assert response["X-Request-ID"] == "req-123"
    assert AuditEvent.objects.get(verb="model.status").request_id == "req-123"


def test_audit_page_is_for_auditors_and_exports_csv(client, bob, sam, lena):
    JobFactory()
    with transaction.atomic():
        audit_record(actor=sam, verb="test.csv", payload={"note": "=cmd|' /C calc'!A0"})
    client.force_login(bob)
    assert client.get("/governance/audit/").status_code == 403
    client.force_login(lena)
    page = client.get("/governance/audit/", {"verb": "test.csv"})
    assert page.status_code == 200
    assert "test.csv" in page.content.decode()
    export = client.get("/governance/audit/", {"verb": "test.csv", "format": "csv"})
    body = b"".join(export.streaming_content).decode()
    lines = body.strip().splitlines()
    assert lines[0].startswith("id,created_at,actor_name,verb")
    assert len(lines) == 2
    assert ",sam,test.csv," in lines[1]
    # The payload cell starts with "{", so no formula escaping was needed; the text is intact.
    assert "=cmd|' /C calc'!A0" in lines[1]


def test_csv_cells_that_look_like_formulas_are_neutralised(client, sam):
    with transaction.atomic():
        audit_record(actor=sam, verb="=HYPERLINK(1)")
    client.force_login(sam)
    export = client.get("/governance/audit/", {"format": "csv"})
    body = b"".join(export.streaming_content).decode()
    assert ",'=HYPERLINK(1)," in body
