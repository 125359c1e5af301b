from django.urls import path

from jobs import views

app_name = "jobs"
urlpatterns = [
    path("", views.job_list, name="list"),
    path("worker-check/", views.worker_check, name="worker_check"),
    path("<int:pk>/", views.job_detail, name="detail"),
    path("<int:pk>/cancel/", views.job_cancel_view, name="cancel"),
]

# Probes live at /probes/ under their own namespace ("probes:…").
probe_patterns = (
    [
        path("", views.probe_list, name="list"),
        path("new/", views.probe_new, name="new"),
        path("history/", views.probe_history_fragment, name="history"),
        path("<int:pk>/", views.probe_detail, name="detail"),
        path("<int:pk>/cancel/", views.probe_cancel, name="cancel"),
    ],
    "probes",
)

# Fine-tunes live at /finetunes/ under their own namespace ("finetunes:…").
finetune_patterns = (
    [
        path("", views.finetune_list, name="list"),
        path("new/", views.finetune_new, name="new"),
        path("<int:pk>/", views.finetune_detail, name="detail"),
        path("<int:pk>/cancel/", views.finetune_cancel, name="cancel"),
    ],
    "finetunes",
)
