"""Routes of the Hugging Face-compatible endpoint, mounted at /hf/ (namespace "hub").

Paths carry no trailing slashes, as the client builds them; the last pattern answers
every other path under /hf/ with a JSON 404, so nothing here is redirected to a slash.
"""

from django.urls import path, re_path

from zoo.hub import views as hub

_REPO = r"(?P<namespace>[^/]+)/(?P<name>[^/]+)"

hub_patterns = (
    [
        path("", hub.index, name="index"),
        path("api/whoami-v2", hub.whoami, name="whoami"),
        re_path(rf"^api/models/{_REPO}$", hub.model_info, name="model_info"),
        # A revision may arrive as refs/heads/main: %2F is decoded before routing.
        re_path(
            rf"^api/models/{_REPO}/revision/(?P<revision>.+)$",
            hub.model_info,
            name="model_info_revision",
        ),
        re_path(
            rf"^api/models/{_REPO}/tree/(?P<revision>[^/]+)(?:/(?P<subpath>.*))?$",
            hub.tree,
            name="tree",
        ),
        re_path(rf"^api/models/{_REPO}/refs$", hub.refs, name="refs"),
        re_path(
            rf"^{_REPO}/resolve/(?P<revision>[^/]+)/(?P<path>.+)$", hub.resolve, name="resolve"
        ),
        re_path(r"^(?:api/)?(?P<kind>datasets|spaces)/(?P<rest>.*)$", hub.not_a_model),
        re_path(r"^(?P<rest>.*)$", hub.unknown_route),
    ],
    "hub",
)
