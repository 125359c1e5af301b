from __future__ import annotations

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from governance.models import License
from jobs.models import Job

PASSWORD = "correct-horse-battery"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def roles(self, create, extracted, **kwargs):
        if extracted:
            self.groups.set(Group.objects.filter(name__in=extracted))
        self.save()


class JobFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Job

    kind = Job.Kind.WORKER_CHECK
    requested_by = factory.SubFactory(UserFactory)


# A card body with every section the seeded policy requires before publishing.
PUBLISHABLE_CARD = """# Encoder

## Intended use

Encoding support tickets.

## Limitations

English only.

## Training data

A year of tickets.

## Evaluation

Not evaluated yet.
"""


class CatalogModelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "zoo.CatalogModel"

    repo_id = factory.Sequence(lambda n: f"acme/model-{n}")
    title = factory.LazyAttribute(lambda m: m.repo_id.split("/")[1].replace("-", " ").title())
    summary = "A sentence encoder for support tickets."
    modality = "text"
    task = "feature-extraction"
    status = "available"


class ModelVersionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "zoo.ModelVersion"

    model = factory.SubFactory(CatalogModelFactory)
    revision = factory.Sequence(lambda n: f"{n:040x}")
    label = factory.Sequence(lambda n: f"v{n + 1}")
    license = factory.LazyFunction(lambda: License.objects.get(spdx_id="apache-2.0"))
    source = "folder"


class ArtifactFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "zoo.Artifact"

    version = factory.SubFactory(ModelVersionFactory)
    path = factory.Sequence(lambda n: f"file-{n}.safetensors")
    size = 1024
    sha256 = factory.Sequence(lambda n: f"{n:064x}")
    git_sha1 = factory.Sequence(lambda n: f"{n:040x}")
    format = "safetensors"
    scan_status = "clean"
    blob_name = factory.LazyAttribute(lambda a: f"blobs/sha256/{a.sha256}")


def catalogue_entry(repo_id, *, license="apache-2.0", card="", bias_notes="", **fields):
    """A published model with one version, indexed for search as an import would leave it."""
    from zoo.services.catalogue import catalog_model_refresh_search

    model = CatalogModelFactory(repo_id=repo_id, **fields)
    version = ModelVersionFactory(
        model=model,
        license=License.objects.get(spdx_id=license),
        card_markdown=card,
        bias_notes=bias_notes,
    )
    catalog_model_refresh_search(model=model)
    return version
