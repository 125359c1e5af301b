"""Start the test OpenID provider: ``python -m tests.oidc_provider.serve`` (settings from env).

Needs OIDC_PROVIDER_DIR (holds signing-key.pem, directory.json and the SQLite
file) and OIDC_PROVIDER_PORT. directory.json names the client and the people:
``{"client": {"id", "secret", "redirect_uris"}, "people": {username: {"password",
"email", "name", "groups"}}}``; it is read again at every sign-in and token.
"""

from __future__ import annotations

import os

import django
from django.core.management import call_command


def _register(directory: dict) -> None:
    from oauth2_provider.models import Application

    client = directory["client"]
    Application.objects.update_or_create(
        client_id=client["id"],
        defaults={
            "name": "Model Zoo Portal",
            "client_secret": client["secret"],
            "client_type": Application.CLIENT_CONFIDENTIAL,
            "authorization_grant_type": Application.GRANT_AUTHORIZATION_CODE,
            "redirect_uris": " ".join(client["redirect_uris"]),
            "algorithm": Application.RS256_ALGORITHM,
            "skip_authorization": True,
        },
    )


def main() -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.oidc_provider.settings"
    django.setup()
    from django.conf import settings
    from django.core.servers.basehttp import WSGIServer, run
    from django.core.wsgi import get_wsgi_application
    from jwcrypto import jwk

    from tests.oidc_provider.validator import directory

    # django-oauth-toolkit reads the key only when it signs; a bad one must stop the start.
    jwk.JWK.from_pem(settings.OAUTH2_PROVIDER["OIDC_RSA_PRIVATE_KEY"].encode())
    call_command("migrate", verbosity=0, interactive=False)
    _register(directory())
    port = int(os.environ["OIDC_PROVIDER_PORT"])
    run("127.0.0.1", port, get_wsgi_application(), threading=True, server_cls=WSGIServer)


if __name__ == "__main__":
    main()
