"""The local environment: embedded PostgreSQL, the Dagster instance of this folder, and their variables."""

from __future__ import annotations

import os
from pathlib import Path

from seedtest_pipeline import warehouse


def project_dir() -> Path:
    """The folder holding dagster.yaml (the local instance); commands run from it."""
    here = Path.cwd()
    if not (here / "dagster.yaml").exists():
        raise SystemExit(f"dagster.yaml not found in {here}: run seedtest-pipeline from the project folder")
    return here


def dagster_home(home: Path) -> Path:
    """$SEEDTEST_HOME/dagster: the instance's home, whose dagster.yaml is a link to the project's.
    Dagster keeps its local files there (compute logs, artifacts), not in the checkout."""
    folder = home / "dagster"
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "dagster.yaml"
    target = project_dir() / "dagster.yaml"
    if not (config.is_symlink() and config.resolve() == target.resolve()):
        config.unlink(missing_ok=True)
        config.symlink_to(target)
    return folder


def prepare_environment() -> None:
    """Set the variables the local instance and the warehouse resource read, in os.environ, so
    that processes this one starts (dagster dev, run workers) find the same servers without
    starting their own. Without DATABASE_URL the embedded server is started and kept running
    while this process lives; with it, Dagster's storage goes to database "dagster" on the same
    server unless SEEDTEST_DAGSTER_PG_URL names another.
    """
    home = warehouse.seedtest_home()
    os.environ.update(
        {
            "SEEDTEST_HOME": str(home),
            "DATABASE_URL": warehouse.warehouse_url(),
            "SEEDTEST_DAGSTER_PG_URL": warehouse.dagster_storage_url(),
            "DAGSTER_HOME": str(dagster_home(home)),
        }
    )
