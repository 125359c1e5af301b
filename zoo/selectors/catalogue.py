"""Read queries over the catalogue, shared by the HTML views, the API and the hub endpoint.

Every object a page shows reaches it through these: a draft is seen by its
owner and stewards only, in the list, in search and in a base model's lineage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from django.core.cache import cache
from django.db import connection
from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from governance.roles import STEWARDS, holds_role_in_sql, is_steward, roles_read
from portal.errors import NotFound
from portal.pagination import KeysetPage, keyset_page
from zoo.models import Artifact, CatalogModel, ModelVersion
from zoo.selectors import search


def models_visible_to(user) -> QuerySet[CatalogModel]:
    """Stewards see drafts too; everyone signed in sees published, deprecated and blocked models.

    A draft's owner sees it as well: a fine-tune's author follows their new
    model while it waits for a steward's review.
    """
    if not user.is_authenticated:
        return CatalogModel.objects.none()
    qs = CatalogModel.objects.all()
    if user.is_superuser:
        return qs
    hidden = Q(status=CatalogModel.Status.DRAFT) & ~Q(owner=user)
    if roles_read(user):  # a page that asked already: no subquery in each of its queries
        return qs if is_steward(user) else qs.exclude(hidden)
    # Otherwise whether the user is a steward is asked in the same query (``is_steward``
    # minus the superuser, above): one query less for every API read.
    return qs.filter(~hidden | holds_role_in_sql(user, STEWARDS))


def versions_visible_to(user) -> QuerySet[ModelVersion]:
    models = models_visible_to(user)
    return ModelVersion.objects.filter(model__in=models.values("pk"))


def artifacts_visible_to(user) -> QuerySet[Artifact]:
    return Artifact.objects.filter(version__in=versions_visible_to(user).values("pk"))


def get_model_for_user(user, repo_id: str) -> CatalogModel:
    model = models_visible_to(user).filter(repo_id=repo_id).first()
    if model is None:
        raise NotFound(f"No model {repo_id} in the catalogue.")
    return model


@dataclass
class CatalogueQuery:
    """The search box and filters of the catalogue page (and the API's query string)."""

    q: str = ""
    modality: str = ""
    task: str = ""
    license_category: str = ""
    commercial: str = ""  # "yes", "no" or ""
    status: str = ""
    domain: str = ""
    sort: str = ""  # relevance (with q), name, recent, params
    approved: bool = False  # only models with a version approved for this user (``within``)


def _latest_version() -> QuerySet[ModelVersion]:
    return ModelVersion.objects.filter(model=OuterRef("pk")).order_by("-created_at", "-id")


def with_latest_license(qs: QuerySet[CatalogModel]) -> QuerySet[CatalogModel]:
    latest = _latest_version()
    return qs.annotate(
        license_spdx=Subquery(latest.values("license__spdx_id")[:1]),
        license_category=Subquery(latest.values("license__category")[:1]),
        latest_label=Subquery(latest.values("label")[:1]),
    )


def filter_text(qs: QuerySet[CatalogModel], text: str) -> search.Matches | None:
    """Models of ``qs`` matching ``text``, ranked (see ``zoo.selectors.search``).

    Apply it after every other filter; ``None`` when the text is blank.
    """
    if not search.normalise(text):
        return None
    return search.ranked_search(qs, text)


def filter_domain(qs: QuerySet[CatalogModel], tag: str) -> QuerySet[CatalogModel]:
    if connection.vendor == "postgresql":
        return qs.filter(domain_tags__contains=[tag])
    return qs.filter(domain_tags__icontains=f'"{tag}"')


def filter_license_category(qs: QuerySet[CatalogModel], category: str) -> QuerySet[CatalogModel]:
    return qs.filter(
        Exists(ModelVersion.objects.filter(model=OuterRef("pk"), license__category=category))
    )


def filter_commercial(qs: QuerySet[CatalogModel], allowed: bool) -> QuerySet[CatalogModel]:
    return qs.filter(
        Exists(ModelVersion.objects.filter(model=OuterRef("pk"), license__commercial_use=allowed))
    )


class CatalogueResults(NamedTuple):
    qs: QuerySet[CatalogModel]
    order: tuple[str, ...]  # the keyset order to list them in
    matches: search.Matches | None  # the search's count, correction and name matches


def search_catalogue(
    user, query: CatalogueQuery, *, within: QuerySet | None = None
) -> CatalogueResults:
    """Visible models matching the query, with the order to list them in.

    ``within`` (model ids) narrows them further.

    The "approved for me" filter is governance's rule: the caller passes
    ``governance.access.models_usable_by(user)`` as ``within``.
    """
    qs = models_visible_to(user)
    if within is not None:
        qs = qs.filter(pk__in=within)
    if query.modality:
        qs = qs.filter(modality=query.modality)
    if query.task:
        qs = qs.filter(task=query.task)
    if query.status:
        qs = qs.filter(status=query.status)
    if query.domain:
        qs = filter_domain(qs, query.domain)
    if query.license_category:
        qs = filter_license_category(qs, query.license_category)
    if query.commercial in ("yes", "no"):
        qs = filter_commercial(qs, query.commercial == "yes")
    qs = with_latest_license(qs)
    if query.sort == "params":
        qs = qs.annotate(sort_params=Coalesce("parameter_count", Value(-1)))
    # Last: whether to correct the spelling depends on what the filters leave.
    matches = filter_text(qs, query.q)
    return CatalogueResults(
        qs if matches is None else matches.qs,
        catalogue_order(query.sort, ranked=matches is not None),
        matches,
    )


SORTS = {
    "name": ("repo_id",),
    "recent": ("-updated_at", "repo_id"),
    # Models without a stated size sort last.
    "params": ("-sort_params", "repo_id"),
}


def catalogue_order(sort: str, *, ranked: bool) -> tuple[str, ...]:
    """The keyset order of a catalogue list: relevance for a search unless another sort is asked."""
    if sort in SORTS:
        return SORTS[sort]
    return search.RANKED_ORDER if ranked else ("repo_id",)


def catalogue_page(
    user, query: CatalogueQuery, *, within=None, cursor=None, size=20
) -> tuple[KeysetPage, str | None]:
    """One keyset page of ``search_catalogue``'s results, and the corrected query if any."""
    qs, order, matches = search_catalogue(user, query, within=within)
    page = keyset_page(
        qs,
        order,
        cursor,
        size,
        count=matches and matches.count,
        prefix=ranked_prefix(order, matches),
        candidates=matches and matches.candidates,
    )
    return page, matches and matches.corrected


def ranked_prefix(order: tuple[str, ...], matches) -> tuple[QuerySet, int] | None:
    """The keyset prefix of a relevance-ordered search: its name matches (tiers 0 and 1)."""
    if matches is None or matches.names_first is None or order != search.RANKED_ORDER:
        return None
    return matches.names_first, search.NAME_TIERS


def lineage(user, version: ModelVersion) -> dict:
    """Ancestors (oldest first) and direct descendants of a version, as far as ``user`` sees.

    A colleague's draft fine-tune is not listed under its base: its name alone
    can say whose it is and which private data it was trained on.
    """
    visible = versions_visible_to(user)
    ancestors = []
    seen = {version.pk}
    parent_id = version.parent_id
    while parent_id is not None and parent_id not in seen and len(ancestors) < 20:
        node = visible.select_related("model").filter(pk=parent_id).first()
        if node is None:
            break
        ancestors.append(node)
        seen.add(node.pk)
        parent_id = node.parent_id
    children = list(
        visible.filter(parent=version).select_related("model", "license").order_by("-created_at")
    )
    ancestors.reverse()
    return {
        "ancestors": ancestors,
        "children": children,
        "tree": _lineage_tree(visible, ancestors[0] if ancestors else version, version),
    }


LINEAGE_MAX_NODES = 200


def _lineage_tree(visible, root: ModelVersion, current: ModelVersion) -> list[dict]:
    """The family from ``root`` down, as nested nodes, in the viewer's sight only.

    One query per generation; stops at ``LINEAGE_MAX_NODES`` so a base with
    thousands of fine-tunes still draws (``more`` says how many were left out).
    """
    nodes = {root.pk: {"version": root, "children": [], "current": root.pk == current.pk}}
    generation, count = [root.pk], 1
    while generation:
        room = LINEAGE_MAX_NODES - count
        found = list(
            visible.filter(parent_id__in=generation)
            .select_related("model")
            .order_by("created_at", "id")[: room + 1]
        )
        if len(found) > room:
            nodes[root.pk]["more"] = True
            found = found[:room]
        generation = []
        for child in found:
            if child.pk in nodes:
                continue
            node = {"version": child, "children": [], "current": child.pk == current.pk}
            nodes[child.pk] = node
            nodes[child.parent_id]["children"].append(node)
            generation.append(child.pk)
            count += 1
    return [nodes[root.pk]]


def task_choices() -> list[str]:
    """Tasks present in the catalogue, for the filter; cached since they change only on import."""
    return cache.get_or_set(
        "zoo:task-choices",
        lambda: list(
            CatalogModel.objects.exclude(task="")
            .values_list("task", flat=True)
            .distinct()
            .order_by("task")
        ),
        timeout=300,
    )
