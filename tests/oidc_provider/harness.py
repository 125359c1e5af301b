"""The test OpenID provider as a pytest fixture, and a way to sign in through it without a browser.

``oidc_provider`` (session scope) writes a fresh RS256 key and a directory
file, starts ``python -m tests.oidc_provider.serve`` on a free loopback port
and waits for its discovery document. If it cannot start, the tests that use
it fail with the provider's log; they are never skipped.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ROOT = Path(__file__).resolve().parents[2]
CLIENT_ID = "model-zoo-portal"
CLIENT_SECRET = "portal-client-secret-for-tests-only"
DIRECTORY_PASSWORD = "directory-pass-1"
# Directory group -> portal role, as OIDC_ROLE_MAP would say it.
ROLE_MAP = {
    "zoo-ml": "ml-engineers",
    "zoo-stewards": "stewards",
    "zoo-legal": "legal",
    "zoo-admins": "staff",
}
START_TIMEOUT_S = 60


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def new_rsa_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@dataclass
class Provider:
    """A running provider: where it answers, its key, and its directory of people."""

    base: str
    folder: Path
    discovery: dict

    @property
    def issuer(self) -> str:
        return self.discovery["issuer"]

    @property
    def signing_pem(self) -> str:
        return (self.folder / "signing-key.pem").read_text()

    @property
    def kid(self) -> str:
        keys = requests.get(self.discovery["jwks_uri"], timeout=10).json()["keys"]
        return keys[0]["kid"]

    def _directory(self) -> dict:
        return json.loads((self.folder / "directory.json").read_text())

    def set_person(self, username: str, *, groups: list[str], email: str = "") -> None:
        """Add or change someone in the directory; the next token carries it (read per token)."""
        directory = self._directory()
        directory["people"][username] = {
            "password": DIRECTORY_PASSWORD,
            "email": email or f"{username}@example.com",
            "name": username.title(),
            "groups": groups,
        }
        tmp = self.folder / "directory.json.tmp"
        tmp.write_text(json.dumps(directory))
        tmp.replace(self.folder / "directory.json")

    def configure(self, settings) -> None:
        """Point the portal (pytest-django's ``settings``) at this provider."""
        settings.OIDC_ISSUER = self.issuer
        settings.OIDC_ENABLED = True
        settings.OIDC_OP_AUTHORIZATION_ENDPOINT = self.discovery["authorization_endpoint"]
        settings.OIDC_OP_TOKEN_ENDPOINT = self.discovery["token_endpoint"]
        settings.OIDC_OP_JWKS_ENDPOINT = self.discovery["jwks_uri"]
        settings.OIDC_OP_USER_ENDPOINT = self.discovery["userinfo_endpoint"]
        settings.OIDC_RP_CLIENT_ID = CLIENT_ID
        settings.OIDC_RP_CLIENT_SECRET = CLIENT_SECRET
        settings.OIDC_ROLE_MAP = dict(ROLE_MAP)
        settings.OIDC_GROUPS_CLAIM = "groups"
        settings.OIDC_PROVIDER_NAME = "Acme SSO"

    def authorize(self, authorize_url: str, username: str, browser=None) -> str:
        """Where the provider sends the browser back to, signing in at its form if it must.

        Pass a ``requests.Session`` as ``browser`` to keep the provider's session
        between calls (a second authorize then needs no form, like a real browser).
        """
        if browser is None:
            with requests.Session() as fresh:
                return self.authorize(authorize_url, username, fresh)
        answer = browser.get(authorize_url, allow_redirects=False, timeout=10)
        assert answer.status_code == 302, answer.text[:500]
        location = requests.compat.urljoin(self.base, answer.headers["Location"])
        if urlsplit(location).path != "/accounts/login/":
            return location
        form = browser.get(location, timeout=10)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
        next_url = parse_qs(urlsplit(location).query)["next"][0]
        answer = browser.post(
            location,
            data={
                "csrfmiddlewaretoken": token,
                "username": username,
                "password": DIRECTORY_PASSWORD,
                "next": next_url,
            },
            allow_redirects=False,
            timeout=10,
        )
        assert answer.status_code == 302, answer.text[:500]
        answer = browser.get(
            requests.compat.urljoin(self.base, answer.headers["Location"]),
            allow_redirects=False,
            timeout=10,
        )
        assert answer.status_code == 302, answer.text[:500]
        return answer.headers["Location"]


def _wait_until_up(process: subprocess.Popen, url: str, log: Path) -> dict:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            answer = requests.get(url, timeout=2)
            if answer.status_code == 200:
                return answer.json()
        except requests.RequestException:
            pass
        time.sleep(0.2)
    process.kill()
    process.wait()
    tail = log.read_text(errors="replace")[-3000:]
    pytest.fail(f"The test OpenID provider did not start ({url}):\n{tail}")


def start_provider(folder: Path, redirect_uris: list[str]) -> tuple[subprocess.Popen, Provider]:
    """Start the provider in a subprocess; fails the test (never skips) if it does not answer."""
    if not (folder / "signing-key.pem").exists():
        (folder / "signing-key.pem").write_text(new_rsa_pem())
    (folder / "directory.json").write_text(
        json.dumps(
            {
                "client": {
                    "id": CLIENT_ID,
                    "secret": CLIENT_SECRET,
                    "redirect_uris": redirect_uris,
                },
                "people": {},
            }
        )
    )
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = folder / "provider.log"
    env = {
        **os.environ,
        "OIDC_PROVIDER_DIR": str(folder),
        "OIDC_PROVIDER_PORT": str(port),
        "DJANGO_SETTINGS_MODULE": "tests.oidc_provider.settings",
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.oidc_provider.serve"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    discovery = _wait_until_up(process, f"{base}/o/.well-known/openid-configuration", log)
    return process, Provider(base=base, folder=folder, discovery=discovery)


def stop_provider(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def oidc_provider(tmp_path_factory, live_server):
    process, provider = start_provider(
        tmp_path_factory.mktemp("oidc-provider"),
        ["http://testserver/oidc/callback/", f"{live_server.url}/oidc/callback/"],
    )
    try:
        yield provider
    finally:
        stop_provider(process)
