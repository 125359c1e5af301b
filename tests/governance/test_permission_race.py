"""The object permissions always equal what the approvals say, even when a revoke races the
approval that granted them."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from guardian.shortcuts import get_perms

from governance.models import ReuseRequest
from governance.services import reuse as gov_reuse
from governance.services.reuse import GRANTED_PERMISSIONS
from tests.factories import ModelVersionFactory

pytestmark = pytest.mark.django_db(transaction=True)

TRIALS = 25


def _submit(requester, version) -> ReuseRequest:
    return gov_reuse.reuse_request_submit(
        requester=requester,
        version=version,
        intended_use="Route tickets",
        use_type="research",
        business_unit="Support",
        data_sensitivity="public",
        justification="Cuts triage time",
        duration_days=30,
    )


def _in_thread(work) -> threading.Thread:
    def run() -> None:
        try:
            work()
        finally:
            connection.close()

    return threading.Thread(target=run)


def test_a_revoke_racing_the_last_approval_leaves_no_permission(alice, lena, sam):
    leaked = []
    for trial in range(TRIALS):
        version = ModelVersionFactory()
        request = _submit(alice, version)
        start = threading.Barrier(2)

        def approve(request=request, start=start) -> None:
            start.wait()
            gov_reuse.review_submit(
                request=request, reviewer=lena, role="legal", decision="approve"
            )

        def revoke(request=request, start=start) -> None:
            start.wait()
            while True:  # revoke the moment the approval has committed
                current = ReuseRequest.objects.get(pk=request.pk)
                if current.status == ReuseRequest.Status.APPROVED:
                    gov_reuse.reuse_request_revoke(request=current, actor=sam, reason="legal hold")
                    return

        threads = [_in_thread(approve), _in_thread(revoke)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        request.refresh_from_db()
        assert request.status == ReuseRequest.Status.REVOKED
        held = set(get_perms(alice, version)) & {p.split(".")[1] for p in GRANTED_PERMISSIONS}
        if held:
            leaked.append((trial, sorted(held)))
    assert leaked == [], f"{len(leaked)} of {TRIALS} trials kept permissions: {leaked}"


def test_the_permissions_follow_the_live_approvals_whatever_the_order(alice, lena):
    version = ModelVersionFactory()
    first = _submit(alice, version)
    gov_reuse.review_submit(request=first, reviewer=lena, role="legal", decision="approve")
    second = _submit(alice, version)
    gov_reuse.review_submit(request=second, reviewer=lena, role="legal", decision="approve")
    perms = {p.split(".")[1] for p in GRANTED_PERMISSIONS}
    assert perms <= set(get_perms(alice, version))
    # One of two live approvals ends: the other still covers the version.
    ReuseRequest.objects.filter(pk=first.pk).update(status=ReuseRequest.Status.EXPIRED)
    assert gov_reuse.sync_permissions(user_id=alice.pk, version_id=version.pk) is True
    assert perms <= set(get_perms(alice, version))
    ReuseRequest.objects.filter(pk=second.pk).update(status=ReuseRequest.Status.REVOKED)
    assert gov_reuse.sync_permissions(user_id=alice.pk, version_id=version.pk) is False
    assert not perms & set(get_perms(alice, version))
