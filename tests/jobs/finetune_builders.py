"""Fine-tune fixtures built through the real services: a base model, approvals, datasets."""

from __future__ import annotations

import random
from pathlib import Path

from governance.models import ReuseRequest
from governance.services import reuse as gov_reuse
from tests.factories import UserFactory
from tests.jobs.probe_builders import import_model, text_dataset, tiny_bert_folder
from zoo.services import catalogue as catalogue_services
from zoo.services import datasets as dataset_services

REVIEWERS = {"legal": "lena", "security": "sean", "compliance": "cora"}


def base_model(folder: Path, repo_id: str, *, steward, license: str = "apache-2.0", seed: int = 0):
    """A tiny BERT published by a steward, with the bias notes and limitations a card would list."""
    tiny_bert_folder(folder, seed=seed)
    readme = folder / "README.md"
    readme.write_text(readme.read_text().replace("license: apache-2.0", f"license: {license}"))
    version = import_model(folder, repo_id, actor=steward)
    return catalogue_services.version_update_metadata(
        version=version,
        actor=steward,
        bias_notes="Pretrained on English web text; inherits its social biases.",
        limitations="A tiny random model: for tests only.",
    )


def approve_reuse(requester, version, *, sensitivity: str = "internal", use_type="research"):
    """A reuse request approved by every role the policy asks for, by real reviewers.

    The permissions are granted after commit, as in production; inside a test's
    transaction the callbacks are run here.
    """
    from django.test import TestCase

    with TestCase.captureOnCommitCallbacks(execute=True):
        return _approve(requester, version, sensitivity=sensitivity, use_type=use_type)


def _approve(requester, version, *, sensitivity, use_type):
    request = gov_reuse.reuse_request_submit(
        requester=requester,
        version=version,
        intended_use="Fine-tune a classifier for support tickets.",
        use_type=use_type,
        business_unit="Support",
        data_sensitivity=sensitivity,
        justification="The probe ranked this model first.",
        duration_days=30,
    )
    for role in request.required_roles:
        reviewer = UserFactory(username=REVIEWERS[role], roles=[role])
        request = gov_reuse.review_submit(
            request=request, reviewer=reviewer, role=role, decision="approve"
        )
    assert request.status == ReuseRequest.Status.APPROVED
    return request


def ticket_rows(n_per_class: int = 12, *, seed: int = 0) -> list[dict[str, str]]:
    """Three classes of short support tickets, each with a region slice and a date."""
    rng = random.Random(seed)
    words = {
        "billing": ["invoice", "refund", "charged", "payment", "card", "price"],
        "outage": ["down", "error", "offline", "crash", "timeout", "unreachable"],
        "login": ["password", "login", "account", "locked", "reset", "sign"],
    }
    rows = []
    for label, vocabulary in words.items():
        for i in range(n_per_class):
            text = " ".join(rng.choice(vocabulary) for _ in range(6)) + f" ticket {label[:2]}{i}"
            rows.append(
                {
                    "message": text,
                    "label": label,
                    "region": rng.choice(["north", "south"]),
                    "created": f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}",
                }
            )
    rng.shuffle(rows)
    return rows


def ticket_dataset(owner, *, name="tickets", n_per_class=12, sensitivity="internal", seed=0):
    from tests.jobs.probe_builders import csv_bytes, upload

    staged = dataset_services.dataset_stage_upload(
        actor=owner, upload=upload(f"{name}.csv", csv_bytes(ticket_rows(n_per_class, seed=seed)))
    )
    version, _ = dataset_services.dataset_create(
        actor=owner,
        staged=staged,
        name=name,
        sensitivity=sensitivity,
        text_column="message",
        label_column="label",
        slice_column="region",
        time_column="created",
    )
    return version


__all__ = ["approve_reuse", "base_model", "text_dataset", "ticket_dataset"]
