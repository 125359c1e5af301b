from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.authtoken.views import obtain_auth_token
from rest_framework.routers import DefaultRouter

from governance import views as governance_views
from governance.api import ReuseRequestViewSet
from governance.urls import token_patterns
from jobs import views as jobs_views
from jobs.api import FineTuneViewSet, ImportViewSet, JobViewSet, ProbeViewSet
from jobs.urls import finetune_patterns, probe_patterns
from portal import views
from zoo.api import ArtifactViewSet, CatalogModelViewSet, DatasetViewSet, ModelVersionViewSet
from zoo.hub_urls import hub_patterns
from zoo.urls import dataset_patterns

router = DefaultRouter()
router.register("models", CatalogModelViewSet, basename="model")
router.register("versions", ModelVersionViewSet, basename="version")
router.register("artifacts", ArtifactViewSet, basename="artifact")
router.register("jobs", JobViewSet, basename="job")
router.register("imports", ImportViewSet, basename="import")
router.register("reuse-requests", ReuseRequestViewSet, basename="reuse-request")
router.register("datasets", DatasetViewSet, basename="dataset")
router.register("probes", ProbeViewSet, basename="probe")
router.register("finetunes", FineTuneViewSet, basename="finetune")

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    # The Hugging Face-compatible endpoint (HF_ENDPOINT=https://<host>/hf): token-only, JSON errors.
    path("hf/", include(hub_patterns)),
    path("account/tokens/", include(token_patterns)),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("jobs/", include("jobs.urls")),
    path("catalogue/import/", jobs_views.import_model, name="import"),
    path(
        "catalogue/<str:namespace>/<str:name>/request/",
        governance_views.request_new,
        name="reuse_request_new",
    ),
    path(
        "catalogue/<str:namespace>/<str:name>/request/preview/",
        governance_views.policy_preview,
        name="policy_preview",
    ),
    path(
        "catalogue/<str:namespace>/<str:name>/versions/<str:label>/risks/",
        governance_views.risk_add,
        name="risk_add",
    ),
    path("catalogue/", include("zoo.urls")),
    path("datasets/", include(dataset_patterns)),
    path("probes/", include(probe_patterns)),
    path("finetunes/", include(finetune_patterns)),
    path("governance/", include("governance.urls")),
    path("admin/", admin.site.urls),
    path("api/", include(router.urls)),
    path("api/auth/token/", obtain_auth_token, name="api-token"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]
