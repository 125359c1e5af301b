"""A caller that forgets a check cannot do what the pages refuse: each service asks itself.

These call the services directly, as a task, a command or a careless view
would, with an acting user who may not act; nothing may change.
"""

from __future__ import annotations

import pytest

from governance.models import AuditEvent, Incident, IncidentStep, License
from governance.services import incidents as gov_incidents
from governance.services import rereview as gov_rereview
from governance.services import reuse as gov_reuse
from jobs.engine import job_cancel
from jobs.models import Job
from jobs.services.checks import worker_check_launch
from jobs.services.imports import import_launch
from portal.errors import Forbidden, NotFound
from tests.factories import CatalogModelFactory, JobFactory, ModelVersionFactory, catalogue_entry
from zoo.models import VersionHold
from zoo.services import card_revisions, holds
from zoo.services import catalogue as catalogue_services

pytestmark = pytest.mark.django_db


def _calls(people):
    version = catalogue_entry("acme/encoder")
    model = version.model
    job = JobFactory(requested_by=people["alice"])
    mit = License.objects.get(spdx_id="mit")
    incident = gov_incidents.incident_open(
        version=ModelVersionFactory(),
        actor=people["sam"],
        category="license",
        severity=1,
        title="Card says MIT",
        description="The repository's LICENSE file says GPL-3.0.",
    )
    return {
        "set status": lambda who: catalogue_services.catalog_model_set_status(
            model=model, status="deprecated", reason="old", actor=who
        ),
        "edit metadata": lambda who: catalogue_services.catalog_model_update(
            model=model, actor=who, title="Taken over"
        ),
        "set license": lambda who: catalogue_services.version_set_license(
            version=version, license=mit, actor=who
        ),
        "edit notes": lambda who: catalogue_services.version_update_metadata(
            version=version, actor=who, limitations="none"
        ),
        "edit card": lambda who: card_revisions.version_card_edit(
            version=version, actor=who, markdown="# Taken over", reason="Mine now"
        ),
        "import": lambda who: import_launch(
            actor=who, source="hub", repo_id="acme/x", hub_repo_id="acme/x"
        ),
        "cancel someone's job": lambda who: job_cancel(job=job, actor=who),
        "check workers": lambda who: worker_check_launch(actor=who, queue="default"),
        "hold a version": lambda who: holds.version_hold_place(
            version=version, source="manual", reason="no", blocks=True, actor=who
        ),
        "lift holds": lambda who: holds.version_holds_lift(source=incident.source, actor=who),
        "open an incident": lambda who: gov_incidents.incident_open(
            version=version,
            actor=who,
            category="harmful",
            severity=4,
            title="Mine",
            description="I do not like this model at all.",
            recall=True,
        ),
        "recall": lambda who: gov_incidents.incident_recall(incident=incident, actor=who),
        "record a playbook step": lambda who: gov_incidents.incident_step_record(
            incident=incident, actor=who, step="contain", note="contained"
        ),
        "re-attest": lambda who: gov_rereview.version_attest(
            version=version, actor=who, note="Looks fine to me, honestly."
        ),
    }, (version, model, job)


@pytest.mark.parametrize(
    "action",
    [
        "set status",
        "edit metadata",
        "set license",
        "edit notes",
        "edit card",
        "import",
        "cancel someone's job",
        "check workers",
        "hold a version",
        "lift holds",
        "open an incident",
        "recall",
        "record a playbook step",
        "re-attest",
    ],
)
def test_services_refuse_those_the_pages_refuse(people, action):
    calls, (version, model, job) = _calls(people)
    events = AuditEvent.objects.count()
    with pytest.raises(Forbidden):
        calls[action](people["bob"])
    model.refresh_from_db()
    version.refresh_from_db()
    job.refresh_from_db()
    assert (model.status, model.title, version.license.spdx_id) == (
        "available",
        "Encoder",
        "apache-2.0",
    )
    assert version.limitations == ""
    assert (version.card_markdown, version.card_revisions.count()) == ("", 0)
    assert job.status == Job.Status.QUEUED
    assert Job.objects.count() == 1
    assert not version.is_blocked
    assert Incident.objects.count() == 1
    assert not IncidentStep.objects.exists()
    assert not VersionHold.objects.exists()
    assert AuditEvent.objects.count() == events


def test_the_system_itself_may_act_where_a_command_or_import_needs_it(people):
    calls, (_version, model, job) = _calls(people)
    calls["set status"](None)
    calls["cancel someone's job"](None)
    model.refresh_from_db()
    job.refresh_from_db()
    assert model.status == "deprecated"
    assert job.status == Job.Status.CANCELLED
    assert AuditEvent.objects.filter(verb="model.status", actor=None).exists()


def test_a_reuse_request_for_a_version_you_cannot_see_is_not_found(people):
    draft = ModelVersionFactory(model=CatalogModelFactory(status="draft"))
    with pytest.raises(NotFound):
        gov_reuse.reuse_request_submit(
            requester=people["alice"],
            version=draft,
            intended_use="x",
            use_type="research",
            business_unit="x",
            data_sensitivity="public",
            justification="x",
            duration_days=30,
        )
