"""The local instance's run launcher: Dagster's default launcher, plus a health check of run workers.

Dagster's default launcher starts each run in a process on this machine but cannot tell whether
that process still lives, so run monitoring cannot notice a killed worker: its run stays STARTED,
and with one run per piece of work (the queue's tag limit, the pools) the next run of that work
waits forever. This launcher reads the worker's pid from the run's "Started process for run"
event (or, for a run executed inside a command such as the demo, from its `seedtest/pid` tag)
and checks the process: gone, or a newer process that reused the pid, means the worker died.
Run monitoring (dagster.yaml) then marks the run FAILED and frees its slots.
"""

from __future__ import annotations

import os
from pathlib import Path

from dagster import DagsterEventType, DagsterInstance, DagsterRun, DefaultRunLauncher
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus

PID_TAG = "seedtest/pid"


def process_alive_since(pid: int, not_after: float) -> bool:
    """Whether process `pid` runs and started no later than `not_after` (epoch seconds): a
    process started later merely reused the pid of the one we look for."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    stat = Path(f"/proc/{pid}/stat")
    if not stat.exists():  # no /proc (not Linux): existence is all we can tell
        return True
    # Field 22 (after the parenthesised command name, which may hold spaces) is the start time in
    # clock ticks after boot; /proc/stat's btime is the boot time.
    started_ticks = int(stat.read_text().rsplit(")", 1)[1].split()[19])
    boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime"))
    started = boot + started_ticks / os.sysconf("SC_CLK_TCK")
    return started <= not_after + 1  # btime has a resolution of a second


def run_worker(instance: DagsterInstance, run: DagsterRun) -> tuple[int, float] | None:
    """The pid of the process executing `run`, and a time by which that process already ran: the
    worker's own "Started process for run" event, or, for a run executed inside a command, the run's
    creation (the command's process tagged it)."""
    for record in reversed(instance.all_logs(run.run_id, of_type=DagsterEventType.ENGINE_EVENT)):
        event = record.dagster_event
        if event and "pid" in event.engine_event_data.metadata and (event.message or "").startswith(
            "Started process for run"
        ):
            return int(event.engine_event_data.metadata["pid"].value), record.timestamp
    tagged = run.tags.get(PID_TAG)
    if tagged and tagged.isdigit():
        created = instance.get_run_record_by_id(run.run_id).create_timestamp.timestamp()
        return int(tagged), created
    return None


class LocalRunLauncher(DefaultRunLauncher):
    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        worker = run_worker(self._instance, run)
        if worker is None:
            # Nothing to check (a run started some other way): leave it to max_runtime_seconds.
            return CheckRunHealthResult(WorkerStatus.RUNNING, "no worker pid recorded")
        pid, running_by = worker
        if process_alive_since(pid, running_by):
            return CheckRunHealthResult(WorkerStatus.RUNNING, f"worker process {pid} is running")
        return CheckRunHealthResult(WorkerStatus.FAILED, f"worker process {pid} is gone (killed or crashed)")
