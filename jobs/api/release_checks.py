"""REST endpoint of a version's release checks: read the verdicts, launch one.

``GET /api/versions/<id>/release-checks/`` lists every check of the version,
newest first, to whoever may see the version (as its page shows them);
``result`` (which may quote training or test rows) only to those who may run
the version's checks. ``POST`` with ``kind`` and ``params`` queues one through
the same service as the page's forms; drift checks start from an uploaded batch
(``/api/versions/<id>/drift/``).
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from jobs.services.release_checks import may_launch_release_check, release_check_launch
from portal.api import object_id
from portal.errors import NotFound
from zoo.models import ReleaseCheck
from zoo.selectors.catalogue import versions_visible_to


class ReleaseCheckSerializer(serializers.ModelSerializer):
    """One check: what it measured, against which threshold, and its verdict."""

    requested_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    kind_name = serializers.CharField(source="get_kind_display", read_only=True)
    measure_name = serializers.CharField(read_only=True)
    job = serializers.IntegerField(source="job_id", read_only=True, allow_null=True)
    result = serializers.SerializerMethodField()

    class Meta:
        model = ReleaseCheck
        fields = [
            "id",
            "version",
            "kind",
            "kind_name",
            "status",
            "params",
            "threshold",
            "measure_name",
            "measure",
            "passed",
            "summary",
            "error",
            "seconds",
            "job",
            "requested_by",
            "created_at",
            "started_at",
            "finished_at",
            "result",
        ]
        read_only_fields = fields

    def get_result(self, check: ReleaseCheck) -> dict | None:
        """The check's figures; null for those who may not run the version's checks."""
        user = self.context["request"].user
        if not may_launch_release_check(user, check.version, check.kind):
            return None
        return {k: v for k, v in (check.result or {}).items() if k != "card_markdown"}


class ReleaseCheckInput(serializers.Serializer):
    kind = serializers.ChoiceField(choices=ReleaseCheck.Kind.choices)
    params = serializers.DictField(
        required=False,
        default=dict,
        help_text="The kind's settings, as the version page's form names them "
        "(e.g. target, target_value for calibration; other_version, and batch to run both "
        "versions on a drift batch's production inputs instead of the test split, for "
        "inconsistency).",
    )


class VersionReleaseChecksView(APIView):
    """A version's release checks; launch one."""

    serializer_class = ReleaseCheckSerializer

    def _version(self, request: Request, pk):
        version = (
            versions_visible_to(request.user).select_related("model").filter(pk=object_id(pk))
        ).first()
        if version is None:
            raise NotFound("No such model version.")
        return version

    @extend_schema(responses=ReleaseCheckSerializer(many=True))
    def get(self, request: Request, pk: str) -> Response:
        version = self._version(request, pk)
        checks = (
            ReleaseCheck.objects.filter(version=version)
            .select_related("requested_by", "version__model")
            .order_by("-created_at", "-id")
        )
        return Response(
            ReleaseCheckSerializer(checks, many=True, context={"request": request}).data
        )

    @extend_schema(request=ReleaseCheckInput, responses={201: ReleaseCheckSerializer})
    def post(self, request: Request, pk: str) -> Response:
        version = self._version(request, pk)
        data = ReleaseCheckInput(data=request.data)
        data.is_valid(raise_exception=True)
        check = release_check_launch(
            actor=request.user,
            version=version,
            kind=data.validated_data["kind"],
            params=data.validated_data["params"],
        )
        fresh = ReleaseCheck.objects.select_related("requested_by", "version__model").get(
            pk=check.pk
        )
        return Response(
            ReleaseCheckSerializer(fresh, context={"request": request}).data,
            status=status.HTTP_201_CREATED,
        )
