"""Hand-made exam_results rows for tests, and a real S3 API server."""

from __future__ import annotations

import json
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

import sqlalchemy as sa


def question(question_id, correct=True, seconds=30, hints=0, topic="algebra", **extra) -> dict:
    element = {"question_id": question_id, "is_correct": correct, "topic": topic, **extra}
    if seconds is not None:
        element["time_spent_sec"] = seconds
    if hints is not None:
        element["used_hints"] = hints
    return element


def result(user_id, completed_at: datetime, questions, session_id=None, result_id=None) -> dict:
    return {
        "id": result_id or str(uuid.uuid4()),
        "session_id": session_id or f"s-{uuid.uuid4().hex[:12]}",
        "user_id": user_id,
        "result_json": questions if isinstance(questions, dict) else {"questions": questions},
        "completed_at": completed_at,
    }


def insert_results(engine, results: list[dict]) -> None:
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO exam_results (id, session_id, user_id, result_json, created_at, updated_at) "
                "VALUES (CAST(:id AS uuid), :session_id, :user_id, CAST(:result_json AS jsonb), "
                ":completed_at, :completed_at)"
            ),
            [{**r, "result_json": json.dumps(r["result_json"], ensure_ascii=False)} for r in results],
        )


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


@dataclass
class S3Server:
    """A real S3 API server (moto's) on 127.0.0.1 with one empty bucket, and a client for it."""

    server: object
    endpoint: str
    client: object
    bucket: str

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (now)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_s3_server(monkeypatch, bucket: str = "reports") -> S3Server:
    """Start the server on a free port; credentials and region for boto3 go in the environment
    through `monkeypatch` (moto accepts any)."""
    import boto3
    from botocore.config import Config
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, config=Config(signature_version="s3v4"))
    client.create_bucket(Bucket=bucket)
    return S3Server(server, endpoint, client, bucket)
