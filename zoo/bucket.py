"""The S3-compatible bucket behind Django's storage API, with the few calls the portal adds.

django-storages does the reading and writing; this subclass adds what the
storage API has no word for: a server-side copy (so a verified temporary
object becomes the visible one without the bytes travelling again), a ranged
read that streams (the stock file object spools the whole object to disk
first), presigned download URLs, and a reachability check for /healthz.
"""

from __future__ import annotations

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.utils.http import content_disposition_header
from storages.backends.s3 import S3Storage
from storages.utils import clean_name

_MISSING = {"404", "NoSuchKey", "NotFound"}


class BucketStorage(S3Storage):
    """S3Storage whose multipart threshold and part size come from the portal's settings."""

    def __init__(self, **options) -> None:
        options.setdefault(
            "transfer_config",
            TransferConfig(
                multipart_threshold=settings.STORAGE_MULTIPART_THRESHOLD,
                multipart_chunksize=settings.STORAGE_MULTIPART_CHUNK,
                use_threads=True,
            ),
        )
        super().__init__(**options)

    def key(self, name: str) -> str:
        """The object key a storage name maps to (the URL's prefix in front)."""
        return self._normalize_name(clean_name(name))

    def copy_within(self, source: str, dest: str) -> None:
        """Copy one object to another name inside the bucket (multipart for large ones)."""
        self.bucket.copy(
            {"Bucket": self.bucket_name, "Key": self.key(source)},
            self.key(dest),
            Config=self.transfer_config,
        )

    def open_range(self, name: str, *, start: int = 0, length: int | None = None):
        """``length`` bytes from ``start`` (to the end when None), streamed as they are read."""
        arguments = {}
        if start or length is not None:
            end = "" if length is None else str(start + length - 1)
            arguments["Range"] = f"bytes={start}-{end}"
        try:
            return self.bucket.Object(self.key(name)).get(**arguments)["Body"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING:
                raise FileNotFoundError(name) from None
            raise

    def presigned_url(self, name: str, *, expire: int, filename: str) -> str:
        """A GET URL for the object, valid ``expire`` seconds, saved under ``filename``."""
        return self.bucket.meta.client.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self.bucket_name,
                "Key": self.key(name),
                "ResponseContentDisposition": content_disposition_header(
                    as_attachment=True, filename=filename
                ),
            },
            ExpiresIn=expire,
        )

    def etag(self, name: str) -> str:
        """The ETag the bucket reports (``<md5>-<parts>`` after a multipart upload)."""
        return self.bucket.Object(self.key(name)).e_tag.strip('"')

    def ping(self) -> str | None:
        """None when the bucket answers, else a short reason."""
        try:
            self.bucket.meta.client.head_bucket(Bucket=self.bucket_name)
        except (ClientError, BotoCoreError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else ""
            return f"{type(exc).__name__}: {first}".strip()
        return None
