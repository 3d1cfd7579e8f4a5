"""Online θ (SPEC §5): after sessions complete, their students' θ by EAP from the current item
parameters, written to mirt_ability with source 'online'.

Two parts, both plain functions over a connection:

- `poll_completed_sessions` finds the sessions completed since the last poll (new rows, and rows
  whose completion time moved), through the completion-time index only. Its cursor survives
  restarts and neither skips nor repeats a session when rows commit out of order: see
  `SessionCursor` and docs/decisions.md, "Online θ".
- `update_online_theta` scores a set of students in one vectorised EAP pass and appends their rows
  in one COPY.

Timestamps leave PostgreSQL as ISO text: a platform row may hold 'infinity' or year 12000, which
PostgreSQL accepts and Python does not.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from io import BytesIO

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy import Connection

from seedtest_pipeline import irt
from seedtest_pipeline.calibration import StoredCalibration, copy_abilities, latest_calibration

DEFAULT_LOOKBACK_DAYS = 30
DEFAULT_MODEL = "2PL"
# A session may commit this long after its completion time (the time of its transaction's start,
# as `updated_at DEFAULT now()` records it) and still be found. Rows committing out of order
# "within a few seconds" are the case to cover; five minutes leaves a wide margin, and only costs
# re-reading the index entries of the last five minutes at each tick.
SETTLE_SECONDS = 300
# At most this many sessions per tick, oldest first: a sensor that was off for days catches up in
# runs of bounded size instead of one huge run.
MAX_SESSIONS_PER_RUN = 5000
# Time as text with microseconds, in UTC: fixed width, so text order is time order (for any
# finite time up to year 9999; the sessions read here are never later than now()).
ISO_MICROSECONDS = 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'
CURSOR_VERSION = 1


# --- finding completed sessions ---------------------------------------------------------------


@dataclass(frozen=True)
class SessionCursor:
    """Where the poll stands. A session is identified by (exam_results.id, completion time), so a
    row whose updated_at moved is a new completion, and one rewritten without moving it is not.

    Every session completed at or after `after` that is not in `seen` is still to be taken;
    `seen` holds the sessions already taken whose completion time is at or after `after` (ids by
    completion time). `after` trails the database clock by SETTLE_SECONDS, so a row that commits
    late with an earlier completion time is still ahead of it, and `seen` keeps it from being
    taken twice. Sessions older than `after` are settled and forgotten."""

    after: str
    seen: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def to_text(self) -> str:
        return json.dumps({"version": CURSOR_VERSION, "after": self.after, "seen": self.seen},
                          separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_text(cls, text: str | None) -> SessionCursor | None:
        """None for no cursor (the first tick, or a cursor reset in the UI)."""
        if not text:
            return None
        try:
            value = json.loads(text)
            if value.get("version") != CURSOR_VERSION:
                raise ValueError(f"version {value.get('version')!r}")
            return cls(str(value["after"]), {str(at): tuple(map(str, ids)) for at, ids in value["seen"].items()})
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            # Only this module writes the cursor: an unreadable one is a bug, not input to guess at.
            raise ValueError(f"unreadable session_completed cursor ({error}); reset the sensor's cursor in the UI "
                             f"to start again from the last {SETTLE_SECONDS} seconds") from None

    def seen_keys(self) -> tuple[list[str], list[str]]:
        pairs = [(session, at) for at, ids in self.seen.items() for session in ids]
        return [session for session, _ in pairs], [at for _, at in pairs]


@dataclass(frozen=True)
class CompletedSession:
    result_id: str  # exam_results.id
    completed_at: str  # ISO text, microseconds
    user_id: str | None  # seedtest_user_key; None: nobody can be credited with the session


@dataclass(frozen=True)
class Poll:
    sessions: tuple[CompletedSession, ...]
    cursor: SessionCursor
    read_at: str  # the database clock of the poll
    cut: bool  # more sessions were waiting than one run takes

    @property
    def user_ids(self) -> list[str]:
        return sorted({s.user_id for s in self.sessions if s.user_id is not None})

    @property
    def uncredited(self) -> int:
        return sum(s.user_id is None for s in self.sessions)

    @property
    def latest_completed_at(self) -> str:
        return max(s.completed_at for s in self.sessions)

    @property
    def earliest_completed_at(self) -> str:
        return min(s.completed_at for s in self.sessions)

    def run_key(self) -> str:
        """The same batch gives the same key, so a replayed tick launches nothing new."""
        keys = "\n".join(sorted(f"{s.result_id}@{s.completed_at}" for s in self.sessions))
        return f"online-theta-{hashlib.sha256(keys.encode()).hexdigest()[:24]}"


# Read through exam_results_completed_at_idx: the range from the cursor to now, never the table.
POLL_SQL = f"""
SELECT r.id::text AS result_id,
       to_char(coalesce(r.updated_at, r.created_at) AT TIME ZONE 'UTC', '{ISO_MICROSECONDS}') AS completed_at,
       seedtest_user_key(r.user_id) AS user_id
FROM exam_results r
WHERE coalesce(r.updated_at, r.created_at) >= CAST(:after AS timestamptz)
  AND coalesce(r.updated_at, r.created_at) <= now()
  AND NOT EXISTS (SELECT FROM unnest(CAST(:seen_ids AS uuid[]), CAST(:seen_at AS timestamptz[])) AS s(id, at)
                  WHERE s.id = r.id AND s.at = coalesce(r.updated_at, r.created_at))
ORDER BY coalesce(r.updated_at, r.created_at), r.id
LIMIT :limit
"""
CLOCK_SQL = f"""
SELECT to_char(now() AT TIME ZONE 'UTC', '{ISO_MICROSECONDS}') AS read_at,
       to_char((now() - make_interval(secs => :settle)) AT TIME ZONE 'UTC', '{ISO_MICROSECONDS}') AS settled_before
"""


def poll_completed_sessions(connection: Connection, cursor: SessionCursor | None,
                            max_sessions: int = MAX_SESSIONS_PER_RUN,
                            settle_seconds: int = SETTLE_SECONDS) -> Poll:
    """The sessions completed since `cursor` (oldest first, at most `max_sessions`) and the cursor
    after them. Without a cursor, the sessions of the last `settle_seconds` are new. Call it in
    one transaction: the clock and the read then see the same now()."""
    clock = connection.execute(sa.text(CLOCK_SQL), {"settle": settle_seconds}).one()
    cursor = cursor or SessionCursor(after=clock.settled_before)
    seen_ids, seen_at = cursor.seen_keys()
    rows = connection.execute(sa.text(POLL_SQL), {"after": cursor.after, "seen_ids": seen_ids, "seen_at": seen_at,
                                                  "limit": max_sessions}).all()
    sessions = tuple(CompletedSession(row.result_id, row.completed_at, row.user_id) for row in rows)
    cut = len(sessions) == max_sessions
    # Move `after` up to the settled past, but never past a session still waiting behind a cut batch.
    settled = min(clock.settled_before, sessions[-1].completed_at) if cut else clock.settled_before
    after = max(cursor.after, settled)
    seen: dict[str, set[str]] = {}
    for at, ids in cursor.seen.items():
        seen.setdefault(at, set()).update(ids)
    for session in sessions:
        seen.setdefault(session.completed_at, set()).add(session.result_id)
    kept = {at: tuple(sorted(ids)) for at, ids in sorted(seen.items()) if at >= after}
    return Poll(sessions, SessionCursor(after, kept), clock.read_at, cut)


# --- scoring ----------------------------------------------------------------------------------

# Each student's window, read through exam_results_student_completed_idx (a few index probes per
# student; OFFSET 0 keeps the planner from turning the per-student probes into one scan of the
# window's sessions), first answer per item as the calibration reads them (docs/decisions.md).
# `latest` is the student's latest completion in the window, over all their answers.
# psycopg placeholders: this runs inside COPY (...) TO STDOUT.
RESPONSES_SQL = f"""
SELECT DISTINCT ON (a.user_id, a.item_id) a.user_id, a.item_id, a.correct, a.latest
FROM (
  SELECT a.user_id, a.item_id, a.correct, a.completed_at, a.result_id, a.question_no,
         to_char(max(a.completed_at) OVER (PARTITION BY a.user_id) AT TIME ZONE 'UTC', '{ISO_MICROSECONDS}') AS latest
  FROM unnest(CAST(%(user_ids)s AS text[])) AS u(user_id)
  CROSS JOIN LATERAL (
    SELECT user_id, item_id, correct, completed_at, result_id, question_no
    FROM attempt_rows
    WHERE student_id = seedtest_student_id(u.user_id) AND user_id = u.user_id AND length(raw_user_id) <= 256
      AND completed_at > CAST(%(window_start)s AS timestamptz) AND completed_at <= CAST(%(window_end)s AS timestamptz)
    OFFSET 0
  ) AS a
) AS a
ORDER BY a.user_id, a.item_id, a.completed_at, a.result_id, a.question_no
"""
WINDOW_SQL = f"""
SELECT to_char(w.window_end AT TIME ZONE 'UTC', '{ISO_MICROSECONDS}') AS window_end,
       to_char((w.window_end - make_interval(days => :lookback_days)) AT TIME ZONE 'UTC', '{ISO_MICROSECONDS}') AS window_start
FROM (SELECT coalesce(CAST(:as_of AS timestamptz), now()) AS window_end) AS w
WHERE isfinite(w.window_end)
"""
KEYS_SQL = """
SELECT requested.user_id AS requested, seedtest_user_key(requested.user_id) AS user_id
FROM unnest(CAST(:user_ids AS text[])) WITH ORDINALITY AS requested(user_id, n)
ORDER BY requested.n
"""

# Why a requested user got no new row.
NOT_CREDITABLE = "not a user id the pipeline can credit (blank, or longer than 256 characters)"
NO_ATTEMPTS = "no attempt in the window"
NO_CALIBRATED_ITEM = "no answer to an item of the calibration in the window"


@dataclass(frozen=True)
class UserUpdate:
    """One requested user id: the new θ and se, or why there is none."""

    requested: str
    user_id: str | None
    theta: float | None = None
    se: float | None = None
    fitted_at: str | None = None
    answers: int = 0  # first answers per item in the window
    skipped: int = 0  # of them, to items without parameters
    reason: str = ""


@dataclass(frozen=True)
class OnlineUpdate:
    model: str
    window_start: str | None
    window_end: str | None
    calibration: StoredCalibration | None
    users: tuple[UserUpdate, ...] = ()
    reason: str = ""  # set when nothing could be scored at all
    answers_skipped: int = 0
    items_skipped: tuple[str, ...] = ()
    seconds: dict = field(default_factory=dict)

    @property
    def rows_written(self) -> int:
        """One per student scored, however many spellings of their id were asked for."""
        return len({u.user_id for u in self.users if u.theta is not None})

    @property
    def students(self) -> int:
        """Distinct students asked for (one per user key)."""
        return len({u.user_id for u in self.users if u.user_id is not None})

    @property
    def without_usable_attempt(self) -> int:
        """Students who got no row (the original's "noop")."""
        return len({u.user_id for u in self.users if u.user_id is not None and u.theta is None})

    @property
    def version(self) -> str:
        return online_version(self.calibration) if self.calibration else ""


def online_version(calibration: StoredCalibration) -> str:
    """mirt_ability.version of online rows: the parameters' version, marked online (the SPEC §9
    queries show no source column)."""
    return f"online:{calibration.version}"


def read_responses(connection: Connection, user_ids: list[str], window_start: str, window_end: str) -> pd.DataFrame:
    """The students' first answer per item in (window_start, window_end], with each student's
    latest completion, streamed out with COPY."""
    buffer = BytesIO()
    cursor = connection.connection.driver_connection.cursor()
    params = {"user_ids": user_ids, "window_start": window_start, "window_end": window_end}
    with cursor.copy(f"COPY ({RESPONSES_SQL}) TO STDOUT WITH (FORMAT csv)", params) as copy:
        for chunk in copy:
            buffer.write(chunk)
    columns = ["user_id", "item_id", "correct", "latest"]
    if not buffer.tell():
        return pd.DataFrame({name: pd.Series(dtype=str) for name in columns})
    buffer.seek(0)
    return pd.read_csv(buffer, header=None, names=columns, dtype=str, keep_default_na=False)


def update_online_theta(connection: Connection, user_ids: list[str], model: str = DEFAULT_MODEL,
                        lookback_days: int = DEFAULT_LOOKBACK_DAYS, as_of: str | None = None) -> OnlineUpdate:
    """New θ rows (source 'online') for the given users, from the latest calibration of `model`
    and each user's first answers per item in the `lookback_days` before `as_of` (ISO time;
    None: now), in the caller's transaction. fitted_at is each user's latest completion in that
    window. Users without a usable answer get no row, and the outcome says why."""
    started = time.perf_counter()
    if lookback_days < 1:
        raise ValueError(f"lookback_days must be at least 1, got {lookback_days}")
    try:
        window = connection.execute(sa.text(WINDOW_SQL), {"as_of": as_of or None, "lookback_days": lookback_days}).first()
    except sa.exc.DataError:
        raise ValueError(f"as_of {as_of!r} is not a time PostgreSQL can read (e.g. 2026-11-30T12:00:00Z)") from None
    if window is None:
        raise ValueError(f"as_of must be a finite time, got {as_of!r}")
    keys = [(row.requested, row.user_id) for row in connection.execute(sa.text(KEYS_SQL), {"user_ids": list(user_ids)})]
    calibration = latest_calibration(connection, model)
    if calibration is None:
        return OnlineUpdate(model, window.window_start, window.window_end, None,
                            tuple(UserUpdate(requested, key, reason=f"no {model} calibration yet") for requested, key in keys),
                            reason=f"no {model} calibration yet: there are no item parameters to score against "
                                   "(the daily calibration writes them)")
    students = sorted({key for _, key in keys if key is not None})
    frame = read_responses(connection, students, window.window_start, window.window_end)
    read_done = time.perf_counter()

    known = frame["item_id"].isin(calibration.items.item_ids)
    per_user = frame.assign(skipped=~known).groupby("user_id").agg(
        answers=("item_id", "size"), skipped=("skipped", "sum"), latest=("latest", "first"))
    responses = irt.Responses.from_arrays(frame["user_id"].to_numpy(), frame["item_id"].to_numpy(),
                                          (frame["correct"] == "t").to_numpy(np.uint8))
    abilities = irt.eap(responses, calibration.items)
    scored_done = time.perf_counter()

    fitted_at = per_user["latest"].reindex(abilities.student_ids).to_numpy()
    if abilities.student_ids.size:
        copy_abilities(connection, calibration.calibration_id, model, online_version(calibration), fitted_at,
                       abilities, source="online")
    written_done = time.perf_counter()

    scores = {user: (theta, se) for user, theta, se in zip(abilities.student_ids, abilities.theta, abilities.se)}
    users = []
    for requested, key in keys:
        if key is None:
            users.append(UserUpdate(requested, None, reason=NOT_CREDITABLE))
            continue
        counts = per_user.loc[key] if key in per_user.index else None
        answers, skipped = (int(counts["answers"]), int(counts["skipped"])) if counts is not None else (0, 0)
        if key in scores:
            theta, se = scores[key]
            users.append(UserUpdate(requested, key, float(theta), float(se) if se > 0 else None,
                                    str(counts["latest"]), answers, skipped))
        else:
            reason = NO_ATTEMPTS if counts is None else \
                f"{NO_CALIBRATED_ITEM} ({answers} answered, all to items without parameters)"
            users.append(UserUpdate(requested, key, answers=answers, skipped=skipped, reason=reason))
    return OnlineUpdate(
        model, window.window_start, window.window_end, calibration, tuple(users),
        answers_skipped=int((~known).sum()), items_skipped=tuple(sorted(set(frame["item_id"][~known]))),
        seconds={"read": read_done - started, "score": scored_done - read_done, "write": written_done - scored_done},
    )
