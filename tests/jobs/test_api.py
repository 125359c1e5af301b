from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from jobs.models import Job
from tests.factories import JobFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def api():
    return APIClient()


def test_anonymous_requests_are_refused(api):
    assert api.get("/api/jobs/").status_code == 401


def test_token_authentication_works(api, alice):
    response = api.post(
        "/api/auth/token/", {"username": "alice", "password": "correct-horse-battery"}
    )
    assert response.status_code == 201
    api.credentials(HTTP_AUTHORIZATION=f"Token {response.json()['token']}")
    assert api.get("/api/jobs/").status_code == 200


def test_users_list_only_their_own_jobs(api, alice, bob):
    mine = JobFactory(requested_by=alice)
    JobFactory(requested_by=bob)
    api.force_authenticate(alice)

    body = api.get("/api/jobs/").json()

    assert [row["id"] for row in body["results"]] == [mine.pk]


def test_someone_elses_job_is_not_found(api, alice, bob):
    theirs = JobFactory(requested_by=bob)
    api.force_authenticate(alice)

    assert api.get(f"/api/jobs/{theirs.pk}/").status_code == 404
    assert api.post(f"/api/jobs/{theirs.pk}/cancel/").status_code == 404
    theirs.refresh_from_db()
    assert theirs.status == Job.Status.QUEUED


def test_owner_cancels_and_a_second_cancel_conflicts(api, alice):
    job = JobFactory(requested_by=alice)
    api.force_authenticate(alice)

    first = api.post(f"/api/jobs/{job.pk}/cancel/")
    second = api.post(f"/api/jobs/{job.pk}/cancel/")

    assert first.status_code == 200
    assert first.json()["status"] == "cancelled"
    assert second.status_code == 409
    assert "already finished" in second.json()["detail"]


def test_worker_check_is_for_staff_only(api, alice, admin_user, django_capture_on_commit_callbacks):
    api.force_authenticate(alice)
    assert api.post("/api/jobs/worker-check/", {"queue": "gpu"}).status_code == 403
    assert not Job.objects.exists()

    api.force_authenticate(admin_user)
    with django_capture_on_commit_callbacks() as callbacks:
        response = api.post("/api/jobs/worker-check/", {"queue": "gpu", "require_gpu": True})
    assert response.status_code == 201
    job = Job.objects.get()
    assert (job.queue, job.params, job.requested_by) == (
        "gpu",
        {"require_gpu": True, "hold_s": 0},
        admin_user,
    )
    assert len(callbacks) == 1  # the enqueue waits for the commit


def test_worker_check_rejects_an_unknown_queue(api, admin_user):
    api.force_authenticate(admin_user)
    response = api.post("/api/jobs/worker-check/", {"queue": "tpu"})
    assert response.status_code == 400
    assert response.json()["field"] == "queue"
    assert "queue" in response.json()["errors"]
    assert not Job.objects.exists()


def test_job_list_query_count_does_not_grow_with_rows(api, alice, django_assert_max_num_queries):
    JobFactory.create_batch(30, requested_by=alice)
    api.force_authenticate(alice)
    with django_assert_max_num_queries(3):
        response = api.get("/api/jobs/")
    assert response.json()["count"] == 30
