"""The command line as a user runs it: secrets never reach any output, and a bad database URL or an
unreachable server is one line that says what is wrong (exit 2), never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
COMMAND = str(Path(sys.executable).parent / "seedtest-pipeline")
PASSWORD = "Pw-s3cret-42"


def run(args: list[str], database_url: str, home: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": database_url, "SEEDTEST_HOME": str(home)}
    env.pop("SEEDTEST_DAGSTER_PG_URL", None)
    return subprocess.run([COMMAND, *args], cwd=PROJECT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def url_with_password(database_url) -> str:
    """The test server's URL with a password in it (the embedded server trusts its socket, so the
    password is not checked; it only has to stay out of every output)."""
    scheme, rest = database_url.split("://", 1)
    user, host = rest.split("@", 1)
    return f"{scheme}://{user.split(':')[0]}:{PASSWORD}@{host}"


def test_no_command_prints_the_database_password(engine, url_with_password, tmp_path):
    outputs = {}
    for args in (["db", "url"], ["db", "current"], ["db", "upgrade"],
                 ["seed", "--students", "20", "--days", "3"],
                 ["demo", "--students", "40", "--weeks", "1", "--reseed"]):
        done = run(args, url_with_password, tmp_path)
        assert done.returncode == 0, done.stderr[-2000:]
        outputs[" ".join(args)] = done.stdout + done.stderr
    assert all(PASSWORD not in text for text in outputs.values())
    assert outputs["db url"].strip().endswith(url_with_password.split("@", 1)[1])
    assert ":***@" in outputs["db url"] and ":***@" in outputs["demo --students 40 --weeks 1 --reseed"]


@pytest.mark.parametrize(
    ("database_url", "says"),
    [
        (f"postgresql://reader:{PASSWORD}@127.0.0.1:9/seedtest", "127.0.0.1"),  # nothing listens on port 9
        (f"mysql://reader:{PASSWORD}@db.example/seedtest", "not a PostgreSQL URL"),
        (f"postgresql://reader:{PASSWORD}@/seedtest?host=/nonexistent/socket/dir", "/nonexistent/socket/dir"),
    ],
    ids=["unreachable", "not-postgres", "no-socket"],
)
def test_a_bad_database_url_is_one_line_and_exit_2(database_url, says, tmp_path):
    for args in (["db", "current"], ["seed", "--days", "1"]):
        done = run(args, database_url, tmp_path, timeout=60)
        assert done.returncode == 2, done.stderr
        assert done.stdout == "" and len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert "Traceback" not in done.stderr and PASSWORD not in done.stderr
        assert says in done.stderr and "reader:***@" in done.stderr
