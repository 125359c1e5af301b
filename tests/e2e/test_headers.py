"""What Chromium is told about the portal's pages and the files it serves.

Every page carries the Content-Security-Policy and loads nothing the policy
refuses (Chromium reports each refusal on the console); a repository's .html
or .svg file is saved by the browser, never rendered on the portal's origin.
"""

from __future__ import annotations

import pytest
from django.conf import settings
from django.urls import reverse

from tests.builders.catalogue import import_model, small_model
from tests.builders.governance import approve, token_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PAGES = [
    ("home", {}),
    ("zoo:catalogue", {}),
    ("zoo:model", {"namespace": "acme", "name": "site"}),
    ("zoo:model_edit", {"namespace": "acme", "name": "site"}),
    ("zoo:card_edit", {"namespace": "acme", "name": "site", "label": "v1"}),
    ("zoo:card_history", {"namespace": "acme", "name": "site", "label": "v1"}),
    ("zoo:card_diff", {"namespace": "acme", "name": "site", "label": "v1"}),
    ("reuse_request_new", {"namespace": "acme", "name": "site"}),
    ("datasets:list", {}),
    ("datasets:upload", {}),
    ("jobs:list", {}),
    ("jobs:status", {}),
    ("probes:new", {}),
    ("finetunes:new", {}),
    ("governance:requests", {}),
    ("governance:reviews", {}),
    ("governance:audit", {}),
    ("tokens:list", {}),
    ("api-docs", {}),
    ("api-root", {}),
]


def _violations(page) -> list[str]:
    messages: list[str] = []
    page.on(
        "console",
        lambda msg: messages.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    return messages


def test_every_page_has_the_policy_and_breaks_none_of_it(live_server, page, sign_in, sam):
    import_model(small_model("site"), "acme/site", actor=sam)
    sam.is_staff = True
    sam.save(update_fields=["is_staff"])
    refused = _violations(page)
    sign_in("sam")

    for name, kwargs in PAGES:
        path = reverse(name, kwargs=kwargs)
        response = page.goto(f"{live_server.url}{path}")
        assert response.status == 200, path
        page.wait_for_load_state("networkidle")
        policy = response.headers["content-security-policy"]
        if path.startswith("/api/"):
            assert "script-src 'self';" in policy
        else:
            assert policy == settings.CONTENT_SECURITY_POLICY
        assert response.headers["x-content-type-options"] == "nosniff"
        assert not refused, (path, refused)

    # The API docs really drew themselves from the policy-approved script.
    page.goto(f"{live_server.url}/api/docs/")
    page.wait_for_selector(".swagger-ui .info", timeout=15000)
    assert not refused, refused


@pytest.mark.parametrize("name", ["index.html", "logo.svg"])
def test_uploaded_markup_is_downloaded_not_rendered(live_server, browser, sam, lena, bob, name):
    markup = b"<html><body><script>window.pwned = 1</script>owned</body></html>"
    if name.endswith(".svg"):
        markup = b'<svg xmlns="http://www.w3.org/2000/svg"><script>window.pwned=1</script></svg>'
    version = import_model(small_model("pages", extra={name: markup}), "acme/pages", actor=sam)
    approve(bob, version, reviewer=lena)
    context = browser.new_context(
        accept_downloads=True,
        extra_http_headers={"Authorization": f"Bearer {token_for(bob)}"},
    )
    page = context.new_page()
    try:
        url = f"{live_server.url}/hf/acme/pages/resolve/{version.revision}/{name}"
        page.goto(f"{live_server.url}/hf/api/whoami-v2")  # any page of the origin
        with page.expect_download() as caught:
            page.evaluate("url => { window.location.href = url }", url)
        download = caught.value
        assert download.suggested_filename == name
        with open(download.path(), "rb") as fh:
            assert fh.read() == markup
        assert page.evaluate("window.pwned") is None
    finally:
        context.close()
