"""The object store resource: where the weekly reports go (S3, or a local directory by default)."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
from pydantic import Field

from seedtest_pipeline.reports.store import LocalStore, ObjectStore, S3Store
from seedtest_pipeline.warehouse import seedtest_home

# Every field left empty falls back to its variable, so one definition serves every environment.
ENVIRONMENT = {
    "bucket": "SEEDTEST_REPORTS_BUCKET",
    "prefix": "SEEDTEST_REPORTS_PREFIX",
    "region": "SEEDTEST_REPORTS_REGION",
    "endpoint_url": "SEEDTEST_REPORTS_ENDPOINT_URL",
    "local_dir": "SEEDTEST_REPORTS_DIR",
}


class ObjectStoreResource(dg.ConfigurableResource):
    """S3 when a bucket is set (field or $SEEDTEST_REPORTS_BUCKET), else a local directory."""

    bucket: str = Field("", description="S3 bucket; empty: $SEEDTEST_REPORTS_BUCKET, and if that is empty too, "
                                        "the local directory.")
    prefix: str = Field("", description="Key prefix before reports/... (e.g. 'staging'); "
                                        "empty: $SEEDTEST_REPORTS_PREFIX.")
    region: str = Field("", description="AWS region; empty: $SEEDTEST_REPORTS_REGION, then boto3's own "
                                        "(AWS_REGION, ~/.aws/config).")
    endpoint_url: str = Field("", description="S3-compatible server (MinIO, Ceph, ...); empty: "
                                              "$SEEDTEST_REPORTS_ENDPOINT_URL, then AWS_ENDPOINT_URL_S3 or AWS.")
    max_attempts: int = Field(5, description="Tries per upload, with botocore's exponential backoff and jitter.")
    step_retries: int = Field(2, ge=0, description="Retries of a report step whose only failures were uploads the "
                              "store may accept later (unreachable, 5xx, throttled), after botocore's own tries.")
    step_retry_delay_seconds: float = Field(60.0, ge=0, description="Base of the exponential backoff between those "
                                            "retries (full jitter).")
    local_dir: str = Field("", description="Local store folder; empty: $SEEDTEST_REPORTS_DIR, else "
                                           "$SEEDTEST_HOME/object-store (git-ignored .seedtest by default).")

    def retry_policy(self) -> dg.RetryPolicy:
        """How a step retries when the store was unreachable (seedtest_pipeline/reports: only then)."""
        return dg.RetryPolicy(max_retries=self.step_retries, delay=self.step_retry_delay_seconds,
                              backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.FULL)

    def setting(self, name: str) -> str:
        return getattr(self, name) or os.environ.get(ENVIRONMENT[name], "").strip()

    def store(self) -> ObjectStore:
        bucket = self.setting("bucket")
        if bucket:
            return S3Store(bucket=bucket, prefix=self.setting("prefix"), region=self.setting("region"),
                           endpoint_url=self.setting("endpoint_url"), max_attempts=self.max_attempts)
        local_dir = self.setting("local_dir")
        return LocalStore(root=Path(local_dir) if local_dir else seedtest_home() / "object-store",
                          prefix=self.setting("prefix"))
