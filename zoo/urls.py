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
