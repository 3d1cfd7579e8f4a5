"""seedtest-pipeline: the one command-line entry point (db, seed, demo, pools, check, ui, irt, report)."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import warnings
from datetime import date, datetime, timedelta, timezone

import psycopg
import sqlalchemy as sa

from seedtest_pipeline import migrations, warehouse
from seedtest_pipeline.irt_cli import add_irt_parser
from seedtest_pipeline.report_cli import add_report_parser
from seedtest_pipeline.settings import SettingsError, load_settings


def cmd_db(args) -> int:
    from seedtest_pipeline.local import prepare_environment

    prepare_environment()
    engine = warehouse.make_engine(os.environ["DATABASE_URL"])
    if args.action == "upgrade":
        migrations.upgrade(engine, args.revision or "head")
    elif args.action == "downgrade":
        if not args.revision:
            raise SystemExit("db downgrade needs a revision, e.g. 0002 or base")
        migrations.downgrade(engine, args.revision)
    elif args.action == "url":
        print(warehouse.masked_url(os.environ["DATABASE_URL"]))
        return 0
    print(f"schema at revision {migrations.current_revision(engine)} (head {migrations.head_revision()})")
    return 0


def cmd_seed(args) -> int:
    from seedtest_pipeline import synthetic
    from seedtest_pipeline.attempts import apply_schema
    from seedtest_pipeline.local import prepare_environment

    prepare_environment()
    engine = warehouse.make_engine(os.environ["DATABASE_URL"])
    apply_schema(engine)
    end_date = args.end or datetime.now(timezone.utc).date() - timedelta(days=1)
    config = synthetic.SyntheticConfig(
        students=args.students, days=args.days, end_date=end_date, seed=args.seed, malformed=args.malformed
    )
    with engine.begin() as connection:
        summary = synthetic.seed_exam_results(connection.connection.driver_connection, config)
    print(summary)
    return 0


def cmd_demo(args) -> int:
    from seedtest_pipeline.demo import run_demo

    run_demo(students=args.students, weeks=args.weeks, reseed=args.reseed)
    return 0


def dagster_dev_command(host: str, port: int) -> list[str]:
    # This interpreter's dagster, not whichever `dagster` PATH finds (the venv is rarely activated).
    return [sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml", "-h", host, "-p", str(port)]


def cmd_pools(args) -> int:
    from seedtest_pipeline.local import prepare_environment

    prepare_environment()
    created = create_pool_limits()
    print(f"pools: {', '.join(created) or 'all had their limits already'}")
    return 0


def create_pool_limits() -> list[str]:
    """Every pool's limit in the Dagster instance of $DAGSTER_HOME (seedtest_pipeline/pools.py)."""
    from dagster import DagsterInstance

    from seedtest_pipeline.definitions import defs
    from seedtest_pipeline.pools import initialize_pools, project_pools

    with DagsterInstance.get() as instance:
        return initialize_pools(instance, project_pools(defs))


def missing_pool_limits_of_instance() -> dict[str, str]:
    """Pools of the project whose limit in the instance of $DAGSTER_HOME is missing or wrong."""
    from dagster import DagsterInstance

    from seedtest_pipeline.definitions import defs
    from seedtest_pipeline.pools import missing_pool_limits, project_pools

    with DagsterInstance.get() as instance:
        return missing_pool_limits(instance, project_pools(defs))


def cmd_check(args) -> int:
    from resources.object_store import ObjectStoreResource
    from seedtest_pipeline.check import run_checks
    from seedtest_pipeline.local import prepare_environment

    try:
        prepare_environment()
    except (sa.exc.OperationalError, psycopg.OperationalError):
        pass  # the server of DATABASE_URL is unreachable: the database check below says so
    outcomes = run_checks(load_settings(), warehouse.warehouse_url(), ObjectStoreResource().store(),
                          missing_pool_limits_of_instance)
    for outcome in outcomes:
        print(outcome.line())
    failed = [outcome.check for outcome in outcomes if outcome.status == "FAIL"]
    print(f"check: {len(failed)} of {len(outcomes)} failed ({', '.join(failed)})" if failed
          else f"check: all {len(outcomes)} passed")
    return 1 if failed else 0


def cmd_ui(args) -> int:
    from seedtest_pipeline.local import prepare_environment

    prepare_environment()
    migrations.upgrade(warehouse.make_engine(os.environ["DATABASE_URL"]))
    create_pool_limits()
    # dagster dev shuts its webserver, daemon and code servers down on SIGINT to itself only. A
    # process started in the background inherits an ignored SIGINT, so the child gets the default
    # back, and Ctrl-C or a plain `kill` of this process is passed on to it as SIGINT.
    process = subprocess.Popen(dagster_dev_command(args.host, args.port),
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    stop = lambda *_: process.send_signal(signal.SIGINT)  # noqa: E731
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    return process.wait()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seedtest-pipeline", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    db = commands.add_parser("db", help="the warehouse schema: upgrade, downgrade, current, url")
    db.add_argument("action", choices=["upgrade", "downgrade", "current", "url"])
    db.add_argument("revision", nargs="?", help="target revision (default head for upgrade)")
    db.set_defaults(func=cmd_db)

    seed = commands.add_parser("seed", help="write synthetic exam_results into the warehouse")
    seed.add_argument("--students", type=int, default=2000)
    seed.add_argument("--days", type=int, default=56)
    seed.add_argument("--end", type=date.fromisoformat, help="last day (default yesterday, UTC)")
    seed.add_argument("--seed", type=int, default=7)
    seed.add_argument("--malformed", action="store_true", help="inject every malformed kind of SPEC §2.2")
    seed.set_defaults(func=cmd_seed)

    demo = commands.add_parser("demo", help="seed, run the whole chain, print a summary")
    demo.add_argument("--students", type=int, default=2000)
    demo.add_argument("--weeks", type=int, default=8)
    demo.add_argument("--reseed", action="store_true", help="replace exam_results with fresh data")
    demo.set_defaults(func=cmd_demo)

    pools = commands.add_parser("pools", help="create the limit of every Dagster pool (one step at a time)")
    pools.set_defaults(func=cmd_pools)

    check = commands.add_parser(
        "check", help="post-deploy smoke test: database, migrations, V1 lock, object store, webhook, pools")
    check.set_defaults(func=cmd_check)

    ui = commands.add_parser("ui", help="dagster dev (webserver + daemon) on the local instance")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=3000)
    ui.set_defaults(func=cmd_ui)

    add_irt_parser(commands)
    add_report_parser(commands)
    return parser


# Dagster marks some parameters the project relies on (single-run backfill policies, code
# references) as beta; the notice says nothing a user of these commands can act on.
QUIET_WARNINGS = (r".* is currently in (beta|preview)", r"XDG_RUNTIME_DIR is not set")


def main(argv: list[str] | None = None) -> int:
    for message in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message)
    args = build_parser().parse_args(argv)
    try:
        load_settings()
    except SettingsError as error:
        # Start-up stops before any work, one line per missing or malformed variable.
        for problem in error.problems:
            print(f"seedtest-pipeline {args.command}: {problem}", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except (sa.exc.OperationalError, sa.exc.ArgumentError, psycopg.OperationalError,
            warehouse.NotPostgresUrl, migrations.MigrationRefused) as error:
        # One line that says what is wrong, never a traceback, never the password.
        url = os.environ.get("DATABASE_URL", "")
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        where = f" at {warehouse.masked_url(url)}" if url else ""
        print(f"seedtest-pipeline {args.command}: the warehouse{where}: {warehouse.scrub(reason, url)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
