"""Reading model cards as stewards edit them: their text, revisions, sections and diffs.

Kept apart from ``zoo.services.card_revisions`` (which writes) so that the
catalogue service can ask "what does this card lack?" before publishing
without importing the service that itself builds on the catalogue's.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

import yaml

from zoo.models import CardRequirement, CardRevision, ModelVersion

AS_IMPORTED = "As imported"

# A line that only says the section is still to be written (the Hugging Face
# card template's "[More Information Needed]", our fine-tune card's "Not stated.").
PLACEHOLDERS = frozenset(
    {"more information needed", "more info needed", "not stated", "todo", "tbd", "coming soon"}
)
# Words a requirement's heading may hold that a card's heading need not repeat.
_FILLER = frozenset({"a", "an", "and", "for", "of", "or", "the", "to"})

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_HTML_HEADING = re.compile(r"^\s*<h([1-6])\b[^>]*>(.*?)</h\1>\s*$", re.IGNORECASE)
_TAG = re.compile(r"<[^>]*>")
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_WORD = re.compile(r"[a-z0-9]+")


def card_text(version: ModelVersion) -> str:
    """The whole card as a steward edits it: YAML front matter from the metadata, then the body.

    The importer keeps the header as ``card_metadata`` and the rest as
    ``card_markdown``; writing the header back with ``yaml.safe_dump`` gives
    what ``zoo.cards.parse_card`` reads back as the same metadata (not the
    original bytes: the README artifact keeps those).
    """
    body = version.card_markdown
    if not version.card_metadata and not body.startswith("---"):
        return body
    header = yaml.safe_dump(version.card_metadata or {}, sort_keys=False, allow_unicode=True)
    return f"---\n{header}---\n{body}"


def as_imported(version: ModelVersion) -> CardRevision:
    """Revision 1 as it would be saved now: the card the import left (unsaved)."""
    return CardRevision(
        version=version,
        number=1,
        markdown=card_text(version),
        author=None,
        reason=AS_IMPORTED,
        created_at=version.created_at,
    )


def card_revisions(version: ModelVersion) -> list[CardRevision]:
    """Every revision of the card, oldest first; an unedited card has only revision 1, unsaved."""
    saved = list(version.card_revisions.select_related("author").order_by("number"))
    return saved or [as_imported(version)]


def latest_card(version: ModelVersion) -> CardRevision:
    """The revision the card now is: what an edit starts from."""
    saved = version.card_revisions.select_related("author").order_by("-number").first()
    return saved or as_imported(version)


# --- required sections -------------------------------------------------------------------


@dataclass(frozen=True)
class Heading:
    """A heading of a card's body, and whether any text stands under it."""

    level: int
    title: str
    has_text: bool


def _is_placeholder(line: str) -> bool:
    return " ".join(_WORD.findall(line.lower())) in PLACEHOLDERS


def card_headings(markdown: str) -> list[Heading]:
    """The headings of a card body: ``#`` to ``######`` lines and one-line ``<h1>``..``<h6>``.

    Lines inside fenced code blocks are code, not headings (a Python comment
    is not a section). A heading "has text" when a line other than a blank,
    a placeholder or another heading follows it before the next heading of
    its level or higher, so a section whose text sits in subsections counts.
    """
    found: list[tuple[int, str, int]] = []  # level, title, line index
    lines = markdown.splitlines()
    fence = ""
    for index, line in enumerate(lines):
        opening = _FENCE.match(line)
        if fence:
            if opening and opening.group(1)[0] == fence[0] and len(opening.group(1)) >= len(fence):
                fence = ""
            continue
        if opening:
            fence = opening.group(1)
            continue
        match = _ATX.match(line) or _HTML_HEADING.match(line)
        if match:
            level = match.group(1)
            found.append(
                (len(level) if level.startswith("#") else int(level), match.group(2) or "", index)
            )
    headings = []
    heading_lines = {index for _, _, index in found}
    for position, (level, title, index) in enumerate(found):
        end = next((i for lv, _, i in found[position + 1 :] if lv <= level), len(lines))
        has_text = any(
            line.strip() and i not in heading_lines and not _is_placeholder(line)
            for i, line in enumerate(lines[index + 1 : end], start=index + 1)
        )
        headings.append(Heading(level, _TAG.sub("", _LINK.sub(r"\1", title)).strip(), has_text))
    return headings


def _same_word(wanted: str, word: str) -> bool:
    """ "use" is "uses", "limitation" is "limitations", "bias" is "biases": plurals are the word."""
    return word in (wanted, f"{wanted}s", f"{wanted}es") or wanted in (f"{word}s", f"{word}es")


def heading_names(heading: str, wanted: str) -> bool:
    """Whether a card's ``heading`` names the section ``wanted``.

    Case and punctuation do not matter, nor does the order of the words or
    other words around them: every word of ``wanted`` (except "and", "of"
    and the like) must be in the heading, a plural counting as the word. So
    "Intended uses & limitations" names both "Intended use" and
    "Limitations", and "Evaluation results" names "Evaluation"; "Usage" does
    not name "Intended use", nor "Training procedure" "Training data".
    """
    words = _WORD.findall(heading.lower())
    needed = [w for w in _WORD.findall(wanted.lower()) if w not in _FILLER]
    return bool(needed) and all(any(_same_word(n, w) for w in words) for n in needed)


def sections_missing(markdown: str, requirements: list[CardRequirement]) -> list[str]:
    """The requirements' headings that no heading with text under it in ``markdown`` names."""
    headings = [h for h in card_headings(markdown) if h.has_text]
    return [
        requirement.heading
        for requirement in requirements
        if not any(
            heading_names(h.title, accepted)
            for h in headings
            for accepted in requirement.accepted_headings
        )
    ]


def card_requirements(state: str = CardRequirement.State.PUBLISHED) -> list[CardRequirement]:
    """The sections policy requires of a card for ``state``, in their order."""
    return list(CardRequirement.objects.filter(state=state, active=True))


def card_missing_sections(
    version: ModelVersion, state: str = CardRequirement.State.PUBLISHED
) -> list[str]:
    """The sections ``state`` requires that the version's card lacks ([] when it has them all).

    Only the body counts (the YAML header's ``datasets:`` is not a training data
    section a person can read); see ``heading_names`` for how headings match.
    """
    return sections_missing(version.card_markdown, card_requirements(state))


# --- side-by-side diff -------------------------------------------------------------------

# Lines longer than this together are marked changed as a whole: the character
# matcher is quadratic, and a table row that long is read as a whole anyway.
INTRALINE_LIMIT = 2000


@dataclass(frozen=True)
class DiffSide:
    """One side of a diff row: its line number (None where the line is absent) and its text,
    as (text, changed) parts so a page marks what changed within the line."""

    number: int | None
    parts: tuple[tuple[str, bool], ...] = ()


@dataclass(frozen=True)
class DiffRow:
    kind: str  # "same", "changed", "removed" or "added"
    left: DiffSide
    right: DiffSide


def _intraline(old: str, new: str) -> tuple[tuple, tuple]:
    if len(old) + len(new) > INTRALINE_LIMIT:
        return ((old, True),), ((new, True),)
    left, right = [], []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, old, new).get_opcodes():
        if i2 > i1:
            left.append((old[i1:i2], tag != "equal"))
        if j2 > j1:
            right.append((new[j1:j2], tag != "equal"))
    return tuple(left), tuple(right)


def _rows(tag: str, a: list[str], b: list[str], i1: int, i2: int, j1: int, j2: int):
    if tag == "equal":
        for i, j in zip(range(i1, i2), range(j1, j2), strict=True):
            yield DiffRow(
                "same", DiffSide(i + 1, ((a[i], False),)), DiffSide(j + 1, ((b[j], False),))
            )
        return
    for k in range(max(i2 - i1, j2 - j1)):
        i, j = i1 + k, j1 + k
        if i < i2 and j < j2:
            left, right = _intraline(a[i], b[j])
            yield DiffRow("changed", DiffSide(i + 1, left), DiffSide(j + 1, right))
        elif i < i2:
            yield DiffRow("removed", DiffSide(i + 1, ((a[i], True),)), DiffSide(None))
        else:
            yield DiffRow("added", DiffSide(None), DiffSide(j + 1, ((b[j], True),)))


def side_by_side(old: str, new: str, *, context: int = 3) -> list[list[DiffRow]]:
    """The changes from ``old`` to ``new`` as hunks of rows, with ``context`` lines around each.

    Plain data, not HTML: the page's template escapes every part, so a card
    holding ``<script>`` shows it as text. [] when the texts are the same.
    """
    a, b = old.splitlines(), new.splitlines()
    if a == b:
        return []
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    return [
        [row for opcode in group for row in _rows(opcode[0], a, b, *opcode[1:])]
        for group in matcher.get_grouped_opcodes(context)
    ]
