from __future__ import annotations

import pytest
from django.urls import reverse

from governance.models import AuditEvent
from jobs.models import Job
from tests.factories import PASSWORD, JobFactory

pytestmark = pytest.mark.django_db


def test_pages_require_sign_in(client):
    for url in ["/", "/jobs/"]:
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")


def test_sign_in_shows_the_dashboard_with_navigation_and_roles(client, alice):
    response = client.post("/accounts/login/", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302

    page = client.get("/")
    html = page.content.decode()
    assert page.status_code == 200
    assert "Welcome, alice" in html
    assert 'href="/jobs/"' in html
    assert "ml-engineers" in html
    assert 'href="/admin/"' not in html  # Admin is in the bar for staff only


def test_wrong_password_is_told_plainly(client, alice):
    response = client.post("/accounts/login/", {"username": "alice", "password": "nope"})
    assert response.status_code == 400
    assert "Wrong username or password." in response.content.decode()


def test_sign_out_is_a_post(client, alice):
    client.force_login(alice)
    response = client.post("/accounts/logout/")
    assert response.status_code == 302
    assert client.get("/").status_code == 302


def test_staff_see_admin_in_the_bar(client, admin_user):
    client.force_login(admin_user)
    assert 'href="/admin/"' in client.get("/").content.decode()
    assert client.get("/admin/").status_code == 200


def test_healthz_reports_database_broker_and_storage_for_this_node(client):
    import socket

    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "node": socket.gethostname(),
        "database": "ok",
        "broker": "ok",
        "storage": "local",
    }


def test_healthz_answers_probes_that_use_an_internal_host_name(client):
    assert client.get("/healthz", HTTP_HOST="10.1.2.3:8000").status_code == 200
    assert client.get("/accounts/login/", HTTP_HOST="10.1.2.3:8000").status_code == 400


def test_healthz_answers_503_when_the_broker_is_unreachable(client):
    from portal.celery import app

    original = app.conf.broker_write_url
    app.conf.broker_write_url = "redis://:hunter2@127.0.0.1:1/0"  # nothing listens on port 1
    try:
        response = client.get("/healthz")
    finally:
        app.conf.broker_write_url = original
    body = response.json()
    assert response.status_code == 503
    assert body["status"] == "unavailable"
    assert body["database"] == "ok"
    assert body["broker"] != "ok"
    assert "hunter2" not in response.content.decode()


def test_job_pages_show_own_jobs_and_hide_others(client, alice, bob):
    mine = JobFactory(requested_by=alice)
    theirs = JobFactory(requested_by=bob)
    client.force_login(alice)

    listing = client.get("/jobs/").content.decode()
    assert reverse("jobs:detail", args=[mine.pk]) in listing
    assert reverse("jobs:detail", args=[theirs.pk]) not in listing
    assert client.get(f"/jobs/{theirs.pk}/").status_code == 404
    assert client.post(f"/jobs/{theirs.pk}/cancel/").status_code == 404
    theirs.refresh_from_db()
    assert theirs.status == Job.Status.QUEUED


def test_job_detail_polls_while_active_and_cancel_works(client, alice):
    job = JobFactory(requested_by=alice)
    client.force_login(alice)

    fragment = client.get(f"/jobs/{job.pk}/", HTTP_HX_REQUEST="true").content.decode()
    assert 'hx-trigger="every 2s"' in fragment
    assert "<html" not in fragment

    client.post(f"/jobs/{job.pk}/cancel/")
    job.refresh_from_db()
    assert job.status == Job.Status.CANCELLED
    assert 'hx-trigger="every 2s"' not in client.get(f"/jobs/{job.pk}/").content.decode()


def test_worker_check_form_is_for_staff(client, alice, admin_user):
    client.force_login(alice)
    response = client.post("/jobs/worker-check/", {"queue": "default"})
    assert response.status_code == 403
    assert "Only staff may check the workers" in response.content.decode()
    assert not Job.objects.exists()
    assert AuditEvent.objects.filter(verb="access.refused", actor=alice).exists()

    client.force_login(admin_user)
    response = client.post("/jobs/worker-check/", {"queue": "default"})
    job = Job.objects.get()
    assert response["Location"] == f"/jobs/{job.pk}/"


def test_job_list_query_budget(client, alice, django_assert_max_num_queries):
    JobFactory.create_batch(25, requested_by=alice)
    client.force_login(alice)
    with django_assert_max_num_queries(8):
        assert client.get("/jobs/").status_code == 200


def test_api_schema_and_docs_are_served(client, alice):
    client.force_login(alice)
    schema = client.get("/api/schema/")
    assert schema.status_code == 200
    assert b"/api/jobs/" in schema.content
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    assert b"swagger-ui" in docs.content
    assert b"cdn.jsdelivr" not in docs.content  # served from our own static files
    assert client.get("/api/").status_code == 200
