"""Every mutating API endpoint: refused for each persona who may not, audited for the one who may.

``test_every_mutating_route_is_in_the_matrix`` reads the router, so an endpoint
added without its row here fails the suite.
"""

from __future__ import annotations

import pytest

from governance.models import Incident, IncidentStep
from governance.services import incidents as gov_incidents
from governance.services import reuse as gov_reuse
from jobs.models import FineTuneRun, Job, ProbeResult, Study
from jobs.services.finetunes import finetune_launch
from jobs.services.probes import probe_launch
from jobs.services.studies import study_choose, study_launch
from tests.api import ANONYMOUS, Mutation, assert_mutation, mutating_routes
from tests.builders.catalogue import base_model
from tests.builders.datasets import csv_bytes, spam_rows, text_dataset, ticket_dataset, upload
from tests.builders.governance import approve, approve_reuse
from tests.factories import JobFactory, catalogue_entry

pytestmark = pytest.mark.django_db


def _entry(people, tmp_path) -> dict:
    version = catalogue_entry("acme/encoder")
    return {"version": version, "model": version.model}


def _job(people, tmp_path) -> dict:
    return {"job": JobFactory(requested_by=people["alice"])}


def _probe_inputs(people, tmp_path) -> dict:
    return {**_entry(people, tmp_path), "data": text_dataset(people["alice"])}


def _probe(people, tmp_path) -> dict:
    objects = _probe_inputs(people, tmp_path)
    run = probe_launch(
        actor=people["alice"],
        dataset_version=objects["data"],
        versions=[objects["version"]],
        max_examples=40,
    )
    return {**objects, "job": run.job, "run": run}


def _finetune_inputs(people, tmp_path) -> dict:
    base = base_model(tmp_path / "base", "acme/tiny-bert", steward=people["sam"])
    approve_reuse(people["alice"], base)
    return {"base": base, "data": ticket_dataset(people["alice"])}


def _finetune(people, tmp_path) -> dict:
    objects = _finetune_inputs(people, tmp_path)
    run = finetune_launch(
        actor=people["alice"],
        base_version=objects["base"],
        dataset_version=objects["data"],
        strategy="head",
    )
    return {**objects, "job": run.job, "run": run}


def _scored_probe(people, tmp_path) -> dict:
    """Alice's probe of two approved bases, given as finished with both ranked."""
    bases = [
        base_model(tmp_path / f"base-{i}", f"acme/tiny-bert-{i}", steward=people["sam"], seed=i)
        for i in range(2)
    ]
    for base in bases:
        approve_reuse(people["alice"], base)
    run = probe_launch(
        actor=people["alice"],
        dataset_version=ticket_dataset(people["alice"]),
        versions=bases,
        max_examples=36,
    )
    Job.objects.filter(pk=run.job_id).update(status=Job.Status.SUCCEEDED)
    for result in run.results.all():
        ProbeResult.objects.filter(pk=result.pk).update(
            status=ProbeResult.Status.SUCCEEDED, rank=result.position + 1
        )
    run.job.refresh_from_db()
    return {"probe": run}


def _study(people, tmp_path) -> dict:
    """A study of that probe whose fine-tunes are given as trained, weights kept."""
    objects = _scored_probe(people, tmp_path)
    study = study_launch(actor=people["alice"], probe=objects["probe"], k=2)
    for run in study.runs.all():
        Job.objects.filter(pk=run.job_id).update(status=Job.Status.SUCCEEDED)
    study.runs.update(kept_weights={"name": "checkpoints/none.zip"})
    return {**objects, "study": study, "run": study.runs.order_by("pk").first()}


def _failed_scoring(people, tmp_path) -> dict:
    """That study with a winner chosen whose scoring job then failed."""
    objects = _study(people, tmp_path)
    study = study_choose(
        actor=people["alice"], study=objects["study"], run=objects["run"], reason="best"
    )
    Job.objects.filter(pk=study.final_job_id).update(status=Job.Status.FAILED)
    return {**objects, "study": study}


def _final_job(objects: dict):
    objects["study"].refresh_from_db()
    return objects["study"].final_job_id


def _request(people, tmp_path, *, changes: bool = False, approved: bool = False) -> dict:
    version = catalogue_entry("acme/encoder")
    if approved:
        return {"request": approve(people["alice"], version, reviewer=people["lena"])}
    request = gov_reuse.reuse_request_submit(
        requester=people["alice"],
        version=version,
        intended_use="Route tickets",
        use_type="research",
        business_unit="Support",
        data_sensitivity="public",
        justification="Cuts triage time",
        duration_days=30,
    )
    if changes:
        request = gov_reuse.review_submit(
            request=request,
            reviewer=people["lena"],
            role="legal",
            decision="changes",
            comment="Say which tickets.",
        )
    return {"request": request}


def _status(key: str):
    def state(objects: dict):
        obj = objects[key]
        obj.refresh_from_db()
        return obj.status

    return state


def _job_status(objects: dict):
    return Job.objects.values_list("status", flat=True).get(pk=objects["job"].pk)


MUTATIONS = [
    Mutation(
        route="model.partial_update",
        method="patch",
        path=lambda o: f"/api/models/{o['model'].pk}/",
        body=lambda o: {"title": "A new title"},
        allowed="sam",
        refused=(ANONYMOUS, "bob", "alice", "lena"),
        verb="model.update",
        setup=_entry,
        state=lambda o: type(o["model"]).objects.get(pk=o["model"].pk).title,
    ),
    Mutation(
        route="model.status",
        method="post",
        path=lambda o: f"/api/models/{o['model'].pk}/status/",
        body=lambda o: {"status": "deprecated", "reason": "Superseded"},
        allowed="sam",
        refused=(ANONYMOUS, "bob", "alice", "cora"),
        verb="model.status",
        setup=_entry,
        state=_status("model"),
    ),
    Mutation(
        route="version.license",
        method="post",
        path=lambda o: f"/api/versions/{o['version'].pk}/license/",
        body=lambda o: {"license": "mit"},
        allowed="sam",
        refused=(ANONYMOUS, "bob", "alice", "lena"),
        verb="version.license",
        setup=_entry,
        state=lambda o: type(o["version"]).objects.get(pk=o["version"].pk).license_id,
    ),
    Mutation(
        route="job.cancel",
        method="post",
        path=lambda o: f"/api/jobs/{o['job'].pk}/cancel/",
        allowed="alice",
        refused=(ANONYMOUS, "bob", "sam"),
        verb="job.cancel",
        setup=_job,
        state=_job_status,
    ),
    Mutation(
        route="job.worker_check",
        method="post",
        path=lambda o: "/api/jobs/worker-check/",
        body=lambda o: {"queue": "default"},
        allowed="admin",
        refused=(ANONYMOUS, "alice", "sam", "bob"),
        verb="job.create",
        setup=lambda people, tmp_path: {},
        state=lambda o: Job.objects.count(),
    ),
    Mutation(
        route="import.create",
        method="post",
        path=lambda o: "/api/imports/",
        body=lambda o: {"source": "hub", "hub_repo_id": "acme/router", "revision": "main"},
        allowed="sam",
        refused=(ANONYMOUS, "alice", "bob", "lena"),
        verb="job.create",
        setup=lambda people, tmp_path: {},
        state=lambda o: Job.objects.count(),
    ),
    Mutation(
        route="probe.create",
        method="post",
        path=lambda o: "/api/probes/",
        body=lambda o: {
            "dataset_version": o["data"].pk,
            "versions": [o["version"].pk],
            "max_examples": 40,
        },
        allowed="alice",
        refused=(ANONYMOUS, "bob", "sam"),  # the dataset is alice's: others do not see it
        verb="job.create",
        setup=_probe_inputs,
        state=lambda o: Job.objects.count(),
    ),
    Mutation(
        route="probe.cancel",
        method="post",
        path=lambda o: f"/api/probes/{o['run'].pk}/cancel/",
        allowed="alice",
        refused=(ANONYMOUS, "bob", "sam"),
        verb="job.cancel",
        setup=_probe,
        state=_job_status,
    ),
    Mutation(
        route="finetune.create",
        method="post",
        path=lambda o: "/api/finetunes/",
        body=lambda o: {
            "base_version": o["base"].pk,
            "dataset_version": o["data"].pk,
            "strategy": "head",
        },
        allowed="alice",
        refused=(ANONYMOUS, "bob", "sam", "lena"),
        verb="finetune.launch",
        setup=_finetune_inputs,
        state=lambda o: FineTuneRun.objects.count(),
    ),
    Mutation(
        route="finetune.cancel",
        method="post",
        path=lambda o: f"/api/finetunes/{o['run'].pk}/cancel/",
        allowed="alice",
        refused=(ANONYMOUS, "bob", "sam"),
        verb="job.cancel",
        setup=_finetune,
        state=_job_status,
    ),
    Mutation(
        route="dataset.create",
        method="post",
        path=lambda o: "/api/datasets/",
        body=lambda o: {
            "file": upload("sms.csv", csv_bytes(spam_rows())),
            "name": "sms",
            "sensitivity": "internal",
            "text_column": "message",
            "label_column": "label",
        },
        format="multipart",
        allowed="alice",
        refused=(ANONYMOUS,),
        verb="dataset.upload",
        setup=lambda people, tmp_path: {},
    ),
    Mutation(
        route="reuse-request.create",
        method="post",
        path=lambda o: "/api/reuse-requests/",
        body=lambda o: {
            "version": o["version"].pk,
            "intended_use": "Route tickets",
            "use_type": "research",
            "business_unit": "Support",
            "data_sensitivity": "public",
            "justification": "Triage",
        },
        allowed="alice",
        refused=(ANONYMOUS,),
        verb="reuse.submit",
        setup=_entry,
    ),
    Mutation(
        route="reuse-request.review",
        method="post",
        path=lambda o: f"/api/reuse-requests/{o['request'].pk}/review/",
        body=lambda o: {"role": "legal", "decision": "approve"},
        allowed="lena",
        refused=(ANONYMOUS, "bob", "alice", "sean", "sam"),
        verb="reuse.review.approve",
        setup=_request,
        state=_status("request"),
    ),
    Mutation(
        route="reuse-request.withdraw",
        method="post",
        path=lambda o: f"/api/reuse-requests/{o['request'].pk}/withdraw/",
        allowed="alice",
        refused=(ANONYMOUS, "bob", "lena", "sam"),
        verb="reuse.withdrawn",
        setup=_request,
        state=_status("request"),
    ),
    Mutation(
        route="reuse-request.resubmit",
        method="post",
        path=lambda o: f"/api/reuse-requests/{o['request'].pk}/resubmit/",
        body=lambda o: {"justification": "For the billing tickets only."},
        allowed="alice",
        refused=(ANONYMOUS, "bob", "lena", "sam"),
        verb="reuse.submitted",
        setup=lambda people, tmp_path: _request(people, tmp_path, changes=True),
        state=_status("request"),
    ),
    Mutation(
        route="reuse-request.revoke",
        method="post",
        path=lambda o: f"/api/reuse-requests/{o['request'].pk}/revoke/",
        body=lambda o: {"reason": "Legal hold on the base model."},
        allowed="sam",
        refused=(ANONYMOUS, "bob", "alice", "lena"),
        verb="reuse.revoked",
        setup=lambda people, tmp_path: _request(people, tmp_path, approved=True),
        state=_status("request"),
    ),
    Mutation(
        route="incident.create",
        method="post",
        path=lambda o: "/api/incidents/",
        body=lambda o: {
            "version": o["version"].pk,
            "category": "backdoor",
            "severity": 4,
            "title": "Trigger phrase",
            "description": "A phrase flips every prediction to 'safe'.",
            "recall": True,
        },
        allowed="sean",
        refused=(ANONYMOUS, "bob", "alice"),
        verb="incident.open",
        setup=_entry,
        state=lambda o: (Incident.objects.count(), _status("version")(o)),
    ),
    Mutation(
        route="incident.recall",
        method="post",
        path=lambda o: f"/api/incidents/{o['incident'].pk}/recall/",
        allowed="sam",
        # bob and alice neither made, own nor use the version: the incident is not theirs to see
        refused=(ANONYMOUS, "bob", "alice"),
        verb="incident.recall",
        setup=lambda people, tmp_path: _incident(people, tmp_path),
        state=lambda o: _status("version")(o),
    ),
    Mutation(
        route="incident.lift",
        method="post",
        path=lambda o: f"/api/incidents/{o['incident'].pk}/lift/",
        body=lambda o: {"reason": "The trigger came from a test harness."},
        allowed="lena",
        # alice holds an approval on the version: she sees the incident, may not lift it
        refused=(ANONYMOUS, "bob", "alice"),
        verb="incident.recall_lift",
        setup=lambda people, tmp_path: _incident(people, tmp_path, recall=True),
        state=lambda o: _status("version")(o),
    ),
    Mutation(
        route="incident.steps",
        method="post",
        path=lambda o: f"/api/incidents/{o['incident'].pk}/steps/",
        body=lambda o: {"step": "contain", "note": "Downloads paused."},
        allowed="cora",
        refused=(ANONYMOUS, "bob", "alice"),
        verb="incident.step.contain",
        setup=lambda people, tmp_path: _incident(people, tmp_path, recall=True),
        state=lambda o: IncidentStep.objects.count(),
    ),
]


MUTATIONS += [
    Mutation(
        route="study.create",
        method="post",
        path=lambda o: "/api/studies/",
        body=lambda o: {"probe": o["probe"].pk, "k": 2, "reason": "near tie"},
        allowed="alice",
        refused=(ANONYMOUS, "bob", "sam"),  # the probe is alice's: others do not see it
        verb="study.launch",
        setup=_scored_probe,
        state=lambda o: Study.objects.count(),
    ),
    Mutation(
        route="study.choose",
        method="post",
        path=lambda o: f"/api/studies/{o['study'].pk}/choose/",
        body=lambda o: {"run": o["run"].pk, "reason": "best on validation"},
        allowed="alice",
        refused=(ANONYMOUS, "bob", "sam"),
        verb="study.choose",
        setup=_study,
        state=_status("study"),
    ),
    Mutation(
        route="study.close",
        method="post",
        path=lambda o: f"/api/studies/{o['study'].pk}/close/",
        body=lambda o: {"reason": "no candidate beats the baseline"},
        allowed="alice",
        refused=(ANONYMOUS, "bob", "sam"),
        verb="study.close",
        setup=_study,
        state=_status("study"),
    ),
    Mutation(
        route="study.retry",
        method="post",
        path=lambda o: f"/api/studies/{o['study'].pk}/retry/",
        body=lambda o: {},
        allowed="alice",
        refused=(ANONYMOUS, "bob", "sam"),
        verb="study.retry_scoring",
        setup=_failed_scoring,
        state=_final_job,
    ),
]


def _incident(people, tmp_path, *, recall: bool = False) -> dict:
    version = catalogue_entry("acme/encoder")
    approve(people["alice"], version, reviewer=people["lena"])
    incident = gov_incidents.incident_open(
        version=version, actor=people["sean"], category="harmful", severity=3,
        title="Insults users", description="Completions insult users in German.",
        recall=recall,
    )  # fmt: skip
    return {"version": version, "incident": incident}


@pytest.mark.parametrize("mutation", MUTATIONS, ids=lambda m: m.route)
def test_refused_for_those_who_may_not_and_audited_for_who_may(mutation, people, tmp_path):
    assert_mutation(mutation, people, tmp_path)


def test_every_mutating_route_is_in_the_matrix():
    assert mutating_routes() == {m.route for m in MUTATIONS}
