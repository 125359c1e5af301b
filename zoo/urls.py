from django.urls import path

from zoo import views

app_name = "zoo"
urlpatterns = [
    path("", views.catalogue, name="catalogue"),
    path("<str:namespace>/<str:name>/", views.model_detail, name="model"),
    path("<str:namespace>/<str:name>/edit/", views.model_edit, name="model_edit"),
    path("<str:namespace>/<str:name>/status/", views.model_status, name="model_status"),
    path(
        "<str:namespace>/<str:name>/versions/<str:label>/license/",
        views.version_license,
        name="version_license",
    ),
]

# Datasets live at /datasets/ under their own namespace ("datasets:…").
dataset_patterns = (
    [
        path("", views.dataset_list, name="list"),
        path("upload/", views.dataset_upload, name="upload"),
        path("upload/confirm/", views.dataset_confirm, name="confirm"),
        path("<int:pk>/", views.dataset_detail, name="detail"),
        path("<int:pk>/share/", views.dataset_share, name="share"),
        path("<int:pk>/unshare/", views.dataset_unshare, name="unshare"),
    ],
    "datasets",
)
