"""The synthetic catalogue the search benchmarks load: the same records for the portal and MLflow.

Deterministic for a given size, so two systems (or two runs) see the same
names, tags and text. Words are drawn so that queries of each kind match a
known share of the catalogue:

- ``COMMON`` words sit in about one model in ten (name, summary or tags);
- every model has one ``rare`` word of its own in its summary, so a rare
  one-word search matches a handful of models;
- card text draws on a large synthetic vocabulary, as real cards do.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field

COMMON = [
    "sentence",
    "encoder",
    "vision",
    "transformer",
    "invoice",
    "receipt",
    "legal",
    "contract",
    "fraud",
    "support",
    "ticket",
    "routing",
    "sentiment",
    "review",
    "medical",
    "radiology",
    "satellite",
    "retail",
    "product",
    "search",
    "ranking",
    "speech",
    "audio",
    "keyword",
    "spotting",
    "tabular",
    "churn",
    "credit",
    "risk",
    "finance",
    "german",
    "french",
    "multilingual",
    "code",
    "summarisation",
    "translation",
    "embedding",
    "retrieval",
    "classification",
    "detection",
    "segmentation",
    "ocr",
    "document",
    "layout",
    "table",
    "question",
    "answering",
    "chat",
    "safety",
    "toxicity",
    "moderation",
    "spam",
    "email",
]
MODALITIES = ["text", "vision", "audio", "tabular", "multimodal"]
TASKS = [
    "feature-extraction",
    "text-classification",
    "image-classification",
    "token-classification",
]
LICENSES = ["apache-2.0", "mit", "cc-by-4.0", "cc-by-nc-4.0", "llama3", "openrail", "unknown"]
_SYLLABLES = ["ka", "lo", "mi", "ne", "su", "ta", "ri", "po", "ve", "zu", "an", "el", "or", "in"]
FILLER = sorted({a + b + c for a in _SYLLABLES for b in _SYLLABLES for c in _SYLLABLES})
_RARE_SYLLABLES = ["bra", "dul", "fen", "gor", "hix", "jun", "kev", "lum", "mox", "nib", "pef"]


def rare_word(index: int) -> str:
    """A four-syllable word owned by model ``index`` (and, past 14,641 models, by a few others)."""
    n = len(_RARE_SYLLABLES)
    parts = []
    for _ in range(4):
        index, digit = divmod(index, n)
        parts.append(_RARE_SYLLABLES[digit])
    return "".join(parts)


@dataclass
class VersionRecord:
    revision: str
    label: str
    license: str
    total_size: int
    file_count: int


@dataclass
class ModelRecord:
    index: int
    repo_id: str
    title: str
    summary: str
    modality: str
    task: str
    parameter_count: int
    tags: list[str]
    card: str
    versions: list[VersionRecord] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.repo_id.split("/", 1)[1]


def records(n_models: int, per_model: int) -> Iterator[ModelRecord]:
    """The catalogue of ``n_models`` models with ``per_model`` versions each, always the same."""
    rng = random.Random(7)
    for i in range(n_models):
        words = rng.sample(COMMON, 6)
        summary = (
            f"A {words[0]} {words[1]} model for {words[2]} and {words[3]} {words[4]}, "
            f"tuned on {rare_word(i)} data."
        )
        tags = rng.sample(COMMON, 3)
        record = ModelRecord(
            index=i,
            repo_id=f"org{i % 200}/{words[0]}-{words[1]}-{i}",
            title=f"{words[0].title()} {words[1]} {i}",
            summary=summary,
            modality=rng.choice(MODALITIES),
            task=rng.choice(TASKS),
            parameter_count=rng.randint(10**6, 10**9),
            tags=tags,
            card=" ".join(rng.choice(FILLER) for _ in range(150)),
        )
        for v in range(per_model):
            record.versions.append(
                VersionRecord(
                    revision=f"{rng.getrandbits(160):040x}",
                    label=f"v{v + 1}",
                    license=rng.choice(LICENSES),
                    total_size=rng.randint(10**6, 10**10),
                    file_count=rng.randint(3, 20),
                )
            )
        yield record


def queries(n_models: int, count: int, seed: int = 11) -> dict[str, list[str]]:
    """Search strings of each kind, drawn against a catalogue of ``n_models``."""
    rng = random.Random(seed)

    def typo(word: str) -> str:
        at = rng.randrange(1, len(word) - 1)
        return word[:at] + word[at + 1 :]

    return {
        "one word, common": [rng.choice(COMMON) for _ in range(count)],
        "one word, rare": [rare_word(rng.randrange(n_models)) for _ in range(count)],
        "two words": [" ".join(rng.sample(COMMON, 2)) for _ in range(count)],
        "typo in a name": [
            typo(rng.choice([w for w in COMMON if len(w) >= 6])) for _ in range(count)
        ],
        "tag": [rng.choice(COMMON) for _ in range(count)],
    }


def production_environment(database_url: str) -> dict[str, str]:
    """Settings for running the portal as in production (DEBUG off) against a benchmark database."""
    import tempfile
    from pathlib import Path

    return {
        "DATABASE_URL": database_url,
        "DEBUG": "0",
        "SECRET_KEY": "bench-only-secret-key-that-is-long-enough-0123456789abcdefghijkl",
        "ALLOWED_HOSTS": "testserver,127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "false",
        "CELERY_BROKER_URL": "memory://",
        "LOG_LEVEL": "WARNING",
        "STATIC_ROOT": str(Path(tempfile.gettempdir()) / "portal-bench-static"),
        "DJANGO_SETTINGS_MODULE": "portal.settings",
    }


def seed_portal(n_models: int, per_model: int) -> bool:
    """Load ``records(n_models, per_model)`` into the portal's database (Django set up).

    Does nothing when the database already holds exactly that catalogue;
    returns whether it seeded.
    """
    import time

    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from governance.models import License
    from zoo.models import CatalogModel, ModelVersion, SearchEntry, SearchWord
    from zoo.services.catalogue import name_words, search_fields

    if (
        CatalogModel.objects.count() == n_models
        and ModelVersion.objects.count() == n_models * per_model
    ):
        return False
    print(f"seeding {n_models:,} models x {per_model} versions ...", flush=True)
    licenses = {lic.spdx_id: lic for lic in License.objects.filter(spdx_id__in=LICENSES)}
    user, _ = get_user_model().objects.get_or_create(username="bench-steward")
    started = time.perf_counter()
    with transaction.atomic():
        ModelVersion.objects.all().delete()
        CatalogModel.objects.all().delete()
        pending: list[tuple[CatalogModel, ModelRecord]] = []

        def flush() -> None:
            created = CatalogModel.objects.bulk_create([m for m, _ in pending], batch_size=2000)
            versions = [
                ModelVersion(
                    model=model,
                    revision=v.revision,
                    label=v.label,
                    kind="base",
                    license=licenses[v.license],
                    source="hub",
                    total_size=v.total_size,
                    file_count=v.file_count,
                    created_by=user,
                    card_markdown=record.card if v is record.versions[-1] else "",
                )
                for model, (_, record) in zip(created, pending, strict=True)
                for v in record.versions
            ]
            ModelVersion.objects.bulk_create(versions, batch_size=5000)
            SearchEntry.objects.bulk_create(
                [
                    SearchEntry(model=model, **search_fields(model, record.card))
                    for model, (_, record) in zip(created, pending, strict=True)
                ],
                batch_size=2000,
            )
            words = {w for model in created for w in name_words(model)}
            SearchWord.objects.bulk_create(
                [SearchWord(word=w) for w in sorted(words)], ignore_conflicts=True
            )
            pending.clear()

        for record in records(n_models, per_model):
            model = CatalogModel(
                repo_id=record.repo_id,
                title=record.title,
                summary=record.summary,
                modality=record.modality,
                task=record.task,
                architecture="BertModel",
                parameter_count=record.parameter_count,
                domain_tags=record.tags,
                owner=user,
                status="available",
            )
            pending.append((model, record))
            if len(pending) >= 2000:
                flush()
        flush()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    from zoo.selectors.search import catalogue_changed

    catalogue_changed()  # written behind the services' back: forget cached search results
    print(f"seeded in {time.perf_counter() - started:.1f}s", flush=True)
    return True
