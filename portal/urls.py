"""Every route: each app's pages from its own urls.py, the API router, the hub, the admin."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import DefaultRouter

from governance import urls as governance_urls
from governance.api import ApiTokenView, IncidentViewSet, ReuseRequestViewSet
from governance.views import core as governance_views
from governance.views import sso as sso_views
from jobs import urls as jobs_urls
from jobs.api.drift import VersionDriftView
from jobs.api.finetunes import FineTuneViewSet
from jobs.api.imports import ImportViewSet
from jobs.api.jobs import JobViewSet
from jobs.api.probes import ProbeViewSet
from jobs.api.release_checks import VersionReleaseChecksView
from jobs.api.studies import StudyViewSet
from portal import health, metrics, views
from zoo import urls as zoo_urls
from zoo.api.catalogue import ArtifactViewSet, CatalogModelViewSet, ModelVersionViewSet
from zoo.api.datasets import DatasetViewSet
from zoo.hub.urls import hub_patterns

router = DefaultRouter()
router.register("models", CatalogModelViewSet, basename="model")
router.register("versions", ModelVersionViewSet, basename="version")
router.register("artifacts", ArtifactViewSet, basename="artifact")
router.register("jobs", JobViewSet, basename="job")
router.register("imports", ImportViewSet, basename="import")
router.register("reuse-requests", ReuseRequestViewSet, basename="reuse-request")
router.register("incidents", IncidentViewSet, basename="incident")
router.register("datasets", DatasetViewSet, basename="dataset")
router.register("probes", ProbeViewSet, basename="probe")
router.register("finetunes", FineTuneViewSet, basename="finetune")
router.register("studies", StudyViewSet, basename="study")

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", health.healthz, name="healthz"),
    # Pages without the base template (admin, DRF's) still get an icon, not a 404.
    path("favicon.ico", views.favicon),
    path("metrics", metrics.metrics, name="metrics"),
    # The Hugging Face-compatible endpoint (HF_ENDPOINT=https://<host>/hf): token-only, JSON errors.
    path("hf/", include(hub_patterns)),
    path("account/tokens/", include(governance_urls.token_patterns)),
    path("notifications/", include(governance_urls.notification_patterns)),
    path("accounts/login/", governance_views.SignInView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    # Single sign-on (OpenID Connect); the names are the ones mozilla-django-oidc reverses.
    path("oidc/authenticate/", sso_views.SsoStartView.as_view(), name="oidc_authentication_init"),
    path(
        "oidc/callback/",
        sso_views.SsoCallbackView.as_view(),
        name="oidc_authentication_callback",
    ),
    path("jobs/", include("jobs.urls")),
    path("catalogue/import/", include(jobs_urls.import_patterns)),
    path("catalogue/", include(governance_urls.catalogue_patterns)),
    path("catalogue/", include("zoo.urls")),
    path("datasets/", include(zoo_urls.dataset_patterns)),
    path("probes/", include(jobs_urls.probe_patterns)),
    path("finetunes/", include(jobs_urls.finetune_patterns)),
    path("governance/", include("governance.urls")),
    path("admin/", admin.site.urls),
    path("api/versions/<str:pk>/drift/", VersionDriftView.as_view(), name="api-version-drift"),
    path(
        "api/versions/<str:pk>/release-checks/",
        VersionReleaseChecksView.as_view(),
        name="api-version-release-checks",
    ),
    path("api/", include(router.urls)),
    path("api/auth/token/", ApiTokenView.as_view(), name="api-token"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
]
