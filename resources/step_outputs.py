"""Where step outputs go between the steps of one run: pickles in the object store.

Only the weekly reports' steps hand values on (the planning step's chunk ids, each chunk's
result); every other asset writes its table and returns metadata. On Kubernetes each of those
steps is a pod of its own (dagster-k8s's k8s_job_executor) and pods share no disk, so the values
go where every pod can read them: the object store of the reports (S3 in production, the local
folder otherwise), under dagster-steps/<run id>/<step key>/<output>[/<mapping key>]. A re-execution
of a failed run reads its parent run's outputs from there. They are a few kilobytes per step;
production expires the prefix with a bucket lifecycle rule (docs/RUNBOOK.md).
"""

from __future__ import annotations

import pickle

import dagster as dg

from resources.object_store import ObjectStoreResource

PREFIX = "dagster-steps"


class StepOutputsIOManager(dg.ConfigurableIOManager):
    """Step outputs as pickles under dagster-steps/ in the object store."""

    object_store: ObjectStoreResource

    @staticmethod
    def key(context: dg.OutputContext) -> str:
        return "/".join([PREFIX, *context.get_identifier()])

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        self.object_store.store().put(self.key(context), pickle.dumps(obj), "application/octet-stream")

    def load_input(self, context: dg.InputContext) -> object:
        return pickle.loads(self.object_store.store().get(self.key(context.upstream_output)))
