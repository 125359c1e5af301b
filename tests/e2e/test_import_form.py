"""In the browser: the import form shows the fields of the chosen source only."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_the_import_form_shows_one_source_at_a_time(live_server, page, sign_in, sam):
    sign_in("sam")
    page.goto(f"{live_server.url}/catalogue/import/")

    expect(page.get_by_role("textbox", name="Hub repository")).to_be_visible()
    expect(page.get_by_role("textbox", name="Folder", exact=True)).to_be_hidden()
    expect(page.get_by_label("Archive", exact=True)).to_be_hidden()
    expect(page.get_by_label("Catalogue id")).to_be_visible()

    page.get_by_label("Folder on the server").check()
    expect(page.get_by_role("textbox", name="Folder", exact=True)).to_be_visible()
    expect(page.get_by_role("textbox", name="Hub repository")).to_be_hidden()
    expect(page.get_by_text("(does not exist yet)")).to_have_count(0)

    page.get_by_label("Uploaded archive (.zip or .tar.gz)").check()
    expect(page.get_by_label("Archive", exact=True)).to_be_visible()
    expect(page.get_by_role("textbox", name="Folder", exact=True)).to_be_hidden()
    expect(page.get_by_text("An imported model lands as a draft")).to_be_visible()
