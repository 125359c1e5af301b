"""A real OpenID provider for the single sign-on tests (django-oauth-toolkit, OIDC on).

A second, separate Django project: ``serve.py`` migrates its own SQLite file,
registers the portal as a confidential client that must use PKCE, and serves
the provider on a loopback port. The people it knows, and the groups each
claims, are read from a JSON file on every token, so a test can change them
between two sign-ins.
"""
