"""Dagster pools: every asset declares one, and a pool admits one step at a time (dagster.yaml,
`concurrency: pools: default_limit: 1`), so two runs of the same work never overlap.

Dagster creates a pool's limit the first time a step claims it; two runs that do so at the same
moment can collide on that insert (seen with dagster 1.13.27: the loser's run fails). Creating
every pool's limit once, before runs start (`seedtest-pipeline pools`, which `ui`, `demo` and the
deploy's migration Job run), removes that race.
"""

from __future__ import annotations

import dagster as dg


def project_pools(defs: dg.Definitions) -> set[str]:
    """The pools of every asset step of the project."""
    return {
        node.pool
        for job in defs.resolve_all_job_defs()
        for node in job.graph.node_defs
        if getattr(node, "pool", None)
    }


def initialize_pools(instance: dg.DagsterInstance, pools: set[str]) -> list[str]:
    """Create the limit of each pool that has none yet (at the instance's default); returns them."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return []
    existing = {limit.name for limit in storage.get_pool_limits()}
    created = sorted(pools - existing)
    for pool in created:
        storage.initialize_concurrency_limit_to_default(pool)
    return created
