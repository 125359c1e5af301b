from __future__ import annotations

import pytest

from governance.models import AuditEvent, RiskEntry
from governance.services import policy as gov_policy
from governance.services import risks as gov_risks
from portal.errors import Forbidden
from tests.factories import ModelVersionFactory

pytestmark = pytest.mark.django_db


def _risk(actor, version, severity, status="open"):
    return gov_risks.risk_entry_save(
        actor=actor,
        version=version,
        category="bias",
        title="Under-represents dialects",
        severity=severity,
        likelihood=2,
        status=status,
    )


def test_the_highest_open_risk_feeds_the_policy(people):
    version = ModelVersionFactory()
    base = gov_policy.policy_evaluate(version=version, use_type="research", sensitivity="public")
    assert base.roles == ["legal"]
    _risk(people["sam"], version, severity=2)
    assert gov_policy.highest_open_risk(version) == 2
    risk = _risk(people["sean"], version, severity=4)
    outcome = gov_policy.policy_evaluate(version=version, use_type="research", sensitivity="public")
    assert outcome.roles == ["legal", "security", "compliance"]
    assert "high or critical open risk" in outcome.explanation
    gov_risks.risk_entry_save(actor=people["sam"], version=version, risk=risk, status="mitigated")
    assert gov_policy.highest_open_risk(version) == 2
    assert list(AuditEvent.objects.values_list("verb", flat=True).order_by("id")) == [
        "risk.create",
        "risk.create",
        "risk.update",
    ]


def test_only_stewards_and_reviewers_keep_the_register(people):
    with pytest.raises(Forbidden):
        _risk(people["bob"], ModelVersionFactory(), severity=3)
    assert not RiskEntry.objects.exists()


def test_model_page_shows_risks_and_the_form_to_those_who_may_edit(client, people):
    version = ModelVersionFactory()
    _risk(people["sam"], version, severity=3)
    url = version.model.get_absolute_url()
    client.force_login(people["bob"])
    page = client.get(url).content.decode()
    assert "Under-represents dialects" in page
    assert "Record a risk" not in page
    assert (
        client.post(
            f"/catalogue/{version.model.repo_id}/versions/{version.label}/risks/",
            {"category": "privacy", "title": "x", "severity": 1, "likelihood": 1, "status": "open"},
        ).status_code
        == 403
    )
    client.force_login(people["sean"])
    assert "Record a risk" in client.get(url).content.decode()
    client.post(
        f"/catalogue/{version.model.repo_id}/versions/{version.label}/risks/",
        {
            "category": "privacy",
            "title": "Memorised emails",
            "severity": 3,
            "likelihood": 2,
            "status": "open",
        },
    )
    assert RiskEntry.objects.filter(title="Memorised emails", owner=people["sean"]).exists()
