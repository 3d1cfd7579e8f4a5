"""Where reports are stored: an S3 bucket (boto3) or a local directory, under SPEC §6 keys.

Keys are `reports/{user_id}/{week_start}/report.{pdf|html}` with the user_id percent-encoded as
one key segment (RFC 3986: everything but letters, digits and `-._` is encoded as UTF-8 %XX), so
a `/`, `..`, a space or Hangul in a user_id can never add a level or leave the reports folder:
    "u-1" -> "u-1";  "a/b" -> "a%2Fb";  ".." -> "%2E%2E";  "김 민" -> "%EA%B9%80%20%EB%AF%BC"
A segment made only of dots has its dots encoded too ("." and ".." name folders on a disk), and
`~` is always encoded, because it marks the one other form: an encoded segment longer than
MAX_SEGMENT_CHARS (a path component may not exceed 255 bytes, an S3 key 1,024) keeps its first
characters and ends in `~` plus 32 hex digits of the user_id's sha256. Ordinary ids (uuids,
letters, digits, `-`, `_`, `.`) are their own segment, as the platform knows them.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from datetime import date
from hashlib import sha256
from pathlib import Path
from typing import Protocol
from urllib.parse import quote

MAX_SEGMENT_CHARS = 200
HASHED_PREFIX_CHARS = 160
CONTENT_TYPES = {"pdf": "application/pdf", "html": "text/html; charset=utf-8", "png": "image/png"}
REPORT_FORMATS = ("pdf", "html")
# S3 answers that mean "not now" rather than "no" (besides any 5xx and 429).
S3_BUSY_CODES = frozenset({"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "RequestLimitExceeded"})


def user_segment(user_id: str) -> str:
    """The user_id as one safe, reversible key segment (see the module docstring)."""
    if not user_id:
        raise ValueError("user_id is empty: no report key can name it")
    segment = quote(user_id, safe="").replace("~", "%7E")
    if set(segment) == {"."}:
        segment = "%2E" * len(segment)
    if len(segment) > MAX_SEGMENT_CHARS:
        head = segment[:HASHED_PREFIX_CHARS]
        if "%" in head[-2:]:  # do not cut an %XX escape in half
            head = head[: head.rindex("%")]
        segment = f"{head}~{sha256(user_id.encode('utf-8')).hexdigest()[:32]}"
    return segment


def report_key(user_id: str, week_start: date, report_format: str) -> str:
    if report_format not in CONTENT_TYPES:
        raise ValueError(f"unknown report format {report_format!r}")
    return f"reports/{user_segment(user_id)}/{week_start.isoformat()}/report.{report_format}"


def normalise_prefix(prefix: str) -> str:
    """'' or 'a/b/' (a key prefix of whole segments, none of them '.' or '..')."""
    parts = [p for p in prefix.strip().split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise ValueError(f"object store prefix {prefix!r}: '.' and '..' are not allowed")
    return "".join(f"{p}/" for p in parts)


class ObjectStore(Protocol):
    def put(self, key: str, body: bytes, content_type: str) -> str:
        """Store body under key (replacing it) and return the object's URL; raise if it failed."""

    def get(self, key: str) -> bytes:
        """The object's bytes; raise if it is missing or cannot be read."""

    def delete(self, key: str) -> None:
        """Remove the object (nothing to do when it is missing); raise if the store refused."""

    def retryable(self, error: Exception) -> bool:
        """Whether a failed call may succeed when tried again later (a server busy, down or
        unreachable), rather than never (refused credentials, a missing bucket, a blocked path)."""

    def describe(self) -> str:
        """Where the objects go, without secrets."""


@dataclass
class LocalStore:
    """A directory; objects are files at root/prefix/key, written atomically (temp file + rename)."""

    root: Path
    prefix: str = ""

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()
        self.prefix = normalise_prefix(self.prefix)

    def path_of(self, key: str) -> Path:
        # Lexical normalisation (no file system calls per object): report keys never hold `..`,
        # and this refuses any other key that would climb out of the folder or name it.
        path = os.path.normpath(os.path.join(self.root, self.prefix + key))
        if not path.startswith(str(self.root) + os.sep):
            raise ValueError(f"object key {key!r} leaves the store folder {self.root}")
        return Path(path)

    def put(self, key: str, body: bytes, content_type: str) -> str:
        path = self.path_of(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # A reader (or a crash) never sees half a file: write beside it, then rename over it.
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(body)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return path.as_uri()

    def get(self, key: str) -> bytes:
        return self.path_of(key).read_bytes()

    def delete(self, key: str) -> None:
        self.path_of(key).unlink(missing_ok=True)

    def retryable(self, error: Exception) -> bool:
        return False  # a local disk that refused a write (a file in the way, no permission) refuses again

    def describe(self) -> str:
        return f"local directory {self.root / self.prefix}"


@dataclass
class S3Store:
    """An S3 bucket (or an S3-compatible server at endpoint_url) through boto3.

    Credentials come from boto3's standard chain (environment, shared files, SSO, the instance or
    pod role); region and endpoint fall back to AWS_REGION / AWS_ENDPOINT_URL_S3 and the config
    files when empty. Requests are signed with SigV4. Transient errors are retried by botocore's
    standard mode (exponential backoff with jitter, max_attempts tries in all).
    """

    bucket: str
    prefix: str = ""
    region: str = ""
    endpoint_url: str = ""
    max_attempts: int = 5
    _client: object = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.bucket:
            raise ValueError("S3 store: bucket is empty (set SEEDTEST_REPORTS_BUCKET)")
        self.prefix = normalise_prefix(self.prefix)

    @property
    def client(self):
        if self._client is None:
            import boto3
            from botocore.config import Config

            config = Config(signature_version="s3v4", retries={"mode": "standard", "max_attempts": self.max_attempts})
            self._client = boto3.session.Session().client(
                "s3", region_name=self.region or None, endpoint_url=self.endpoint_url or None, config=config
            )
        return self._client

    def __getstate__(self) -> dict:
        # A boto3 client cannot be pickled: a store sent to a worker process builds its own.
        return {**self.__dict__, "_client": None}

    def put(self, key: str, body: bytes, content_type: str) -> str:
        full_key = self.prefix + key
        self.client.put_object(Bucket=self.bucket, Key=full_key, Body=body, ContentType=content_type)
        return f"s3://{self.bucket}/{full_key}"

    def get(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"].read()

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.prefix + key)

    def retryable(self, error: Exception) -> bool:
        from botocore.exceptions import ClientError, HTTPClientError
        from botocore.exceptions import ConnectionError as S3ConnectionError

        if isinstance(error, ClientError):
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
            return status >= 500 or status == 429 or error.response.get("Error", {}).get("Code") in S3_BUSY_CODES
        # Connection refused or reset, DNS, timeouts: the endpoint was not reached or did not answer.
        return isinstance(error, (S3ConnectionError, HTTPClientError))

    def describe(self) -> str:
        where = f" at {self.endpoint_url}" if self.endpoint_url else ""
        return f"s3://{self.bucket}/{self.prefix}{where}"
