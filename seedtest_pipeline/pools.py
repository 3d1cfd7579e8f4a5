"""Dagster pools: every asset declares one, and a pool admits one step at a time (dagster.yaml,
`concurrency: pools: default_limit: 1`), so two runs of the same work never overlap.

One exception, POOL_LIMITS: the weekly reports' chunk steps. Each chunk reads and writes only its
own students (objects, report_artifacts rows), so several chunks of one week may render at once:
on Kubernetes each is a pod of its own, and the pool's limit is how many such pods run at once
across the cluster. What keeps two runs of the same week apart is then not the pool but the
reports' planning step, which waits while a run of that week that started earlier is still
running (`wait_for_earlier_runs`).

Dagster creates a pool's limit the first time a step claims it (at the instance's default); two
runs that do so at the same moment can collide on that insert (seen with dagster 1.13.27: the
loser's run fails). Creating every pool's limit once, before runs start (`seedtest-pipeline
pools`, which `ui`, `demo` and the deploy's migration Job run), removes that race and sets the
limits of POOL_LIMITS, which this module is the one place to change.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import dagster as dg
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    PARTITION_NAME_TAG,
)

# Pools that admit more than the instance's default of one step at a time.
POOL_LIMITS = {
    # Chunk steps of the weekly reports: 8 pods at once renders the default 8 chunks of a week
    # side by side (about 8 x 125 students per second; a million students in ~17 minutes).
    "weekly_reports": 8,
}
# Runs whose steps may be executing. A queued or starting run has not reached any step yet, and
# will start after the run that is looking: it is the one that waits (wait_for_earlier_runs).
RUNNING = [dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]


def project_pools(defs: dg.Definitions) -> set[str]:
    """The pools of every step of the project (the ops inside graph-backed assets included)."""
    return {op.pool for job in defs.resolve_all_job_defs() for op in job.graph.iterate_op_defs() if op.pool}


def initialize_pools(instance: dg.DagsterInstance, pools: set[str]) -> list[str]:
    """Give each pool its limit (POOL_LIMITS, else the instance's default) where it has none yet,
    or another one than POOL_LIMITS says; returns the pools whose limit was set."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return []
    existing = {limit.name: limit.limit for limit in storage.get_pool_limits()}
    changed = []
    for pool in sorted(pools):
        wanted = POOL_LIMITS.get(pool)
        if pool not in existing and wanted is None:
            storage.initialize_concurrency_limit_to_default(pool)
        elif wanted is not None and existing.get(pool) != wanted:
            storage.set_concurrency_slots(pool, wanted)
        else:
            continue
        changed.append(pool)
    return changed


def missing_pool_limits(instance: dg.DagsterInstance, pools: set[str]) -> dict[str, str]:
    """Pools without the limit initialize_pools gives them, and what they have instead."""
    existing = {limit.name: limit.limit for limit in instance.event_log_storage.get_pool_limits()}
    return {
        pool: "no limit" if pool not in existing else f"limit {existing[pool]}, not {POOL_LIMITS[pool]}"
        for pool in sorted(pools)
        if pool not in existing or existing[pool] != POOL_LIMITS.get(pool, existing[pool])
    }


def covers(run: dg.DagsterRun, partition: str) -> bool:
    """Whether the run works on `partition`: its partition, or inside its single-run range."""
    tags = run.tags
    if PARTITION_NAME_TAG in tags:
        return tags[PARTITION_NAME_TAG] == partition
    first, last = tags.get(ASSET_PARTITION_RANGE_START_TAG), tags.get(ASSET_PARTITION_RANGE_END_TAG)
    # ISO dates compare as text.
    return bool(first and last) and first <= partition <= last


def earlier_running_runs(instance: dg.DagsterInstance, run: dg.DagsterRun, step_prefix: str,
                         partition: str) -> list[dg.DagsterRun]:
    """Runs still running that started before `run` and execute a step whose key starts with
    `step_prefix`, for the same partition. The start order is one order every run agrees on, so
    of two runs of the same work exactly one goes first, whichever looks first; and a run only
    ever waits for runs already running, never for one the run queue holds back."""
    me = instance.get_run_record_by_id(run.run_id)
    my_start = (me.start_time if me and me.start_time is not None else float("inf"), run.run_id)
    earlier = []
    for record in instance.get_run_records(dg.RunsFilter(statuses=RUNNING), ascending=True):
        other = record.dagster_run
        if other.run_id == run.run_id or record.start_time is None or (record.start_time, other.run_id) > my_start:
            continue
        if not covers(other, partition) or not other.execution_plan_snapshot_id:
            continue
        plan = instance.get_execution_plan_snapshot(other.execution_plan_snapshot_id)
        if any(key.startswith(step_prefix) for key in plan.step_keys_to_execute):
            earlier.append(other)
    return earlier


def wait_for_earlier_runs(instance: dg.DagsterInstance, run: dg.DagsterRun, step_prefix: str, partition: str,
                          log: Callable[[str], None], poll_seconds: float = 15.0) -> float:
    """Return once no run of the same work and partition that started earlier is still running;
    the seconds waited.

    A run that died is marked failed by run monitoring (dagster.yaml), which ends the wait; a
    run that never ends is stopped by the maximum runtime (deploy/base/dagster.yaml)."""
    started = time.monotonic()
    waiting_for: list[str] = []
    while earlier := earlier_running_runs(instance, run, step_prefix, partition):
        ids = [other.run_id for other in earlier]
        if ids != waiting_for:
            log(f"waiting for {len(ids)} earlier run(s) of {partition} to finish: {', '.join(ids)}")
            waiting_for = ids
        time.sleep(poll_seconds)
    return time.monotonic() - started
