from django.urls import path

from jobs.views import (
    drift,
    finetunes,
    imports,
    jobs,
    operations,
    probes,
    release_checks,
    studies,
)

app_name = "jobs"
urlpatterns = [
    path("", jobs.job_list, name="list"),
    path("worker-check/", jobs.worker_check, name="worker_check"),
    path("status/", operations.status_page, name="status"),
    path("status.json", operations.status_json, name="status_json"),
    path("<int:pk>/", jobs.job_detail, name="detail"),
    path("<int:pk>/cancel/", jobs.job_cancel_view, name="cancel"),
    path(
        "release-checks/version/<int:pk>/",
        release_checks.release_check_new,
        name="release_check_new",
    ),
    path("drift/version/<int:pk>/", drift.drift_section, name="drift_section"),
    path("drift/version/<int:pk>/upload/", drift.drift_upload, name="drift_upload"),
]

# Probes live at /probes/ under their own namespace ("probes:…").
probe_patterns = (
    [
        path("", probes.probe_list, name="list"),
        path("new/", probes.probe_new, name="new"),
        path("history/", probes.probe_history_fragment, name="history"),
        path("<int:pk>/", probes.probe_detail, name="detail"),
        path("<int:pk>/cancel/", probes.probe_cancel, name="cancel"),
        path("<int:pk>/study/", studies.study_new, name="study_new"),
    ],
    "probes",
)

# Fine-tunes live at /finetunes/ under their own namespace ("finetunes:…").
finetune_patterns = (
    [
        path("", finetunes.finetune_list, name="list"),
        path("new/", finetunes.finetune_new, name="new"),
        path("<int:pk>/", finetunes.finetune_detail, name="detail"),
        path("<int:pk>/cancel/", finetunes.finetune_cancel, name="cancel"),
        path("studies/<int:pk>/", studies.study_detail, name="study"),
        path("studies/<int:pk>/choose/", studies.study_choose_view, name="study_choose"),
        path("studies/<int:pk>/retry/", studies.study_retry_view, name="study_retry"),
        path("studies/<int:pk>/close/", studies.study_close_view, name="study_close"),
    ],
    "finetunes",
)

# The import form sits under the catalogue, where stewards look for it ("import").
import_patterns = [
    path("", imports.import_model, name="import"),
    path("convert/<int:pk>/", imports.version_convert, name="version_convert"),
]
