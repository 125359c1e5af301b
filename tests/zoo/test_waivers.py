"""Scan waivers: a steward's audited, expiring decision bound to one file's sha256.

The file is a real scikit-learn model pickled in the test (never loaded), the
false positive the waiver exists for; it goes through the real importer.
"""

from __future__ import annotations

import pickle
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from governance.models import AuditEvent
from jobs.tasks import lapse_scan_waivers
from portal.errors import Conflict, Forbidden, PortalError
from tests.builders.catalogue import small_model
from tests.builders.governance import bearer, token_for
from zoo import importers
from zoo.models import ModelVersion, ScanWaiver
from zoo.services.catalogue import catalog_model_set_status
from zoo.services.waivers import scan_waiver_grant, scan_waiver_revoke

pytestmark = pytest.mark.django_db

REASON = "Fraud team's scikit-learn 1.5 pipeline; opcodes reviewed, sklearn and numpy only."


def _classifier(max_iter: int = 200) -> bytes:
    features, labels = load_iris(return_X_y=True)
    return pickle.dumps(LogisticRegression(max_iter=max_iter).fit(features, labels))


@pytest.fixture(scope="module")
def clf() -> bytes:
    return _classifier()


def _import(name: str, repo_id: str, files: dict[str, bytes], actor) -> ModelVersion:
    version, _ = importers.import_from_folder(
        folder=small_model(name, extra=files), repo_id=repo_id, actor=actor
    )
    return version


def _pickle_of(version: ModelVersion):
    return version.artifacts.get(format="pickle")


def test_a_waiver_unblocks_every_version_holding_the_same_bytes(sam, clf):
    first = _import("a", "fraud/clf", {"clf.pkl": clf}, sam)
    elsewhere = _import("b", "risk/clf", {"models/scorer.joblib": clf}, sam)
    changed = _import("c", "risk/other", {"clf.pkl": _classifier(max_iter=150)}, sam)
    assert {first.status, elsewhere.status, changed.status} == {ModelVersion.Status.BLOCKED}

    waiver = scan_waiver_grant(artifact=_pickle_of(first), actor=sam, reason=REASON, days=30)

    for version in (first, elsewhere, changed):
        version.refresh_from_db()
    assert first.status == elsewhere.status == ModelVersion.Status.AVAILABLE
    assert first.block_reasons == elsewhere.block_reasons == []
    # One changed byte is another file: still blocked.
    assert changed.status == ModelVersion.Status.BLOCKED
    assert waiver.sha256 == _pickle_of(first).sha256
    assert waiver.scan_status == "dangerous"
    assert waiver.findings
    event = AuditEvent.objects.get(verb="scan.waive")
    assert event.payload["reason"] == REASON
    assert {v["version"] for v in event.payload["versions"]} == {first.pk, elsewhere.pk}


def test_a_version_imported_after_the_waiver_is_covered_too(sam, clf):
    first = _import("a", "fraud/clf", {"clf.pkl": clf}, sam)
    scan_waiver_grant(artifact=_pickle_of(first), actor=sam, reason=REASON, days=30)

    later = _import("b", "fraud/clf2", {"weights/clf.pkl": clf}, sam)

    assert later.status == ModelVersion.Status.AVAILABLE


@pytest.mark.parametrize(
    ("who", "reason", "days", "error", "message"),
    [
        ("bob", REASON, 30, Forbidden, "Only stewards"),
        ("sam", "looks fine", 30, PortalError, "Say why"),
        ("sam", REASON, 0, PortalError, "between 1 and 365 days"),
        ("sam", REASON, 366, PortalError, "between 1 and 365 days"),
    ],
)
def test_a_waiver_needs_a_steward_a_reason_and_a_bounded_expiry(
    request, sam, clf, who, reason, days, error, message
):
    version = _import("a", "fraud/clf", {"clf.pkl": clf}, sam)

    with pytest.raises(error, match=message):
        scan_waiver_grant(
            artifact=_pickle_of(version),
            actor=request.getfixturevalue(who),
            reason=reason,
            days=days,
        )

    version.refresh_from_db()
    assert version.status == ModelVersion.Status.BLOCKED
    assert not ScanWaiver.objects.exists()
    assert not AuditEvent.objects.filter(verb="scan.waive").exists()


def test_clean_files_and_files_already_waived_are_refused(sam, clf):
    version = _import("a", "fraud/clf", {"clf.pkl": clf}, sam)
    scan_waiver_grant(artifact=_pickle_of(version), actor=sam, reason=REASON, days=30)

    with pytest.raises(PortalError, match="nothing to waive"):
        scan_waiver_grant(
            artifact=version.artifacts.get(path="model.safetensors"),
            actor=sam,
            reason=REASON,
            days=30,
        )
    with pytest.raises(Conflict, match="already have a waiver"):
        scan_waiver_grant(artifact=_pickle_of(version), actor=sam, reason=REASON, days=60)
    assert ScanWaiver.objects.count() == 1


def test_revoking_blocks_the_versions_again(sam, bob, clf):
    version = _import("a", "fraud/clf", {"clf.pkl": clf}, sam)
    waiver = scan_waiver_grant(artifact=_pickle_of(version), actor=sam, reason=REASON, days=30)

    with pytest.raises(Forbidden):
        scan_waiver_revoke(waiver=waiver, actor=bob)
    scan_waiver_revoke(waiver=waiver, actor=sam, reason="The team found a custom reducer.")
    with pytest.raises(Conflict):
        scan_waiver_revoke(waiver=waiver, actor=sam)

    version.refresh_from_db()
    assert version.status == ModelVersion.Status.BLOCKED
    assert "unsafe pickle" in version.block_reasons[0]
    event = AuditEvent.objects.get(verb="scan.waiver_revoke")
    assert event.payload["versions"] == [
        {"version": version.pk, "before": "available", "after": "blocked"}
    ]
    # A new decision is possible after the old one ended.
    scan_waiver_grant(artifact=_pickle_of(version), actor=sam, reason=REASON, days=5)
    assert ScanWaiver.objects.live().count() == 1


def test_an_expired_waiver_stops_downloads_at_once_and_beat_blocks_the_version(client, sam, clf):
    version = _import("a", "fraud/clf", {"clf.pkl": clf}, sam)
    scan_waiver_grant(artifact=_pickle_of(version), actor=sam, reason=REASON, days=2)
    url = f"/hf/fraud/clf/resolve/{version.revision}/clf.pkl"
    headers = bearer(token_for(sam))

    served = client.get(url, headers=headers)
    assert served.status_code == 200
    assert b"".join(served.streaming_content) == clf

    with time_machine.travel(timezone.now() + timedelta(days=2, minutes=1), tick=False):
        refused = client.get(url, headers=headers)
        assert refused.status_code == 403
        assert "no waiver in force" in refused.json()["error"]
        assert lapse_scan_waivers() == {"lapsed": 1}
        assert lapse_scan_waivers() == {"lapsed": 0}

    version.refresh_from_db()
    assert version.status == ModelVersion.Status.BLOCKED
    lapse = AuditEvent.objects.get(verb="scan.waiver_lapse")
    assert lapse.actor_name == "system"
    assert lapse.payload["versions"][0]["after"] == "blocked"


def test_the_version_page_shows_the_waiver_and_offers_stewards_the_form(client, sam, bob, clf):
    version = _import("a", "fraud/clf", {"clf.pkl": clf}, sam)
    artifact = _pickle_of(version)
    page = f"/catalogue/fraud/clf/?version={version.label}"
    waive = f"/catalogue/fraud/clf/versions/{version.label}/files/{artifact.pk}/waive/"

    client.force_login(sam)
    assert "Waive for these bytes" in client.get(page).content.decode()
    short = client.post(waive, {"reason": "ok", "days": 30}, follow=True)
    assert "Say why" in short.content.decode()
    assert not ScanWaiver.objects.exists()

    done = client.post(waive, {"reason": REASON, "days": 30}, follow=True)
    html = done.content.decode()
    assert "is waived until" in html
    assert f'data-testid="waiver-{artifact.pk}"' in html
    assert "Fraud team&#x27;s scikit-learn" in html
    assert "Revoke waiver" in html
    catalog_model_set_status(model=version.model, status="available", actor=sam)

    client.force_login(bob)
    client.post(
        f"/catalogue/waivers/{ScanWaiver.objects.get().pk}/revoke/", {"next": page}, follow=True
    )
    assert ScanWaiver.objects.live().count() == 1
    as_bob = client.get(page).content.decode()
    assert "Waive for these bytes" not in as_bob
    assert "Revoke waiver" not in as_bob
