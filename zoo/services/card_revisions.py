"""Edits of a version's model card, each saved as a numbered revision, and of the policy
table that says which sections a card needs.

Revision 1 is the card as imported. It is written the first time the card is
edited, not at import: until then the version's own card fields *are* that
card (only ``version_card_edit`` changes them), so nothing is lost by
waiting, the importer stays as it is, and versions imported before revisions
existed get their revision 1 the same way, without a backfill.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import Max

from governance.audit import audit_record, policy_row_delete, policy_row_save
from portal.errors import Conflict, PortalError
from zoo.cards import CardError, parse_card
from zoo.models import CardRequirement, CardRevision, ModelVersion
from zoo.selectors.cards import as_imported
from zoo.services.catalogue import _require_steward, catalog_model_refresh_search

# As the importer: a README larger than this is not a model card.
MAX_CARD_BYTES = 2 * 2**20


def _checked_text(markdown: str) -> tuple[str, object]:
    """The card text with browser line endings undone, and what the importer reads from it."""
    text = (markdown or "").replace("\r\n", "\n").replace("\r", "\n")
    size = len(text.encode())
    if size > MAX_CARD_BYTES:
        raise PortalError(
            f"The card is {size:,} bytes; a model card may hold at most {MAX_CARD_BYTES:,}.",
            field="markdown",
        )
    try:
        return text, parse_card(text)
    except CardError as exc:
        raise PortalError(f"Nothing was saved: {exc}", field="markdown") from None


@transaction.atomic
def version_card_edit(
    *, version: ModelVersion, actor, markdown: str, reason: str, base: int | None = None
) -> CardRevision:
    """Save a steward's new text of a version's card as its next revision, with the reason.

    ``markdown`` is the whole card, YAML front matter included, read as the
    importer reads a README: a header it would refuse is refused here, with its
    message, and nothing is saved. The version's card body and (when the header
    changed) its card metadata follow; the license, lineage and provenance the
    import took from the header stay as they are (they have their own audited
    actions, and some are pinned). ``base`` is the revision number the editor
    started from: when someone saved another revision since, the edit is
    refused rather than silently undoing theirs.
    """
    _require_steward(actor)
    reason = (reason or "").strip()
    if not reason:
        raise PortalError("Say why you changed the card: a reason is required.", field="reason")
    text, card = _checked_text(markdown)
    # The lock makes two saves take turns, so they become revisions n and n + 1.
    version = ModelVersion.objects.select_for_update().select_related("model").get(pk=version.pk)
    last = version.card_revisions.aggregate(last=Max("number"))["last"]
    if base is not None and base != (last or 1):
        raise Conflict(
            f"Revision {last} of this card was saved while you were editing revision {base}; "
            "see the card's history, then make your change to the current text."
        )
    if card.body == version.card_markdown and card.metadata == version.card_metadata:
        raise PortalError("The card is unchanged: there is nothing to save.", field="markdown")
    if last is None:
        as_imported(version).save()
        last = 1
    metadata_changed = card.metadata != version.card_metadata
    version.card_markdown = card.body
    version.card_metadata = card.metadata
    version.save(
        update_fields=[
            "card_markdown",
            *(["card_metadata"] if metadata_changed else []),
            "updated_at",
        ]
    )
    revision = CardRevision.objects.create(
        version=version, number=last + 1, markdown=text, author=actor, reason=reason
    )
    catalog_model_refresh_search(model=version.model)
    audit_record(
        actor=actor,
        verb="version.card_edit",
        target=version,
        payload={
            "revision": revision.number,
            "reason": reason,
            "metadata_changed": metadata_changed,
        },
    )
    return revision


# --- the policy table, edited by staff in the admin -----------------------------------------


def card_requirement_save(*, actor, requirement: CardRequirement) -> CardRequirement:
    """Add or change a required card section (the admin has set its fields); audited."""
    return policy_row_save(actor=actor, obj=requirement, verb="card_requirement")


def card_requirement_delete(*, actor, requirement: CardRequirement) -> None:
    """Remove a required card section; audited with what it was. (Unticking ``active`` keeps it.)"""
    policy_row_delete(actor=actor, obj=requirement, verb="card_requirement")
