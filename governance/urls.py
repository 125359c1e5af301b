from django.urls import path

from governance.views import core as views
from governance.views import lifecycle
from governance.views import notifications as notification_views

app_name = "governance"
urlpatterns = [
    path("audit/", views.audit_log, name="audit"),
    path("requests/", views.request_list, name="requests"),
    path("requests/<int:pk>/", views.request_detail, name="request"),
    path("requests/<int:pk>/<str:action>/", views.request_action, name="request_action"),
    path("reviews/", views.review_queue, name="reviews"),
    path("risks/<int:pk>/status/", views.risk_status, name="risk_status"),
    path("access/", lifecycle.my_access, name="my_access"),
    path("incidents/", lifecycle.incident_list, name="incidents"),
    path("incidents/<int:pk>/", lifecycle.incident_detail, name="incident"),
    path("incidents/<int:pk>/<str:action>/", lifecycle.incident_action, name="incident_action"),
    path("stewards/", lifecycle.steward_queue, name="steward_queue"),
    path("compliance/", lifecycle.compliance, name="compliance"),
]

# Personal access tokens live at /account/tokens/ under their own namespace ("tokens:…").
token_patterns = (
    [
        path("", views.token_list, name="list"),
        path("<int:pk>/revoke/", views.token_revoke, name="revoke"),
    ],
    "tokens",
)

# Pages that hang off a catalogue model (/catalogue/<ns>/<name>/…): requesting reuse and
# recording risks. Mounted next to the catalogue's own routes, with their names kept.
catalogue_patterns = [
    path("<str:namespace>/<str:name>/request/", views.request_new, name="reuse_request_new"),
    path(
        "<str:namespace>/<str:name>/request/preview/",
        views.policy_preview,
        name="policy_preview",
    ),
    path(
        "<str:namespace>/<str:name>/versions/<str:label>/risks/",
        views.risk_add,
        name="risk_add",
    ),
    path(
        "<str:namespace>/<str:name>/versions/<str:label>/incident/",
        lifecycle.incident_new,
        name="incident_new",
    ),
    path(
        "<str:namespace>/<str:name>/versions/<str:label>/attest/",
        lifecycle.version_attest,
        name="version_attest",
    ),
]

# The inbox, its settings and the webhook endpoints live at /notifications/ under their own
# namespace ("notifications:…").
notification_patterns = (
    [
        path("", notification_views.inbox, name="inbox"),
        path("<int:pk>/read/", notification_views.notification_read, name="read"),
        path("read-all/", notification_views.notifications_read_all, name="read_all"),
        path("settings/", notification_views.notification_settings, name="settings"),
        path("webhooks/", notification_views.webhook_list, name="webhooks"),
        path("webhooks/<int:pk>/", notification_views.webhook_detail, name="webhook"),
        path(
            "webhooks/<int:pk>/deactivate/",
            notification_views.webhook_deactivate,
            name="webhook_deactivate",
        ),
    ],
    "notifications",
)
