"""The provider's people and claims (e-mail, name, ``groups``), read from the directory file."""

from __future__ import annotations

import json
import os
from pathlib import Path

from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import User
from django.utils.crypto import constant_time_compare
from oauth2_provider.oauth2_validators import OAuth2Validator


def directory() -> dict:
    return json.loads((Path(os.environ["OIDC_PROVIDER_DIR"]) / "directory.json").read_text())


class DirectoryValidator(OAuth2Validator):
    oidc_claim_scope = {**OAuth2Validator.oidc_claim_scope, "groups": "openid"}

    # prompt=none (the portal's session refresh): the authorize view already requires a
    # signed-in provider session and the client skips consent, so silence is allowed.
    def validate_silent_login(self, request):
        return True

    def validate_silent_authorization(self, request):
        return True

    def get_additional_claims(self, request):
        person = directory()["people"].get(request.user.username, {})
        return {
            "preferred_username": request.user.username,
            "email": person.get("email", ""),
            "email_verified": True,
            "name": person.get("name", ""),
            "groups": person.get("groups", []),
        }


class DirectoryBackend(ModelBackend):
    """Passwords from the directory file, so people added while the provider runs can sign in."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        person = directory()["people"].get(username or "")
        if person is None or not constant_time_compare(person["password"], password or ""):
            return None
        return User.objects.get_or_create(username=username)[0]
