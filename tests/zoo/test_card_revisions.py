"""Card revisions: stewards' edits, their history and diffs, and the sections publishing needs."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, transaction

from governance.models import AuditEvent
from portal.errors import Conflict, Forbidden, PortalError
from tests.builders.files import make_model
from tests.factories import CatalogModelFactory, ModelVersionFactory, UserFactory
from zoo import importers
from zoo.cards import CardError, parse_card
from zoo.models import CardRequirement, CardRevision, CatalogModel, ModelVersion, SearchEntry
from zoo.selectors.cards import (
    AS_IMPORTED,
    card_missing_sections,
    card_requirements,
    card_text,
    sections_missing,
    side_by_side,
)
from zoo.services import catalogue as catalogue_services
from zoo.services.card_revisions import card_requirement_save, version_card_edit

pytestmark = pytest.mark.django_db

REQUIRED = ["Intended use", "Limitations", "Training data", "Evaluation"]

# A card as many arrive from the Hub: a header, a title, a paragraph, no sections.
BARE_CARD = """---
license: apache-2.0
pipeline_tag: text-classification
tags: [support]
---
# Ticket router

Routes support tickets to the right team.
"""

SECTIONS = """

## Intended use

Suggesting a team for internal tickets.

## Limitations

English only.

## Training data

A year of routed tickets.

## Evaluation

91% routed as the support team did, on a held-out month.
"""


def _draft(tmp_path, sam, card: str = BARE_CARD, repo_id: str = "acme/router") -> ModelVersion:
    """A model imported from a folder as a steward would: a draft, revision-less."""
    folder = make_model(tmp_path / "imports" / repo_id.replace("/", "-"), card=card)
    version, _ = importers.import_from_folder(folder=folder, repo_id=repo_id, actor=sam)
    return ModelVersion.objects.select_related("model").get(pk=version.pk)


def _edit(version, actor, text: str, reason: str = "Added the sections", **kwargs):
    return version_card_edit(version=version, actor=actor, markdown=text, reason=reason, **kwargs)


def _url(version, page: str) -> str:
    return f"/catalogue/{version.model.repo_id}/versions/{version.label}/card/{page}/"


# --- the edit service ------------------------------------------------------------------------


def test_an_edit_saves_the_card_as_imported_then_the_new_text_with_its_audit_event(sam, tmp_path):
    version = _draft(tmp_path, sam)
    imported = card_text(version)
    assert parse_card(imported).metadata == version.card_metadata  # the editor's text reads back

    revision = _edit(version, sam, imported + SECTIONS, reason="Added what publishing needs")

    first, second = CardRevision.objects.filter(version=version).order_by("number")
    assert (first.number, first.author, first.reason) == (1, None, AS_IMPORTED)
    assert first.markdown == imported
    assert first.created_at == version.created_at
    assert (second.pk, second.number, second.author) == (revision.pk, 2, sam)
    assert second.markdown == imported + SECTIONS
    version.refresh_from_db()
    assert version.card_markdown.endswith(
        "91% routed as the support team did, on a held-out month."
    )
    assert version.card_metadata["tags"] == ["support"]
    assert "held-out month" in SearchEntry.objects.get(model=version.model).card
    event = AuditEvent.objects.get(verb="version.card_edit")
    assert (event.actor, event.target_type, event.target_id) == (
        sam,
        "zoo.modelversion",
        str(version.pk),
    )
    assert event.payload == {
        "revision": 2,
        "reason": "Added what publishing needs",
        "metadata_changed": False,
    }

    third = _edit(version, sam, second.markdown.replace("English only.", "English and German."))
    assert third.number == 3
    assert CardRevision.objects.filter(version=version).count() == 3  # revision 1 written once


def test_the_header_changes_the_card_metadata_but_not_the_license(sam, tmp_path):
    version = _draft(tmp_path, sam)
    text = card_text(version).replace("- support", "- support\n- routing")

    _edit(version, sam, text.replace("license: apache-2.0", "license: mit"), reason="Tags")

    version.refresh_from_db()
    assert version.card_metadata["tags"] == ["support", "routing"]
    assert version.card_metadata["license"] == "mit"
    assert version.license.spdx_id == "apache-2.0"  # set on the model page, audited there
    assert AuditEvent.objects.get(verb="version.card_edit").payload["metadata_changed"] is True


def test_a_non_steward_is_refused_and_nothing_changes(bob, sam, tmp_path):
    version = _draft(tmp_path, sam)
    before = AuditEvent.objects.count()

    with pytest.raises(Forbidden, match="stewards"):
        _edit(version, bob, card_text(version) + SECTIONS)

    version.refresh_from_db()
    assert "Intended use" not in version.card_markdown
    assert not CardRevision.objects.exists()
    assert AuditEvent.objects.count() == before


def test_a_reason_is_required_and_an_unchanged_card_is_not_saved(sam, tmp_path):
    version = _draft(tmp_path, sam)
    text = card_text(version)

    with pytest.raises(PortalError, match="reason is required") as no_reason:
        _edit(version, sam, text + SECTIONS, reason="  ")
    assert no_reason.value.field == "reason"
    # A browser sends CRLF line ends; the same card in them is the same card.
    with pytest.raises(PortalError, match="unchanged") as same:
        _edit(version, sam, text.replace("\n", "\r\n"))
    assert same.value.field == "markdown"
    assert not CardRevision.objects.exists()
    assert not AuditEvent.objects.filter(verb="version.card_edit").exists()


@pytest.mark.parametrize(
    "header",
    [
        "---\nlicense: [apache\n---\n# Router\n",
        "---\n- a list\n- not a mapping\n---\n# Router\n",
        "---\nbase: &a [1]\nagain: *a\n---\n# Router\n",
        "---\nlicense: mit\n# Router, the header never closed\n",
        "---\nnotes: " + "x" * 70_000 + "\n---\n# Router\n",
    ],
    ids=["malformed", "not-a-mapping", "alias", "unterminated", "oversized"],
)
def test_a_header_the_importer_would_refuse_is_refused_with_its_message(sam, tmp_path, header):
    version = _draft(tmp_path, sam)
    with pytest.raises(CardError) as parsed:
        parse_card(header)

    with pytest.raises(PortalError) as refused:
        _edit(version, sam, header)

    assert refused.value.message == f"Nothing was saved: {parsed.value}"
    assert refused.value.field == "markdown"
    version.refresh_from_db()
    assert version.card_markdown.startswith("# Ticket router")
    assert not CardRevision.objects.exists()
    assert not AuditEvent.objects.filter(verb="version.card_edit").exists()


def test_an_edit_started_from_an_older_revision_is_refused(sam, tmp_path):
    version = _draft(tmp_path, sam)
    text = card_text(version)
    _edit(version, sam, text + SECTIONS, base=1)

    with pytest.raises(Conflict, match="Revision 2 of this card was saved"):
        _edit(version, sam, text + "\n\nAnother change.", base=1)

    assert list(version.card_revisions.values_list("number", flat=True)) == [1, 2]


@pytest.mark.django_db(transaction=True)
def test_two_saves_at_once_become_revisions_n_and_n_plus_1(tmp_path):
    sam = UserFactory(username="sam", roles=["stewards"])
    version = _draft(tmp_path, sam)
    text = card_text(version)
    errors: list[Exception] = []

    def save(words: str) -> None:
        try:
            _edit(ModelVersion.objects.get(pk=version.pk), sam, f"{text}\n\n{words}", reason=words)
        except Exception as exc:  # collected, and asserted below
            errors.append(exc)
        finally:
            connection.close()

    savers = [threading.Thread(target=save, args=(f"Edit {n}.",)) for n in (1, 2)]
    with transaction.atomic():
        # Hold the version's lock, as a third save would, while both start.
        ModelVersion.objects.select_for_update().get(pk=version.pk)
        for saver in savers:
            saver.start()
        time.sleep(0.5)
        assert not CardRevision.objects.exists()  # both wait for the lock
    for saver in savers:
        saver.join(20)

    assert errors == []
    revisions = list(CardRevision.objects.filter(version=version).order_by("number"))
    assert [r.number for r in revisions] == [1, 2, 3]
    assert {r.reason for r in revisions[1:]} == {"Edit 1.", "Edit 2."}
    events = AuditEvent.objects.filter(verb="version.card_edit")
    assert sorted(e.payload["revision"] for e in events) == [2, 3]
    version.refresh_from_db()
    assert version.card_markdown.endswith(revisions[-1].reason)


# --- the pages -------------------------------------------------------------------------------


def test_a_steward_edits_the_card_on_its_page(client, sam, tmp_path):
    version = _draft(tmp_path, sam)
    client.force_login(sam)
    page = client.get(_url(version, "edit")).content.decode()
    assert "Ticket router" in page
    assert 'name="base" value="1"' in page

    missing_reason = client.post(
        _url(version, "edit"), {"markdown": card_text(version) + SECTIONS, "reason": "", "base": 1}
    )
    assert "This field is required" in missing_reason.content.decode()
    saved = client.post(
        _url(version, "edit"),
        {"markdown": card_text(version) + SECTIONS, "reason": "Sections", "base": 1},
        follow=True,
    )

    assert "Saved revision 2 of the card of v1." in saved.content.decode()
    assert "Intended use" in ModelVersion.objects.get(pk=version.pk).card_markdown


def test_an_invalid_header_is_shown_on_the_form(client, sam, tmp_path):
    version = _draft(tmp_path, sam)
    client.force_login(sam)

    html = client.post(
        _url(version, "edit"),
        {"markdown": "---\nlicense: [x\n---\n", "reason": "Broken", "base": 1},
    ).content.decode()

    assert "Nothing was saved: The card&#x27;s YAML header is malformed" in html
    assert not CardRevision.objects.exists()


def test_a_stale_edit_on_the_page_says_so_and_keeps_the_text(client, sam, tmp_path):
    version = _draft(tmp_path, sam)
    _edit(version, sam, card_text(version) + SECTIONS)
    client.force_login(sam)

    html = client.post(
        _url(version, "edit"), {"markdown": "# Mine", "reason": "Mine", "base": 1}
    ).content.decode()

    assert "Revision 2 of this card was saved while you were editing revision 1" in html
    assert "# Mine</textarea>" in html
    assert 'name="base" value="2"' in html  # saving again replaces revision 2, knowingly


def test_others_may_read_the_history_but_not_edit(client, bob, sam, tmp_path):
    version = _draft(tmp_path, sam, card=BARE_CARD + SECTIONS)
    catalogue_services.catalog_model_set_status(model=version.model, status="available", actor=sam)
    client.force_login(bob)

    assert client.get(_url(version, "edit")).status_code == 403
    refused = client.post(
        _url(version, "edit"), {"markdown": "# Taken over", "reason": "Mine", "base": 1}
    )

    assert refused.status_code == 403
    assert "Ticket router" in ModelVersion.objects.get(pk=version.pk).card_markdown
    assert AuditEvent.objects.filter(verb="access.refused", actor=bob).count() == 2
    history = client.get(_url(version, "history")).content.decode()
    assert "The card has not been edited" in history
    assert "Edit card" not in history
    model_page = client.get(version.model.get_absolute_url()).content.decode()
    assert 'data-testid="card-links"' in model_page
    assert "/card/history/" in model_page
    assert "/card/edit/" not in model_page


def test_the_history_lists_who_when_and_why(client, bob, sam, tmp_path):
    version = _draft(tmp_path, sam, card=BARE_CARD + SECTIONS)
    catalogue_services.catalog_model_set_status(model=version.model, status="available", actor=sam)
    text = card_text(version)
    _edit(version, sam, text + "\n\nMore.", reason="More <b>text</b>")
    _edit(version, sam, text + "\n\nMore still.", reason="Still more")
    client.force_login(bob)

    html = client.get(_url(version, "history")).content.decode()

    table = html.split('data-testid="card-history"', 1)[1]
    assert (
        table.index("Still more")
        < table.index("More &lt;b&gt;text&lt;/b&gt;")
        < table.index(AS_IMPORTED)
    )
    assert table.count(">sam<") == 2
    assert "system" in table
    assert 'name="a" value="2" aria-label="Compare from revision 2" checked' in table
    assert 'name="b" value="3" aria-label="Compare to revision 3" checked' in table


def test_drafts_of_others_and_unknown_versions_answer_404(client, bob, sam, tmp_path):
    version = _draft(tmp_path, sam)
    _edit(version, sam, card_text(version) + SECTIONS)
    client.force_login(bob)

    for page in ("edit", "history", "diff"):
        assert client.get(_url(version, page)).status_code == 404, page
    client.force_login(sam)
    assert (
        client.get(f"/catalogue/{version.model.repo_id}/versions/v9/card/history/").status_code
        == 404
    )


def test_the_diff_shows_both_sides_and_escapes_what_the_card_holds(client, bob, sam, tmp_path):
    version = _draft(tmp_path, sam, card=BARE_CARD + SECTIONS)
    catalogue_services.catalog_model_set_status(model=version.model, status="available", actor=sam)
    text = card_text(version)
    _edit(
        version,
        sam,
        text.replace("English only.", 'English only. <script>alert("x")</script>'),
        reason="<script>alert('reason')</script>",
    )
    client.force_login(bob)

    response = client.get(_url(version, "diff"), {"a": 1, "b": 2})

    html = response.content.decode()
    assert response.status_code == 200
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert "&lt;script&gt;alert(&#x27;reason&#x27;)&lt;/script&gt;" in html
    diff = html.split('data-testid="card-diff"', 1)[1].split("</table>", 1)[0]
    assert 'class="diff-changed"' in diff
    assert "<ins> &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;</ins>" in diff
    assert "English only." in diff
    assert client.get(_url(version, "diff")).content.decode().count("<ins>") == 1  # 1 against 2


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"a": "x", "b": "2"}, "Enter a whole number."),
        ({"a": "1", "b": "9"}, "There is no revision 9; this card has 1, 2."),
        ({"a": "0", "b": "2"}, "Ensure this value is greater than or equal to 1."),
        ({"a": "1"}, "This field is required."),
        ({"a": "1" * 400, "b": "2"}, "There is no revision"),
    ],
)
def test_bad_revision_numbers_get_a_message_not_an_error(client, sam, tmp_path, params, message):
    version = _draft(tmp_path, sam)
    _edit(version, sam, card_text(version) + SECTIONS)
    client.force_login(sam)

    response = client.get(_url(version, "diff"), params)

    assert response.status_code == 400
    error = response.content.decode().split('data-testid="diff-error"', 1)[1]
    assert message in error.split("</div>", 1)[0]


def test_the_diff_of_an_unedited_card_says_so(client, sam, tmp_path):
    version = _draft(tmp_path, sam)
    client.force_login(sam)

    response = client.get(_url(version, "diff"))

    assert response.status_code == 200
    assert "The card has not been edited" in response.content.decode()


def test_the_side_by_side_rows_pair_changed_lines_and_keep_context():
    old = "\n".join(f"line {n}" for n in range(1, 21))
    new = old.replace("line 3", "line three").replace("line 18\n", "")

    hunks = side_by_side(old, new, context=1)

    assert len(hunks) == 2
    first = hunks[0]
    assert [r.kind for r in first] == ["same", "changed", "same"]
    changed = first[1]
    assert (changed.left.number, changed.right.number) == (3, 3)
    assert changed.left.parts == (("line ", False), ("3", True))
    assert changed.right.parts == (("line ", False), ("three", True))
    removed = next(r for r in hunks[1] if r.kind == "removed")
    assert (removed.left.number, removed.right.number) == (18, None)
    assert side_by_side(old, old) == []


# --- required sections and publishing --------------------------------------------------------


# A card body, and which of the required sections it has.
HEADINGS = {
    "none": ("# Router\n\nText.", []),
    "hub-auto-card": (
        "## Intended uses & limitations\n\nTickets.",
        ["Intended use", "Limitations"],
    ),
    "case-and-levels": (
        "### TRAINING DATA\n\nTickets.\n\n#### Evaluation results\n\n0.9",
        ["Training data", "Evaluation"],
    ),
    "aliases-and-html": (
        "## Uses\n\nTickets.\n\n<h2>Bias, Risks, and Limitations</h2>\n\nEnglish.",
        ["Intended use", "Limitations"],
    ),
    "near-misses": ("## Usage\n\nImport it.\n\n## Training procedure\n\nThree epochs.", []),
    "code-is-not-a-heading": (
        "```python\n# Evaluation\nprint(1)\n```\n\n## Limitations\n\nNone known.",
        ["Limitations"],
    ),
    "placeholders-are-empty": (
        "## Evaluation\n\n[More Information Needed]\n\n## Limitations\n\nNot stated.",
        [],
    ),
    "text-in-subsections": (
        "## Training Details\n\n### Training Data\n\nTickets.\n\n"
        "## Evaluation\n\n### Results\n\n0.9",
        ["Training data", "Evaluation"],
    ),
    "link-in-heading": ("## [Limitations](#limits) ##\n\nShort inputs.", ["Limitations"]),
}


@pytest.mark.parametrize(("body", "present"), HEADINGS.values(), ids=HEADINGS.keys())
def test_which_headings_count_as_a_required_section(body, present):
    missing = [s for s in REQUIRED if s not in present]
    assert sections_missing(body, card_requirements()) == missing


def test_the_fine_tune_card_has_every_section_publishing_needs():
    from tests.jobs.ml.test_card import _card

    assert sections_missing(parse_card(_card()).body, card_requirements()) == []
    without = parse_card(_card(intended_use="")).body  # "Not stated." is no intended use
    assert sections_missing(without, card_requirements()) == ["Intended use"]


def test_publishing_waits_for_the_sections_then_goes_ahead(sam, tmp_path):
    version = _draft(tmp_path, sam)
    model = version.model

    with pytest.raises(PortalError) as refused:
        catalogue_services.catalog_model_set_status(model=model, status="available", actor=sam)

    assert refused.value.message == (
        "The card of v1 lacks Intended use, Limitations, Training data, Evaluation: "
        "add those sections before publishing."
    )
    assert CatalogModel.objects.get(pk=model.pk).status == "draft"
    assert not AuditEvent.objects.filter(verb="model.status").exists()

    _edit(version, sam, card_text(version) + SECTIONS)
    model = catalogue_services.catalog_model_set_status(model=model, status="available", actor=sam)

    assert model.status == "available"
    assert AuditEvent.objects.get(verb="model.status").payload["after"] == {"status": "available"}


def test_only_the_latest_version_counts_and_restoring_is_not_publishing(sam):
    model = CatalogModelFactory(status="draft")
    complete = "\n".join(f"## {s}\n\nSaid." for s in REQUIRED)
    ModelVersionFactory(model=model, card_markdown=complete)
    latest = ModelVersionFactory(model=model, card_markdown="## Evaluation\n\nSaid.")

    with pytest.raises(PortalError, match=f"card of {latest.label} lacks Intended use, Lim"):
        catalogue_services.catalog_model_set_status(model=model, status="available", actor=sam)

    CatalogModel.objects.filter(pk=model.pk).update(status="deprecated")
    model.refresh_from_db()
    restored = catalogue_services.catalog_model_set_status(
        model=model, status="available", actor=sam
    )
    assert restored.status == "available"


def test_the_publish_button_lists_what_is_missing(client, sam, tmp_path):
    version = _draft(tmp_path, sam)
    client.force_login(sam)
    page = version.model.get_absolute_url()

    html = client.get(page).content.decode()
    publish = html.split('data-testid="publish"', 1)[1].split("</form>", 1)[0]
    assert [s for s in REQUIRED if f"<li>{s}</li>" in publish] == REQUIRED
    assert '<button type="submit" class="primary" disabled>Publish</button>' in publish
    assert f"{_url(version, 'edit')}" in publish
    # The service is the rule: a press that gets past a disabled button is refused.
    pressed = client.post(f"{page}status/", {"status": "available"}, follow=True)
    assert "lacks Intended use, Limitations, Training data, Evaluation" in pressed.content.decode()

    _edit(version, sam, card_text(version) + SECTIONS)
    publish = client.get(page).content.decode().split('data-testid="publish"', 1)[1]
    publish = publish.split("</form>", 1)[0]
    assert "publish-missing" not in publish
    assert '<button type="submit" class="primary">Publish</button>' in publish
    client.post(f"{page}status/", {"status": "available"})
    assert CatalogModel.objects.get(pk=version.model_id).status == "available"
    assert 'data-testid="publish"' not in client.get(page).content.decode()


def test_the_required_sections_are_policy_data_staff_edit(sam, admin_user, tmp_path):
    version = _draft(tmp_path, sam, card=BARE_CARD + SECTIONS.replace("## Evaluation", "## Notes"))
    assert card_missing_sections(version) == ["Evaluation"]
    evaluation = CardRequirement.objects.get(heading="Evaluation")

    evaluation.active = False
    with pytest.raises(Forbidden):
        card_requirement_save(actor=sam, requirement=evaluation)
    assert CardRequirement.objects.get(heading="Evaluation").active
    card_requirement_save(actor=admin_user, requirement=evaluation)

    assert card_missing_sections(version) == []
    event = AuditEvent.objects.get(verb="card_requirement.update")
    assert (event.payload["before"]["active"], event.payload["after"]["active"]) == (True, False)
    catalogue_services.catalog_model_set_status(model=version.model, status="available", actor=sam)


def test_the_admin_edits_requirements_and_only_shows_revisions(client, admin_user, sam, tmp_path):
    version = _draft(tmp_path, sam)
    _edit(version, sam, card_text(version) + SECTIONS)
    client.force_login(admin_user)
    requirement = CardRequirement.objects.get(heading="Limitations")

    client.post(
        f"/admin/zoo/cardrequirement/{requirement.pk}/change/",
        {
            "state": "published",
            "heading": "Limitations",
            "also_accepted": "Risks\nCaveats\nKnown issues",
            "help_text": requirement.help_text,
            "position": requirement.position,
            "active": "on",
        },
    )

    assert "Known issues" in CardRequirement.objects.get(pk=requirement.pk).accepted_headings
    assert AuditEvent.objects.filter(verb="card_requirement.update", actor=admin_user).exists()
    revision = CardRevision.objects.get(number=2)
    page = client.get(f"/admin/zoo/cardrevision/{revision.pk}/change/")
    assert page.status_code == 200
    assert 'name="reason"' not in page.content.decode()  # shown, not editable
    assert client.get("/admin/zoo/cardrevision/add/").status_code == 403
