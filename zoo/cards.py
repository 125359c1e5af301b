"""Model cards: reading their YAML into catalogue fields, and rendering their text safely.

Cards come from outside the company, so their markdown is treated as hostile:
it is rendered, then sanitized with nh3 (no scripts, no event handlers, no
``javascript:`` links) before it reaches a page.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any

import markdown as markdown_lib
import nh3
import yaml

logger = logging.getLogger(__name__)

ALLOWED_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "dd", "del", "details", "div", "dl", "dt",
    "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "li", "ol", "p", "pre", "s",
    "span", "strong", "sub", "summary", "sup", "table", "tbody", "td", "th", "thead", "tr", "ul",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title", "width", "height"},
    "td": {"align"},
    "th": {"align"},
    "code": {"class"},
}

PIPELINE_MODALITY = {
    "image-classification": "vision",
    "image-feature-extraction": "vision",
    "object-detection": "vision",
    "image-segmentation": "vision",
    "zero-shot-image-classification": "multimodal",
    "image-to-text": "multimodal",
    "visual-question-answering": "multimodal",
    "automatic-speech-recognition": "audio",
    "audio-classification": "audio",
    "text-to-speech": "audio",
    "tabular-classification": "tabular",
    "tabular-regression": "tabular",
}


_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
# **bold**, __bold__, *em*, _em_ and `code`, kept as their text in one-line summaries.
_EMPHASIS = re.compile(r"(?<!\w)(\*\*|__|\*|_|`)(\S(?:.*?\S)?)\1(?!\w)")
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")


class CardError(ValueError):
    """The card's YAML header cannot be read."""


@dataclass
class CardInfo:
    """What the portal takes from a card: its YAML mapped to fields, and its body."""

    metadata: dict[str, Any] = field(default_factory=dict)
    body: str = ""
    license: str | None = None
    license_name: str | None = None
    base_models: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    languages: list[str] = field(default_factory=list)
    pipeline_tag: str | None = None
    library_name: str | None = None
    tags: list[str] = field(default_factory=list)

    @property
    def modality(self) -> str:
        return PIPELINE_MODALITY.get(self.pipeline_tag or "", "text")

    @property
    def summary(self) -> str:
        """The first paragraph of prose in the body, for the catalogue listing."""
        for block in self.body.split("\n\n"):
            lines = [line for line in block.strip().splitlines() if not line.startswith("#")]
            text = "\n".join(lines).strip()
            if not text or "```" in text or text.startswith(("<", "|", "-", "*", "!", ">")):
                continue
            text = _LINK.sub(r"\1", text)
            text = _EMPHASIS.sub(r"\2", text)
            return " ".join(text.split())[:500]
        return ""

    @property
    def title(self) -> str:
        """The card's first top-level heading ("# Ticket router"), if it has one."""
        for line in self.body.splitlines():
            match = _HEADING.match(line)
            if match and len(match.group(1)) == 1:
                return _EMPHASIS.sub(r"\2", match.group(2)).strip()[:200]
        return ""

    def section(self, word: str) -> str:
        """The text under the first heading that contains ``word`` ("limitation"),
        up to the next heading of the same or a higher level; "" if there is none."""
        lines = self.body.splitlines()
        for index, line in enumerate(lines):
            match = _HEADING.match(line)
            if not match or word not in match.group(2).lower():
                continue
            level, body = len(match.group(1)), []
            for following in lines[index + 1 :]:
                after = _HEADING.match(following)
                if after and len(after.group(1)) <= level:
                    break
                body.append(following)
            text = "\n".join(body).strip()
            if text:
                return text[:5000]
        return ""


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [str(v) for v in value if isinstance(v, str | int | float)]
    return []


# A card's metadata is a few keys; kept small, so one page of versions stays small.
MAX_METADATA_BYTES = 64 * 1024


class _NoAliasLoader(yaml.SafeLoader):
    """SafeLoader without anchors and aliases: a 700-byte header of nested aliases
    expands to tens of megabytes, and no model card needs them."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise CardError(
                f"The card's YAML header uses an alias (*{event.anchor}, line "
                f"{event.start_mark.line + 2}); write the value out instead."
            )
        return super().compose_node(parent, index)


def _checked_size(metadata: dict[str, Any]) -> dict[str, Any]:
    encoded = json.dumps(metadata, default=str, ensure_ascii=False)
    if len(encoded.encode()) > MAX_METADATA_BYTES:
        raise CardError(
            f"The card's YAML header holds {len(encoded.encode()):,} bytes of metadata; "
            f"the limit is {MAX_METADATA_BYTES:,}."
        )
    return json.loads(encoded)


def parse_card(text: str) -> CardInfo:
    """Split a README.md into YAML metadata and markdown body.

    Raises CardError with a readable message when the YAML header is malformed
    or is not a mapping; a card without a header is fine (empty metadata).
    """
    metadata: dict[str, Any] = {}
    body = text
    if text.startswith("---"):
        lines = text.splitlines(keepends=True)
        end = next((i for i in range(1, len(lines)) if lines[i].strip() == "---"), None)
        if end is None:
            raise CardError("The card's YAML header starts with '---' but never ends.")
        header = "".join(lines[1:end])
        body = "".join(lines[end + 1 :])
        try:
            loaded = yaml.load(header, Loader=_NoAliasLoader)  # noqa: S506 (a SafeLoader)
        except RecursionError:
            raise CardError("The card's YAML header is nested too deeply.") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 2})" if mark is not None else ""
            problem = getattr(exc, "problem", None) or "invalid YAML"
            raise CardError(f"The card's YAML header is malformed{where}: {problem}.") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise CardError("The card's YAML header must be a mapping of keys to values.")
        metadata = _checked_size(loaded)
    license_value = metadata.get("license")
    if isinstance(license_value, list):
        license_value = license_value[0] if license_value else None
    return CardInfo(
        metadata=metadata,
        body=body.strip("\n"),
        license=str(license_value).strip().lower() if license_value else None,
        license_name=str(metadata.get("license_name") or "") or None,
        base_models=_as_list(metadata.get("base_model")),
        datasets=_as_list(metadata.get("datasets")),
        languages=_as_list(metadata.get("language")),
        pipeline_tag=str(metadata["pipeline_tag"]) if metadata.get("pipeline_tag") else None,
        library_name=str(metadata["library_name"]) if metadata.get("library_name") else None,
        tags=_as_list(metadata.get("tags")),
    )


def render_markdown(text: str) -> str:
    """Markdown to HTML that is safe to put on a page."""
    html = markdown_lib.markdown(text, extensions=["tables", "fenced_code"], output_format="html")
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )
