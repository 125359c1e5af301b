"""Ranked catalogue search, the same rules on PostgreSQL and on SQLite (``make run``).

A model matches when every word is found in its text (full-text, with
stemming; the name holds the repo id's words, so an exact id matches too).
The order is what a user expects from a name search:

0. exact repo id, name or title;
1. every word in the name;
2. every word in the name, summary, task, architecture or tags;
3. the words reach into the card text.

Within a tier the score breaks ties (PostgreSQL's ts_rank over the weighted
name and summary, SQLite's bm25 over the same columns), then the repo id.
Card text is matched through the index but never read to rank, so a common
word costs what the rows shown cost.

When nothing matches, each word is corrected to the closest word of any
model's name (trigram similarity, pg_trgm's measure on both databases:
``minlm`` becomes ``minilm``) and the corrected words are searched instead;
the page says so. Looking a word up among the distinct name words is a
small index probe, where comparing it with every name would not be.

Which models match a text, and in what order, is the same for everyone: it
is found once per text and kept in the cache (``ranked_everywhere``) until
the catalogue's search text changes (``catalogue_changed``, called by the
catalogue services). Who may see each model and the filters are applied to
the database on every request, to the cached ids only, so a model's status,
owner or approvals are never read from the cache.

Every SQL string here is a constant: the user's text only ever travels as a
query parameter (hence the ``noqa`` marks on the raw SQL).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import threading
import time
from collections import OrderedDict
from typing import NamedTuple

from django.core.cache import cache
from django.db import connection
from django.db.models import BooleanField, Case, FloatField, IntegerField, Q, QuerySet, Value, When
from django.db.models.expressions import RawSQL

from portal.pagination import COUNT_CAP, Candidates
from zoo.models import CatalogModel, SearchWord

# The order of a ranked search, for the keyset paginator: tier, then score, then repo id.
RANKED_ORDER = ("search_tier", "-search_score", "repo_id")

# How close a typed word must be to a name's word to be corrected to it. One
# letter dropped from or added to a 5-12 letter word scores 0.44-0.8, while
# "sentence" against "sentiment" scores 0.27. Set on each connection (zoo.apps).
SIMILARITY = 0.4
MAX_QUERY_CHARS = 200
MAX_WORDS = 8
_WORD = re.compile(r"\w+", re.UNICODE)


def normalise(text: str) -> str:
    return " ".join(text.split())[:MAX_QUERY_CHARS]


class Matches(NamedTuple):
    qs: QuerySet
    count: int  # capped at COUNT_CAP + 1
    corrected: str | None  # the words searched instead of a misspelt query
    # The matches of tiers 0 and 1 alone (every word in the name), found through an
    # index of names: they sort first, so a first page they fill never ranks the rest.
    names_first: QuerySet | None = None
    # The ranked ids of every model matching, whoever may see them, from the cache:
    # a page reads its rows by id from the filtered list (``portal.pagination``).
    candidates: Candidates | None = None


# How many ranked ids of one text the cache keeps; a page or a count past them
# reads the database as if nothing were cached.
RANKED_CAP = 5000
RANKED_TIMEOUT_S = 3600
GENERATION_KEY = "zoo:search:generation"


class Ranked(NamedTuple):
    pks: list[int]
    keys: list[tuple]  # (search_tier, search_score, repo_id) per pk: RANKED_ORDER's values
    complete: bool  # False when more than RANKED_CAP models match


def _generation() -> int:
    """The catalogue's search generation: cached results of another are never read.

    Starts from the clock when the cache has none (a new cache, or the key
    evicted), so a generation is never reused while results of it remain.
    """
    value = cache.get(GENERATION_KEY)
    if value is None:
        cache.add(GENERATION_KEY, time.time_ns(), timeout=None)
        value = cache.get(GENERATION_KEY)
    return value


def catalogue_changed() -> None:
    """Forget every cached search result: a model's name, text or card changed, or one was added."""
    # Without a generation yet, the next search starts one and nothing older is read.
    with contextlib.suppress(ValueError):
        cache.incr(GENERATION_KEY)


# Plain words (letters, digits, ``_ . /`` and inner hyphens): nothing websearch_to_tsquery
# reads as an operator but "or", which ``_same_in_any_case`` leaves alone.
_PLAIN_TEXT = re.compile(
    r"[A-Za-z0-9_./]+(?:-[A-Za-z0-9_./]+)*(?: [A-Za-z0-9_./]+(?:-[A-Za-z0-9_./]+)*)*"
)


def _same_in_any_case(text: str) -> bool:
    """Whether ``text`` finds what its lower case finds, so both may share one cached result.

    Matching is case-blind (tsquery words are lower-cased, the exact tier compares
    with iexact), but only ASCII case is folded the same by Python and both
    databases, and whether "OR" is an operator like "or" is not ours to guess.
    """
    return bool(_PLAIN_TEXT.fullmatch(text)) and "or" not in text.lower().split()


def _cache_key(kind: str, text: str, generation: int) -> str:
    # Otherwise the text as typed: websearch_to_tsquery reads some words as operators.
    if _same_in_any_case(text):
        text = text.lower()
    digest = hashlib.sha256(text.encode()).hexdigest()[:32]
    return f"zoo:search:{generation}:{kind}:{digest}"


class _Recent:
    """The ranked results (and corrected spellings) this process read last, by cache key.

    Each search still reads the generation from the shared cache, so a result of
    an older catalogue is never used; what this saves is fetching and unpickling
    up to ``RANKED_CAP`` ids and sort keys from Redis on every page of a text.
    Bounded by the ids it holds, and shared by a worker's threads.
    """

    def __init__(self, max_ids: int) -> None:
        self.max_ids = max_ids
        self.entries: OrderedDict[str, Ranked | str] = OrderedDict()
        self.ids = 0
        self.lock = threading.Lock()

    def get(self, key: str):
        with self.lock:
            hit = self.entries.get(key)
            if hit is not None:
                self.entries.move_to_end(key)
            return hit

    def put(self, key: str, value: Ranked | str) -> None:
        with self.lock:
            if key in self.entries:
                return
            self.entries[key] = value
            self.ids += self._weight(value)
            while self.ids > self.max_ids and len(self.entries) > 1:
                _, old = self.entries.popitem(last=False)
                self.ids -= self._weight(old)

    @staticmethod
    def _weight(value: Ranked | str) -> int:
        return len(value.pks) + 1 if isinstance(value, Ranked) else 1


# Twenty texts at the cap (about 1 MB each), or a hundred that match 2,000 models each.
recent = _Recent(max_ids=20 * RANKED_CAP)


def ranked_everywhere(text: str, generation: int) -> Ranked:
    """Every model matching ``text`` in ``RANKED_ORDER``, whoever may see it (cached)."""
    key = _cache_key("ranked", text, generation)
    hit = recent.get(key)
    if hit is not None:
        return hit
    hit = cache.get(key)
    if hit is not None:
        ranked = Ranked(*hit)
        recent.put(key, ranked)
        return ranked
    backend = _Postgres(text) if connection.vendor == "postgresql" else _SQLite(text)
    rows = list(
        CatalogModel.objects.filter(backend.join, backend.in_text)
        .annotate(search_tier=_tier(text, backend), search_score=backend.score)
        .order_by(*RANKED_ORDER)
        .values_list("pk", "search_tier", "search_score", "repo_id")[: RANKED_CAP + 1]
    )
    ranked = Ranked(
        [r[0] for r in rows[:RANKED_CAP]],
        [tuple(r[1:]) for r in rows[:RANKED_CAP]],
        len(rows) <= RANKED_CAP,
    )
    cache.set(key, tuple(ranked), RANKED_TIMEOUT_S)
    recent.put(key, ranked)
    return ranked


def _among(qs: QuerySet, pks: list[int]) -> QuerySet:
    if connection.vendor == "postgresql":
        # One text parameter, where ``pk__in`` would send thousands (and a list would be
        # rendered element by element in Python).
        ids = ",".join(map(str, pks))
        return qs.filter(
            _raw(
                """"zoo_catalogmodel"."id" = ANY(string_to_array(%s, ',')::bigint[])""",
                [ids],
                BooleanField(),
            )
        )
    return qs.filter(pk__in=pks)


def _capped_count(qs: QuerySet) -> int:
    return qs.order_by().values("pk")[: COUNT_CAP + 1].count()


def _count_among(qs: QuerySet, ranked: Ranked) -> int | None:
    """How many of the ranked models ``qs`` holds (capped); ``None`` if the ids cannot tell."""
    if not ranked.pks and ranked.complete:
        return 0  # nothing matches (a misspelling, say): nothing to ask the database
    # The index scan over the ids stops at the cap, however many ids it was given.
    found = _capped_count(_among(qs, ranked.pks))
    return found if found > COUNT_CAP or ranked.complete else None


# ``names_first`` holds exactly the rows whose first sort key is at most this.
NAME_TIERS = 1


def ranked_search(qs: QuerySet, text: str) -> Matches:
    """``qs`` (catalogue models, already filtered) narrowed to matches of ``text``, ranked.

    Annotated with ``search_tier`` and ``search_score``: order by
    ``RANKED_ORDER``. The count comes from the probe that decides whether to
    correct the spelling, so the page need not count again; it reads up to
    ``COUNT_CAP + 1`` ids rather than asking EXISTS, since with ``LIMIT 1``
    PostgreSQL may walk the table hoping for an early match, which for a
    word in one model means reading every row's text.
    """
    text = normalise(text)
    generation = _generation()  # read once: a search asks the cache for up to three results
    found = _matches(qs, text, generation)
    if found.count:
        return found
    corrected = correct_spelling(text, generation)
    if corrected and corrected != " ".join(_WORD.findall(text.lower())):
        again = _matches(qs, corrected, generation)
        if again.count:
            return again._replace(corrected=corrected)
    return found


def _matches(qs: QuerySet, text: str, generation: int) -> Matches:
    backend = _Postgres(text) if connection.vendor == "postgresql" else _SQLite(text)
    if backend.in_text is None:  # no word at all (punctuation only)
        nothing = qs.none().annotate(
            search_tier=Value(3), search_score=Value(0.0, output_field=FloatField())
        )
        return Matches(nothing, 0, None)
    found = qs.filter(backend.join, backend.in_text)
    ranked = ranked_everywhere(text, generation)
    count = _count_among(qs, ranked)
    if count is None:
        count = _capped_count(found)
    names = qs.filter(backend.join, backend.name_indexed).annotate(
        search_tier=Case(When(_exact(text), then=Value(0)), default=Value(1)),
        search_score=backend.score,
    )
    return Matches(
        found.annotate(search_tier=_tier(text, backend), search_score=backend.score),
        count,
        None,
        names,
        Candidates(qs, RANKED_ORDER, ranked.pks, ranked.keys, ranked.complete),
    )


def _exact(text: str) -> Q:
    return Q(repo_id__iexact=text) | Q(repo_id__iendswith="/" + text) | Q(title__iexact=text)


def _tier(text: str, backend) -> Case:
    return Case(
        When(_exact(text), then=Value(0)),
        When(backend.in_name, then=Value(1)),
        When(backend.in_head, then=Value(2)),
        default=Value(3),
        output_field=IntegerField(),
    )


def correct_spelling(text: str, generation: int) -> str:
    """``text`` with each word replaced by the closest word of a model's name, if one is close.

    Cached with the search results: the names' words change only with them.
    """
    key = _cache_key("spelling", text, generation)
    hit = recent.get(key)
    if hit is None:
        hit = cache.get(key)
        if hit is None:
            hit = _closest_words(text)
            cache.set(key, hit, RANKED_TIMEOUT_S)
        recent.put(key, hit)
    return hit


def _closest_words(text: str) -> str:
    words = []
    for word in _WORD.findall(text.lower())[:MAX_WORDS]:
        if len(word) < 3 or word.isdigit():
            words.append(word)
            continue
        similarity = (
            "similarity(word, %s)"
            if connection.vendor == "postgresql"
            else "zoo_similarity(word, %s)"
        )
        closest = (
            SearchWord.objects.filter(_close_to(word))
            .annotate(closeness=_raw(similarity, [word], FloatField()))
            .order_by("-closeness", "word")
            .values_list("word", flat=True)
            .first()
        )
        words.append(closest or word)
    return " ".join(words)


def _close_to(word: str):
    if connection.vendor == "postgresql":
        return Q(word__trigram_similar=word)  # pg_trgm's %, served by the index
    return _raw("zoo_similarity(word, %s) >= %s", [word, SIMILARITY], BooleanField())


def _raw(sql: str, params, output_field) -> RawSQL:
    return RawSQL(sql, params, output_field=output_field)  # noqa: S611


# The expression the migration indexes (0009): written the same way, the planner uses the index.
TEXT_VECTOR = (
    'zoo_search_text("zoo_catalogsearch".name, "zoo_catalogsearch".meta, "zoo_catalogsearch".card)'
)
NAME_VECTOR = 'zoo_search_name("zoo_catalogsearch".name)'


class _Postgres:
    """tsvector matches through the expression index, tiers and rank on the small ``head``."""

    def __init__(self, text: str) -> None:
        fts = text.replace("/", " ")
        tsq = "websearch_to_tsquery('english', %s)"
        entry = '"zoo_catalogsearch"'
        # The inner join to the search table, which the raw SQL names.
        self.join = Q(search_entry__isnull=False)
        self.in_text = _raw(f"{TEXT_VECTOR} @@ {tsq}", [fts], BooleanField())
        self.in_name = _raw(f"ts_filter({entry}.head, '{{a}}') @@ {tsq}", [fts], BooleanField())
        self.name_indexed = _raw(f"{NAME_VECTOR} @@ {tsq}", [fts], BooleanField())
        self.in_head = _raw(f"{entry}.head @@ {tsq}", [fts], BooleanField())
        # float8: its text form round-trips exactly, so a cursor can name a tie.
        self.score = _raw(f"ts_rank({entry}.head, {tsq})::float8", [fts], FloatField())


def fts5_query(text: str, columns: str = "") -> str:
    """An FTS5 query for every word of ``text`` (quoted: user input is never FTS5 syntax)."""
    words = " ".join(f'"{w}"' for w in _WORD.findall(text.lower())[:16])
    if not words:
        return ""
    return f"{{{columns}}} : ({words})" if columns else words


class _SQLite:
    """FTS5 with column filters for the tiers, bm25 to rank."""

    def __init__(self, text: str) -> None:
        model_id = '"zoo_catalogmodel"."id"'
        fts = "SELECT rowid FROM zoo_catalogsearch_fts WHERE zoo_catalogsearch_fts MATCH %s"
        everywhere = fts5_query(text)
        self.join = Q()
        self.in_text = (
            _raw(f"{model_id} IN ({fts})", [everywhere], BooleanField()) if everywhere else None
        )
        self.in_name = _raw(f"{model_id} IN ({fts})", [fts5_query(text, "name")], BooleanField())
        self.name_indexed = self.in_name
        self.in_head = _raw(
            f"{model_id} IN ({fts})", [fts5_query(text, "name meta")], BooleanField()
        )
        # bm25 is lower for better matches; negated so that higher is better, as on PostgreSQL.
        self.score = _raw(
            "(SELECT -bm25(zoo_catalogsearch_fts, 10.0, 4.0, 1.0) FROM zoo_catalogsearch_fts"  # noqa: S608
            f" WHERE zoo_catalogsearch_fts MATCH %s AND rowid = {model_id})",
            [everywhere],
            FloatField(),
        )


def _trigrams(text: str) -> set[str]:
    grams = set()
    for word in _WORD.findall(text.lower()):
        padded = f"  {word} "
        grams.update(padded[i : i + 3] for i in range(len(padded) - 2))
    return grams


def similarity(a: str, b: str) -> float:
    """pg_trgm's ``similarity`` for SQLite: shared trigrams over all trigrams of the two."""
    left, right = _trigrams(a), _trigrams(b)
    if not left or not right:
        return 0.0
    return len(left & right) / len(left | right)
