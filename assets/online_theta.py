"""Online θ (SPEC §5): the session_completed sensor and the online_theta_update job it launches.

The sensor replaces the original's session hook (and its HTTP API and R service): each tick takes
the sessions completed since its cursor and asks for one run that re-estimates their students'
θ. The same job, launched by hand with user ids (Launchpad, or GraphQL), replaces
`POST /analysis/irt/update-theta`.
"""

from typing import Literal

import dagster as dg
from pydantic import Field

from resources.warehouse import WarehouseResource
from seedtest_pipeline.jobs import WORK_TAG
from seedtest_pipeline.markdown import markdown_table
from seedtest_pipeline.settings import ONLINE_UPDATE, online_update_enabled
from seedtest_pipeline.online_theta import (
    DEFAULT_LOOKBACK_DAYS, DEFAULT_MODEL, MAX_SESSIONS_PER_RUN, SETTLE_SECONDS, SessionCursor,
    poll_completed_sessions, update_online_theta,
)

WORK = "online_theta"
OP_NAME = "update_online_theta"
# A sensor's batch can hold thousands of students; the metadata lists this many of them.
USERS_LISTED = 500
SESSIONS_TAG = "seedtest/sessions"
COMPLETED_TAG = "seedtest/completed"


class OnlineThetaConfig(dg.Config):
    user_ids: list[str] = Field(
        description="The users whose θ to re-estimate: the platform's user ids (any spelling of a uuid). The "
        "session_completed sensor fills in the students of its batch.")
    lookback_days: int = Field(
        DEFAULT_LOOKBACK_DAYS, ge=1,
        description="Each user's attempts completed in this many days before as_of are read (first answer per item).")
    model: Literal["1PL", "2PL", "3PL"] = Field(
        DEFAULT_MODEL, description="Whose item parameters: the latest calibration of this model.")
    as_of: str = Field(
        "", description="ISO time (UTC): read sessions completed at or before it; empty: now. The sensor sets it to "
        "the latest completion of its batch, so a re-execution scores the same sessions.")


@dg.op(
    name=OP_NAME,
    pool=WORK,
    tags={"stage": "irt"},
    description="EAP θ for the given users from the latest calibration, appended to mirt_ability (source 'online').",
)
def update_online_theta_op(context: dg.OpExecutionContext, config: OnlineThetaConfig, warehouse: WarehouseResource):
    if not config.user_ids:
        raise dg.Failure("no user_ids in the run config: give the users whose θ to re-estimate")
    # A lost or refused connection is retried with backoff; bad data fails once (resources/warehouse.py).
    with warehouse.retried_when_unreachable(context), warehouse.begin() as connection:
        outcome = update_online_theta(connection, config.user_ids, config.model, config.lookback_days,
                                      config.as_of or None)
    sessions = context.run.tags.get(SESSIONS_TAG)
    summary = {
        "model": config.model,
        "window": f"{outcome.window_start} .. {outcome.window_end}",
        "users_requested": dg.MetadataValue.int(len(config.user_ids)),
        **({"sessions": dg.MetadataValue.int(int(sessions))} if sessions and sessions.isdigit() else {}),
    }
    if outcome.calibration is None:
        # Nothing to score against yet: a clean finish that says so.
        context.log.warning(outcome.reason)
        yield dg.Output(None, metadata={**summary, "outcome": outcome.reason, **_users_table(outcome)})
        return
    calibration = outcome.calibration
    if calibration.adequate is None:
        gate = "no gate verdict (written before the gate existed)"
    else:
        gate = "passed the quality gate" if calibration.adequate else \
            "below the quality gate: " + "; ".join(calibration.gate_reasons)
    figures = {
        **summary,
        "calibration": f"{calibration.calibration_id} ({calibration.version}, fitted_at {calibration.fitted_at}; {gate})",
        "version": outcome.version,
        "students": dg.MetadataValue.int(outcome.students),
        "rows_written": dg.MetadataValue.int(outcome.rows_written),
        "students_without_usable_attempt": dg.MetadataValue.int(outcome.without_usable_attempt),
        "answers_skipped": dg.MetadataValue.int(outcome.answers_skipped),
        "items_without_parameters": dg.MetadataValue.int(len(outcome.items_skipped)),
        "items_without_parameters_sample": ", ".join(outcome.items_skipped[:20]) or "none",
        **{f"seconds_{part}": dg.MetadataValue.float(round(value, 3)) for part, value in outcome.seconds.items()},
    }
    context.log.info(f"{outcome.rows_written} θ rows written for {outcome.students} students "
                     f"({outcome.without_usable_attempt} without a usable attempt, {outcome.answers_skipped} answers "
                     f"to items without parameters skipped)")
    if outcome.rows_written:
        # An observation, not a materialisation: mirt_ability's materialisations are its
        # calibrations, and online rows must not make a stale calibration look fresh.
        yield dg.AssetObservation(asset_key="mirt_ability", metadata={
            "online_rows_appended": dg.MetadataValue.int(outcome.rows_written), "version": outcome.version,
            "window": figures["window"]})
    yield dg.Output(None, metadata={**figures, **_users_table(outcome)})


def _users_table(outcome) -> dict:
    rows = [{"user_id": u.requested, "written as": u.user_id if u.user_id != u.requested else "",
             "θ": round(u.theta, 4) if u.theta is not None else "",
             "se": round(u.se, 4) if u.se is not None else "",
             "answers": u.answers, "skipped": u.skipped, "fitted_at": u.fitted_at or "",
             "why no θ": u.reason} for u in outcome.users]
    note = f"\n\n_the first {USERS_LISTED} of {len(rows)}_" if len(rows) > USERS_LISTED else ""
    return {"users": dg.MetadataValue.md(markdown_table(rows[:USERS_LISTED]) + note)}


@dg.job(
    name="online_theta_update",
    tags={WORK_TAG: WORK, "stage": "irt"},
    owners=["team:psychometrics"],
    # One step: run it in the run's own process rather than start another one for it (seconds of
    # a session's freshness budget).
    executor_def=dg.in_process_executor,
    description="Re-estimate θ (EAP, source 'online') for the users in the run config: launched by the "
    "session_completed sensor, or by hand from the Launchpad.",
)
def online_theta_job():
    update_online_theta_op()


@dg.sensor(
    name="session_completed",
    job=online_theta_job,
    # Often enough that a session's θ is written within a minute of its completion.
    minimum_interval_seconds=10,
    default_status=dg.DefaultSensorStatus.RUNNING if online_update_enabled() else dg.DefaultSensorStatus.STOPPED,
    description=f"Sessions completed in exam_results since the last tick -> one online_theta_update run for their "
    f"students (at most {MAX_SESSIONS_PER_RUN} sessions per run). Default status: ${ONLINE_UPDATE} (unset: on).",
)
def session_completed(context: dg.SensorEvaluationContext, warehouse: WarehouseResource):
    with warehouse.begin() as connection:
        poll = poll_completed_sessions(connection, SessionCursor.from_text(context.cursor))
    cursor = poll.cursor.to_text()
    if not poll.sessions:
        return dg.SensorResult(skip_reason=f"no session completed since {poll.cursor.after} "
                                           f"(the last {SETTLE_SECONDS} s are read again for late commits)", cursor=cursor)
    span = f"{poll.earliest_completed_at}..{poll.latest_completed_at}"
    if not poll.user_ids:
        return dg.SensorResult(skip_reason=f"{len(poll.sessions)} sessions completed ({span}), none with a user id "
                                           "that can be credited", cursor=cursor)
    context.log.info(f"{len(poll.sessions)} sessions completed ({span}) by {len(poll.user_ids)} students"
                     + (f", {poll.uncredited} without a creditable user id" if poll.uncredited else "")
                     + ("; more are waiting for the next tick" if poll.cut else ""))
    request = dg.RunRequest(
        run_key=poll.run_key(),
        run_config={"ops": {OP_NAME: {"config": {"user_ids": poll.user_ids, "as_of": poll.latest_completed_at}}}},
        tags={SESSIONS_TAG: str(len(poll.sessions)), COMPLETED_TAG: span},
    )
    return dg.SensorResult(run_requests=[request], cursor=cursor)
