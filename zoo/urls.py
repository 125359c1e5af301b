from django.urls import path

from zoo.hub import views as hub
from zoo.views import association_tests, cards, catalogue, datasets

app_name = "zoo"
urlpatterns = [
    path("", catalogue.catalogue, name="catalogue"),
    path(
        "association-tests/",
        association_tests.association_tests,
        name="association_tests",
    ),
    path(
        "association-tests/<int:pk>/",
        association_tests.association_test_edit,
        name="association_test_edit",
    ),
    path("<str:namespace>/<str:name>/", catalogue.model_detail, name="model"),
    path("<str:namespace>/<str:name>/edit/", catalogue.model_edit, name="model_edit"),
    path("<str:namespace>/<str:name>/status/", catalogue.model_status, name="model_status"),
    path(
        "<str:namespace>/<str:name>/versions/<str:label>/license/",
        catalogue.version_license,
        name="version_license",
    ),
    path(
        "<str:namespace>/<str:name>/versions/<str:label>/card/edit/",
        cards.card_edit,
        name="card_edit",
    ),
    path(
        "<str:namespace>/<str:name>/versions/<str:label>/card/history/",
        cards.card_history,
        name="card_history",
    ),
    path(
        "<str:namespace>/<str:name>/versions/<str:label>/card/diff/",
        cards.card_diff,
        name="card_diff",
    ),
    path(
        "<str:namespace>/<str:name>/versions/<str:label>/files/<int:pk>/waive/",
        catalogue.artifact_waive,
        name="artifact_waive",
    ),
    path("waivers/<int:pk>/revoke/", catalogue.waiver_revoke, name="waiver_revoke"),
    path(
        "<str:namespace>/<str:name>/versions/<str:label>/files/<path:path>",
        hub.browser_download,
        name="file_download",
    ),
]

# Datasets live at /datasets/ under their own namespace ("datasets:…").
dataset_patterns = (
    [
        path("", datasets.dataset_list, name="list"),
        path("upload/", datasets.dataset_upload, name="upload"),
        path("upload/confirm/", datasets.dataset_confirm, name="confirm"),
        path("<int:pk>/", datasets.dataset_detail, name="detail"),
        path(
            "<int:pk>/versions/<str:label>/thumbnails/<int:index>.png",
            datasets.dataset_thumbnail,
            name="thumbnail",
        ),
        path("<int:pk>/share/", datasets.dataset_share, name="share"),
        path("<int:pk>/unshare/", datasets.dataset_unshare, name="unshare"),
    ],
    "datasets",
)
