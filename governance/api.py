"""REST endpoints for reuse requests and reviews: thin, over the same services."""

from __future__ import annotations

import django_filters
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotAuthenticated
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from governance import selectors
from governance.authentication import ApiTokenAuthentication
from governance.models import (
    Incident,
    IncidentCategory,
    IncidentStep,
    RecallEffect,
    ReuseRequest,
    Review,
    Sensitivity,
    UseType,
)
from governance.services import incidents, policy, reuse, tokens
from governance.services.signin import client_address
from portal.api import object_id
from portal.errors import NotFound
from zoo.selectors.catalogue import versions_visible_to


class ReviewSerializer(serializers.ModelSerializer):
    reviewer = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Review
        fields = ["role", "reviewer", "decision", "comment", "round", "created_at"]
        read_only_fields = fields


class ReuseRequestSerializer(serializers.ModelSerializer):
    requester = serializers.SlugRelatedField(slug_field="username", read_only=True)
    repo_id = serializers.CharField(source="version.model.repo_id", read_only=True)
    reviews = ReviewSerializer(many=True, read_only=True)

    class Meta:
        model = ReuseRequest
        fields = [
            "id", "requester", "version", "repo_id", "intended_use", "use_type",
            "business_unit", "data_sensitivity", "justification", "duration_days", "status",
            "required_roles", "policy_explanation", "reopened", "reopen_reason", "expires_at",
            "decided_at", "created_at", "reviews",
        ]  # fmt: skip
        read_only_fields = fields


class ReuseRequestInput(serializers.Serializer):
    version = serializers.IntegerField()
    intended_use = serializers.CharField(max_length=2000)
    use_type = serializers.ChoiceField(choices=UseType.choices)
    business_unit = serializers.CharField(max_length=120)
    data_sensitivity = serializers.ChoiceField(choices=Sensitivity.choices)
    justification = serializers.CharField(max_length=4000)
    duration_days = serializers.IntegerField(min_value=1, max_value=730, default=90)


class ReviewInput(serializers.Serializer):
    role = serializers.ChoiceField(choices=["legal", "security", "compliance"])
    decision = serializers.ChoiceField(choices=Review.Decision.choices)
    comment = serializers.CharField(required=False, allow_blank=True, max_length=4000, default="")


class ReasonInput(serializers.Serializer):
    reason = serializers.CharField(max_length=1000)


class JustificationInput(serializers.Serializer):
    justification = serializers.CharField(max_length=4000)


class PolicyPreviewSerializer(serializers.Serializer):
    refused = serializers.BooleanField()
    roles = serializers.ListField(child=serializers.CharField())
    explanation = serializers.CharField()


class ReuseRequestFilter(django_filters.FilterSet):
    mine = django_filters.BooleanFilter(method="filter_mine")

    class Meta:
        model = ReuseRequest
        fields = ["status", "use_type", "version"]

    def filter_mine(self, qs, name, value):
        return qs.filter(requester=self.request.user) if value else qs


def _visible_version(user, pk: int):
    version = versions_visible_to(user).select_related("model", "license").filter(pk=pk).first()
    if version is None:
        raise NotFound("No such model version.")
    return version


class ReuseRequestViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Reuse requests you made (reviewers, stewards and staff: all of them)."""

    serializer_class = ReuseRequestSerializer
    filterset_class = ReuseRequestFilter

    def get_queryset(self):
        return selectors.requests_visible_to(self.request.user).prefetch_related(
            "reviews__reviewer"
        )

    def get_object(self) -> ReuseRequest:
        return selectors.get_request_for_user(self.request.user, object_id(self.kwargs["pk"]))

    def _answer(self, item: ReuseRequest, code: int = status.HTTP_200_OK) -> Response:
        return Response(
            ReuseRequestSerializer(self.get_queryset().get(pk=item.pk)).data, status=code
        )

    @extend_schema(request=ReuseRequestInput, responses={201: ReuseRequestSerializer})
    def create(self, request: Request) -> Response:
        data = ReuseRequestInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        values["version"] = _visible_version(request.user, values["version"])
        created = reuse.reuse_request_submit(requester=request.user, **values)
        return self._answer(created, status.HTTP_201_CREATED)

    @extend_schema(request=ReviewInput, responses=ReuseRequestSerializer)
    @action(detail=True, methods=["post"])
    def review(self, request: Request, pk: str) -> Response:
        data = ReviewInput(data=request.data)
        data.is_valid(raise_exception=True)
        reviewed = reuse.review_submit(
            request=self.get_object(), reviewer=request.user, **data.validated_data
        )
        return self._answer(reviewed)

    @extend_schema(request=None, responses=ReuseRequestSerializer)
    @action(detail=True, methods=["post"])
    def withdraw(self, request: Request, pk: str) -> Response:
        return self._answer(
            reuse.reuse_request_withdraw(request=self.get_object(), requester=request.user)
        )

    @extend_schema(request=JustificationInput, responses=ReuseRequestSerializer)
    @action(detail=True, methods=["post"])
    def resubmit(self, request: Request, pk: str) -> Response:
        data = JustificationInput(data=request.data)
        data.is_valid(raise_exception=True)
        return self._answer(
            reuse.reuse_request_resubmit(
                request=self.get_object(), requester=request.user, **data.validated_data
            )
        )

    @extend_schema(request=ReasonInput, responses=ReuseRequestSerializer)
    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, pk: str) -> Response:
        data = ReasonInput(data=request.data)
        data.is_valid(raise_exception=True)
        return self._answer(
            reuse.reuse_request_revoke(
                request=self.get_object(), actor=request.user, **data.validated_data
            )
        )

    @extend_schema(responses=ReuseRequestSerializer(many=True), filters=False)
    @action(detail=False, methods=["get"])
    def queue(self, request: Request) -> Response:
        """Requests waiting for a review role you hold, oldest first, a page at a time."""
        items = [reuse for reuse, _roles in selectors.review_queue(request.user)]
        page = self.paginate_queryset(items)
        return self.get_paginated_response(ReuseRequestSerializer(page, many=True).data)

    @extend_schema(
        parameters=[ReuseRequestInput(partial=True)],
        request=None,
        responses=PolicyPreviewSerializer,
    )
    @action(detail=False, methods=["get"], url_path="policy-preview")
    def policy_preview(self, request: Request) -> Response:
        """What the policy would say of a request, before it is made."""
        data = ReuseRequestInput(data=request.query_params, partial=True)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        for needed in ("version", "use_type", "data_sensitivity"):
            if needed not in values:
                raise serializers.ValidationError({needed: ["This field is required."]})
        outcome = policy.policy_evaluate(
            version=_visible_version(request.user, values["version"]),
            use_type=values["use_type"],
            sensitivity=values["data_sensitivity"],
        )
        return Response(
            {"refused": outcome.refused, "roles": outcome.roles, "explanation": outcome.explanation}
        )


class IncidentStepSerializer(serializers.ModelSerializer):
    done_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = IncidentStep
        fields = ["step", "note", "done_by", "done_at"]
        read_only_fields = fields


class RecallEffectSerializer(serializers.ModelSerializer):
    repo_id = serializers.CharField(source="version.model.repo_id", read_only=True)
    label = serializers.CharField(source="version.label", read_only=True)

    class Meta:
        model = RecallEffect
        fields = ["version", "repo_id", "label", "depth", "blocked", "restored_at"]
        read_only_fields = fields


class IncidentSerializer(serializers.ModelSerializer):
    opened_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    repo_id = serializers.CharField(source="version.model.repo_id", read_only=True)
    recall_active = serializers.BooleanField(read_only=True)
    steps = IncidentStepSerializer(many=True, read_only=True)
    effects = RecallEffectSerializer(many=True, read_only=True)

    class Meta:
        model = Incident
        fields = [
            "id", "version", "repo_id", "category", "severity", "title", "description",
            "status", "opened_by", "opened_at", "recalled_at", "recall_lifted_at",
            "recall_active", "closed_at", "steps", "effects",
        ]  # fmt: skip
        read_only_fields = fields


class IncidentInput(serializers.Serializer):
    version = serializers.IntegerField()
    category = serializers.ChoiceField(choices=IncidentCategory.choices)
    severity = serializers.ChoiceField(choices=Incident.Severity.choices)
    title = serializers.CharField(max_length=200)
    description = serializers.CharField(max_length=10000)
    recall = serializers.BooleanField(default=False)


class IncidentStepInput(serializers.Serializer):
    step = serializers.ChoiceField(choices=IncidentStep.Step.choices)
    note = serializers.CharField(max_length=5000)


class IncidentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Incidents on versions and their recalls (stewards, reviewers and staff act on them;
    people who made, own or use a touched version see them)."""

    serializer_class = IncidentSerializer
    filterset_fields = ["status", "category", "severity", "version"]

    def get_queryset(self):
        return (
            selectors.incidents_visible_to(self.request.user)
            .prefetch_related("steps__done_by", "effects__version__model")
            .order_by("-opened_at", "-id")
        )

    def get_object(self) -> Incident:
        return selectors.get_incident_for_user(self.request.user, object_id(self.kwargs["pk"]))

    def _answer(self, item: Incident, code: int = status.HTTP_200_OK) -> Response:
        return Response(IncidentSerializer(self.get_queryset().get(pk=item.pk)).data, status=code)

    @extend_schema(request=IncidentInput, responses={201: IncidentSerializer})
    def create(self, request: Request) -> Response:
        data = IncidentInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        values["version"] = _visible_version(request.user, values["version"])
        opened = incidents.incident_open(actor=request.user, **values)
        return self._answer(opened, status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=IncidentSerializer)
    @action(detail=True, methods=["post"])
    def recall(self, request: Request, pk: str) -> Response:
        incident = self.get_object()
        incidents.incident_recall(incident=incident, actor=request.user)
        return self._answer(incident)

    @extend_schema(request=ReasonInput, responses=IncidentSerializer)
    @action(detail=True, methods=["post"])
    def lift(self, request: Request, pk: str) -> Response:
        data = ReasonInput(data=request.data)
        data.is_valid(raise_exception=True)
        incident = self.get_object()
        incidents.incident_recall_lift(
            incident=incident, actor=request.user, reason=data.validated_data["reason"]
        )
        return self._answer(incident)

    @extend_schema(request=IncidentStepInput, responses=IncidentSerializer)
    @action(detail=True, methods=["post"])
    def steps(self, request: Request, pk: str) -> Response:
        data = IncidentStepInput(data=request.data)
        data.is_valid(raise_exception=True)
        incident = self.get_object()
        incidents.incident_step_record(incident=incident, actor=request.user, **data.validated_data)
        return self._answer(incident)


class TokenRequest(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=4096, trim_whitespace=False)


class IssuedToken(serializers.Serializer):
    token = serializers.CharField(help_text="The secret, shown only in this answer.")
    name = serializers.CharField()
    expires_at = serializers.DateTimeField()


class ApiTokenView(APIView):
    """POST: sign in with a password (throttled like the sign-in page) for an API token.

    DELETE: revoke the API token this request is authenticated with.
    """

    authentication_classes = [ApiTokenAuthentication]
    permission_classes = [AllowAny]

    @extend_schema(
        request=TokenRequest,
        responses={201: IssuedToken},
        auth=[],
        summary="Get an API token (zoo_api_…) for a username and password",
    )
    def post(self, request: Request) -> Response:
        data = TokenRequest(data=request.data)
        data.is_valid(raise_exception=True)
        token, plaintext = tokens.api_token_issue(
            username=data.validated_data["username"],
            password=data.validated_data["password"],
            client=client_address(request),
            request=request,
        )
        body = IssuedToken({"token": plaintext, "name": token.name, "expires_at": token.expires_at})
        return Response(
            body.data, status=status.HTTP_201_CREATED, headers={"Cache-Control": "no-store"}
        )

    @extend_schema(request=None, responses={204: None}, summary="Revoke the API token sent")
    def delete(self, request: Request) -> Response:
        if not isinstance(request.auth, str):
            raise NotAuthenticated(
                "Send the API token to revoke as `Authorization: Token zoo_api_…`."
            )
        token = selectors.access_token_for(request.auth)
        tokens.access_token_revoke(token=token, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
