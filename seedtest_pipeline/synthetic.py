"""Seeded, realistic exam_results for tests, demos and benchmarks (docs/synthetic-data.md).

Students with a known ability θ and a study rhythm take adaptive-style exams on one or two
topics; each answer is drawn from a 2PL model with KNOWN item parameters, so IRT code can be
checked for recovery, and KPI code sees realistic rhythms (regular, fading, dropping out,
starting late). Rows are written with one COPY in fixed chunks of pre-formatted text, so 100k
sessions take seconds and 1M sessions tens of seconds with flat memory.

Public API:
    SyntheticConfig                    what to generate (everything is derived from it and seed)
    generate(config) -> SyntheticData  all rows in memory, plus the truth (for tests, inspection)
    seed_exam_results(conn, config)    stream the same rows into exam_results; never commits
    session_count(config) -> int       how many sessions a config yields (cheap; for sizing)

Determinism: the same config gives byte-identical COPY text, on any machine with the same numpy
(the random streams are numpy's PCG64 keyed by seed and chunk number).
"""

from __future__ import annotations

import json
import queue
import threading
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import numpy as np
import pandas as pd
from scipy.special import ndtr

DEFAULT_TOPICS: tuple[str, ...] = (
    "대수", "기하", "확률과 통계", "함수", "미적분", "수열",
    "fractions", "geometry", "ratios", "statistics",
)
RHYTHMS: tuple[str, ...] = ("active", "fading", "dropped", "new")
MALFORMED_KINDS: tuple[str, ...] = (
    "questions_not_array",      # per session: `questions` is an object
    "questions_missing",        # per session: no `questions` key (the answers sit under "answers")
    "question_not_object",      # per element: a number or a string instead of an object
    "question_id_missing",      # per element: key absent, or ""
    "question_id_unreadable",   # per element: "q-1017"
    "correct_unreadable",       # per element: "maybe" (in is_correct, or in correct for such clients)
    "time_spent_unreadable",    # per element: "fast"
    "used_hints_unreadable",    # per element: "1.5"
    "user_id_missing",          # per session: user_id NULL
)
SESSION_KINDS = frozenset({"questions_not_array", "questions_missing", "user_id_missing"})
COPY_COLUMNS: tuple[str, ...] = (
    "id", "session_id", "user_id", "exam_id", "org_id", "status", "result_json",
    "score_raw", "score_scaled", "standard_error", "percentile", "created_at", "updated_at",
)
COPY_SQL = f"COPY exam_results ({', '.join(COPY_COLUMNS)}) FROM STDIN"
EXAM_RESULTS_DDL = """
CREATE TABLE IF NOT EXISTS exam_results (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(), session_id text NOT NULL UNIQUE, user_id text NULL,
  exam_id integer, org_id integer, status text NOT NULL DEFAULT 'ready', result_json jsonb NOT NULL,
  score_raw numeric, score_scaled numeric, standard_error numeric, percentile numeric,
  created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now());
CREATE INDEX IF NOT EXISTS exam_results_completed_at_idx ON exam_results ((coalesce(updated_at, created_at)));
"""

# Sessions per random stream and per COPY write. Fixed, so the output depends on the config only.
CHUNK_SESSIONS = 10_000
_STUDENT_BLOCK = 4096  # students per calendar block (and random stream)
MAX_TIME_DECISECONDS = 6000  # time_spent_sec is clipped to [2, 600] s and written with one decimal
DAY_MS = 86_400_000

# Local (student) hour of day, relative weights: after school and evenings on weekdays, a
# flatter day on weekends, little at night.
_WEEKDAY_HOURS = np.array([1.0, 0.4, 0.15, 0.05, 0.05, 0.1, 0.4, 1.0, 0.9, 0.6, 0.6, 0.7,
                           1.0, 0.8, 0.9, 1.3, 2.0, 2.4, 2.2, 2.8, 3.5, 3.8, 3.0, 2.0])
_WEEKEND_HOURS = np.array([1.2, 0.6, 0.2, 0.05, 0.05, 0.05, 0.2, 0.5, 0.9, 1.5, 2.0, 2.2,
                           2.0, 2.2, 2.4, 2.4, 2.2, 2.0, 1.8, 2.2, 2.8, 3.0, 2.5, 1.8])
# The client (app version) decides which optional fields a session carries (see _TIMING_*).
_CLIENTS = (("app-4.2", "web-2.4"), ("web-1.9", "web-1.7"), ("app-3.8", "web-2.1"), ("app-3.1", "web-2.0"))
_TIMING_BOTH, _TIMING_NONE, _TIMING_TIME_ONLY, _TIMING_HINTS_ONLY = 0, 1, 2, 3


@dataclass(frozen=True)
class SyntheticConfig:
    """What to generate. Every figure is a deterministic function of these fields.

    end_date is the last UTC day with sessions; None means yesterday (UTC), fixed when the
    config is built, so one config object always describes one data set. Sessions fall in
    [end_date - days + 1, end_date] by UTC day of their completion time.
    """

    students: int = 2000
    items: int = 300
    topics: tuple[str, ...] = DEFAULT_TOPICS
    days: int = 56
    end_date: date | None = None
    seed: int = 7
    questions_per_session: tuple[int, int] = (8, 12)  # inclusive; fewer if the topics hold fewer items
    malformed: bool = False
    malformed_share: float = 0.0005  # per kind: affected sessions / all sessions ...
    malformed_min: int = 5           # ... but at least this many sessions per kind
    untimed_share: float = 0.15      # sessions whose client sends neither time_spent_sec nor used_hints
    partial_timing_share: float = 0.05  # sessions missing one of the two (3:2 hints missing : time missing)
    rhythm_shares: tuple[float, float, float, float] = (0.5, 0.2, 0.15, 0.15)  # active, fading, dropped, new
    learning: float = 0.4            # active and new students' θ rises by U(0, learning) over the window
    orgs: int = 20
    utc_offset_hours: int = 9        # the students' local time (Korea); sessions follow local hours
    first_item_id: int = 1001

    def __post_init__(self) -> None:
        if self.end_date is None:
            object.__setattr__(self, "end_date", datetime.now(timezone.utc).date() - timedelta(days=1))
        elif isinstance(self.end_date, datetime):
            object.__setattr__(self, "end_date", self.end_date.date())
        object.__setattr__(self, "topics", tuple(self.topics))
        object.__setattr__(self, "questions_per_session", tuple(self.questions_per_session))
        object.__setattr__(self, "rhythm_shares", tuple(float(s) for s in self.rhythm_shares))
        low, high = self.questions_per_session
        problems = [
            (self.students < 1, "students must be >= 1"),
            (self.days < 1, "days must be >= 1"),
            (not self.topics or any(not isinstance(t, str) or not t for t in self.topics),
             "topics must be non-empty strings"),
            (len(set(self.topics)) != len(self.topics), "topics must be distinct"),
            (self.items < len(self.topics), "items must be >= the number of topics"),
            (not 1 <= low <= high <= 200, "questions_per_session must be (low, high), 1 <= low <= high <= 200"),
            (len(self.rhythm_shares) != 4 or min(self.rhythm_shares) < 0
             or abs(sum(self.rhythm_shares) - 1) > 1e-9, "rhythm_shares: four shares summing to 1"),
            (not 0 <= self.untimed_share + self.partial_timing_share <= 1
             or min(self.untimed_share, self.partial_timing_share) < 0, "timing shares out of range"),
            (not 0 <= self.malformed_share < 0.1 or self.malformed_min < 0, "malformed share/min out of range"),
            (not 0 <= self.learning <= 3, "learning must be in [0, 3]"),
            (self.orgs < 1, "orgs must be >= 1"),
            (not -12 <= self.utc_offset_hours <= 14, "utc_offset_hours out of range"),
            (self.first_item_id < 0, "first_item_id must be >= 0"),
        ]
        for failed, message in problems:
            if failed:
                raise ValueError(f"SyntheticConfig: {message}")

    @property
    def start_date(self) -> date:
        return self.end_date - timedelta(days=self.days - 1)


@dataclass(frozen=True)
class Truth:
    """What the data was generated from.

    items: item_id (int), topic, a, b (2PL: P = 1 / (1 + exp(-a (θ - b)))), time_intensity.
    students: user_id (None never; the id their sessions carry), user_id_kind, theta (ability
      at the start of the window), theta_gain (θ grows linearly by this much over the window;
      0 except for active and new students), rhythm, first_day / last_day (local dates, UTC
      offset of the config, between which the rhythm allows sessions), org_id, sessions.
    malformed: (session_id, kind), one entry per finding, counted like attempt_input_issues:
      per affected element, per session for questions_not_array / questions_missing /
      user_id_missing. Empty unless config.malformed.
    """

    items: pd.DataFrame
    students: pd.DataFrame
    malformed: list[tuple[str, str]]


@dataclass
class SyntheticData:
    """Everything generate() made.

    sessions: one row per exam_results row, the COPY columns, parsed back from the COPY text
      (result_json as JSON text, user_id None for NULL, timestamps UTC).
    questions: one row per result_json element as generated: session_id, position, item_id,
      topic, theta (the student's θ at that session), correct, time_spent_sec (NaN when the
      element has no such key), used_hints (<NA> when absent), malformed (kind or None).
      For a corrupted element the columns keep the generated values; the JSON holds the bad one.
    copy_chunks: the exact COPY text seed_exam_results writes, one bytes object per chunk.
    """

    config: SyntheticConfig
    sessions: pd.DataFrame
    questions: pd.DataFrame
    truth: Truth
    copy_chunks: list[bytes]

    def copy_text(self) -> bytes:
        return b"".join(self.copy_chunks)


@dataclass(frozen=True)
class SeedSummary:
    """What seed_exam_results wrote.

    questions counts every result_json element written; attempts those the V1 view keeps
    (elements of a `questions` array with a readable question_id). malformed counts findings
    by kind exactly as Truth.malformed lists them (all kinds present, zeros included).
    students counts distinct non-null user_id values written.
    """

    sessions: int
    questions: int
    attempts: int
    students: int
    malformed: dict[str, int]
    first_day: date
    last_day: date
    seconds: float

    @property
    def sessions_per_second(self) -> float:
        return self.sessions / self.seconds if self.seconds else float("inf")


# --------------------------------------------------------------------------------------------
# Plan: items, students and the session calendar, for the whole data set (about 60 bytes a
# session). Chunks then draw the questions of CHUNK_SESSIONS sessions at a time.
# --------------------------------------------------------------------------------------------


@dataclass
class _Plan:
    config: SyntheticConfig
    start_ms: int
    end_ms: int  # exclusive
    items: pd.DataFrame
    students: pd.DataFrame
    item_a: np.ndarray
    item_b: np.ndarray
    item_time: np.ndarray
    item_topic: np.ndarray
    pools: np.ndarray            # (topics, pool width) item indices, -1 padded
    theta: np.ndarray
    gain: np.ndarray
    user_tokens: list[bytes]     # "user_id\t" per student
    org_tokens: list[bytes]      # "org_id\t" per student
    # Per session, in COPY order (by completion time):
    s_student: np.ndarray
    s_ms: np.ndarray             # created_at, epoch ms UTC
    s_update_ms: np.ndarray      # updated_at - created_at
    s_topic1: np.ndarray
    s_topic2: np.ndarray         # -1: single-topic exam
    s_questions: np.ndarray
    s_timing: np.ndarray
    s_strings: np.ndarray        # time/hints written as strings
    s_qid_str: np.ndarray        # question_id written as a string
    s_correct_variant: np.ndarray  # 0 is_correct bool, 1 is_correct "true"/"false", 2 correct bool
    s_form: np.ndarray
    s_kind: np.ndarray           # index into MALFORMED_KINDS, -1 none
    s_bad: np.ndarray            # number of corrupted elements (element kinds)

    @property
    def sessions(self) -> int:
        return len(self.s_ms)


def _epoch_ms(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp()) * 1000


def _uuid_texts(raw: np.ndarray, suffix: bytes = b"") -> np.ndarray:
    """(n, 16) random bytes -> canonical lowercase version-4 uuid texts (+ suffix) as an S array."""
    raw = raw.copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    hexdigits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    nibbles = np.empty((len(raw), 32), dtype=np.uint8)
    nibbles[:, 0::2] = raw >> 4
    nibbles[:, 1::2] = raw & 0x0F
    chars = hexdigits[nibbles]
    width = 36 + len(suffix)
    out = np.full((len(raw), width), ord("-"), dtype=np.uint8)
    for target, source in ((0, 0), (9, 8), (14, 12), (19, 16), (24, 20)):
        length = 12 if source == 20 else (8 if source == 0 else 4)
        out[:, target:target + length] = chars[:, source:source + length]
    if suffix:
        out[:, 36:] = np.frombuffer(suffix, dtype=np.uint8)
    return out.view(f"S{width}").ravel()


def _copy_escape(value: bytes) -> bytes:
    """COPY text format: backslash, tab, newline and carriage return must be escaped."""
    return (value.replace(b"\\", b"\\\\").replace(b"\t", b"\\t")
            .replace(b"\n", b"\\n").replace(b"\r", b"\\r"))


def _json_text(value: str) -> bytes:
    return _copy_escape(json.dumps(value, ensure_ascii=False).encode())


def _make_items(config: SyntheticConfig, rng: np.random.Generator):
    m, topics = config.items, len(config.topics)
    a = rng.lognormal(0.0, 0.3, m)
    b = rng.normal(0.0, 1.0, m)
    time_intensity = rng.lognormal(0.0, 0.25, m)
    topic = rng.permutation(np.arange(m) % topics)  # balanced: every topic holds items
    items = pd.DataFrame({
        "item_id": np.arange(config.first_item_id, config.first_item_id + m, dtype=np.int64),
        "topic": np.array(config.topics, dtype=object)[topic],
        "a": a, "b": b, "time_intensity": time_intensity,
    })
    width = int(np.bincount(topic, minlength=topics).max())
    pools = np.full((topics, width), -1, dtype=np.int32)
    for t in range(topics):
        members = np.flatnonzero(topic == t)
        pools[t, :len(members)] = members
    return items, a, b, time_intensity, topic.astype(np.int16), pools


def _make_students(config: SyntheticConfig, rng: np.random.Generator):
    n = config.students
    draw = rng.random(n)
    kind = np.select([draw < 0.87, draw < 0.90, draw < 0.97], [0, 1, 2], 3)  # uuid, UUID, platform, email
    uuids = _uuid_texts(rng.integers(0, 256, (n, 16), dtype=np.uint8)).astype(str)
    user_ids = []
    for index in range(n):
        if kind[index] == 0:
            user_ids.append(uuids[index])
        elif kind[index] == 1:
            user_ids.append(uuids[index].upper())
        elif kind[index] == 2:
            user_ids.append(f"u-{config.seed % 1000:03d}{index:06d}")
        else:
            user_ids.append(f"learner{config.seed % 1000:03d}{index:06d}@school.example")
    theta = rng.normal(0.0, 1.0, n)
    rhythm = rng.choice(4, size=n, p=config.rhythm_shares)
    gain = np.where((rhythm == 0) | (rhythm == 3), rng.uniform(0.0, 1.0, n) * config.learning, 0.0)
    org_weights = 1.0 / np.arange(1, config.orgs + 1) ** 0.8
    org = rng.choice(config.orgs, size=n, p=org_weights / org_weights.sum()) + 1
    students = pd.DataFrame({
        "user_id": user_ids,
        "user_id_kind": np.array(["uuid", "uuid_upper", "platform", "email"], dtype=object)[kind],
        "theta": theta, "theta_gain": gain,
        "rhythm": np.array(RHYTHMS, dtype=object)[rhythm],
        "org_id": org.astype(np.int64),
    })
    return students, rhythm


def _plan(config: SyntheticConfig) -> _Plan:
    seed = config.seed
    items, a, b, time_intensity, item_topic, pools = _make_items(config, np.random.default_rng([seed, 1]))
    rng = np.random.default_rng([seed, 2])
    students, rhythm = _make_students(config, rng)
    gain = students["theta_gain"].to_numpy()
    n_students, n_topics = config.students, len(config.topics)

    # The calendar in the students' local days: local day k starts at local_first + k.
    offset_ms = config.utc_offset_hours * 3_600_000
    start_ms = _epoch_ms(config.start_date)
    end_ms = _epoch_ms(config.end_date) + DAY_MS
    local_first = datetime.fromtimestamp((start_ms + offset_ms) / 1000, timezone.utc).date()
    local_last = datetime.fromtimestamp((end_ms - 1 + offset_ms) / 1000, timezone.utc).date()
    n_days = (local_last - local_first).days + 1
    day_index = np.arange(n_days)
    weekend = np.array([(local_first + timedelta(days=int(k))).weekday() >= 5 for k in day_index])
    progress = day_index / max(n_days - 1, 1)

    # Rhythms: each student studies on a local day with a probability set by the rhythm
    # (fading: decays; dropped: zero after last_day; new: zero before first_day), at most twice.
    p_day = rng.uniform(0.35, 0.85, n_students)
    p_double = rng.uniform(0.05, 0.35, n_students)
    fade = rng.uniform(0.15, 0.5, n_students)
    drop_day = np.floor(rng.uniform(0.15, 0.75, n_students) * n_days).astype(np.int64)
    join_day = np.floor(rng.uniform(0.3, 0.8, n_students) * n_days).astype(np.int64)
    first_k = np.where(rhythm == 3, join_day, 0)
    last_k = np.where(rhythm == 2, drop_day, n_days - 1)
    habit = rng.choice(24, size=n_students, p=_WEEKDAY_HOURS / _WEEKDAY_HOURS.sum()) + rng.random(n_students)
    students["first_day"] = [local_first + timedelta(days=int(k)) for k in first_k]
    students["last_day"] = [local_first + timedelta(days=int(k)) for k in last_k]

    # The calendar, a block of students at a time (bounded memory), each with its own stream.
    first_local_ms = _epoch_ms(local_first) - offset_ms
    parts = []
    for block, low_student in enumerate(range(0, n_students, _STUDENT_BLOCK)):
        block_students = np.arange(low_student, min(low_student + _STUDENT_BLOCK, n_students))
        block_rng = np.random.default_rng([seed, 5, block])
        probability = p_day[block_students, None] * np.where(weekend, 0.75, 1.0)[None, :]
        fading = rhythm[block_students] == 1
        probability[fading] *= np.exp(-progress[None, :] / fade[block_students][fading, None])
        probability[(day_index[None, :] < first_k[block_students, None])
                    | (day_index[None, :] > last_k[block_students, None])] = 0.0
        studies = block_rng.random(probability.shape) < probability
        twice = studies & (block_rng.random(probability.shape) < p_double[block_students, None])
        # Session times: a habitual hour (65%) or the population's hour profile, local time;
        # a second session of the day 1-4 hours later (or earlier, near midnight).
        cell_row, cell_day = np.nonzero(studies)
        cell_student = block_students[cell_row]
        cells = len(cell_row)
        hour = np.where(
            weekend[cell_day],
            block_rng.choice(24, size=cells, p=_WEEKEND_HOURS / _WEEKEND_HOURS.sum()),
            block_rng.choice(24, size=cells, p=_WEEKDAY_HOURS / _WEEKDAY_HOURS.sum()),
        ) + block_rng.random(cells)
        hour = np.where(block_rng.random(cells) < 0.65, habit[cell_student] + block_rng.normal(0.0, 1.2, cells), hour)
        hour = np.clip(hour, 0.0, 23.999)
        second = twice[cell_row, cell_day]
        gap = block_rng.uniform(1.0, 4.0, cells)
        hour2 = np.where(hour + gap < 24.0, hour + gap, hour - gap)
        b_student = np.concatenate([cell_student, cell_student[second]]).astype(np.int32)
        b_ms = first_local_ms + np.concatenate([cell_day, cell_day[second]]).astype(np.int64) * DAY_MS \
            + np.floor(np.concatenate([hour, hour2[second]]) * 3_600_000).astype(np.int64)
        keep = (b_ms >= start_ms) & (b_ms < end_ms)
        parts.append((b_student[keep], b_ms[keep]))
    s_student = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int32)
    s_ms = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.int64)
    del parts
    order = np.lexsort((s_student, s_ms))
    s_student, s_ms = s_student[order], s_ms[order]
    n = len(s_ms)

    # Per-session attributes (in COPY order).
    rng = np.random.default_rng([seed, 3])
    favourite = np.argsort(rng.random((n_students, n_topics)), axis=1)[:, :2]
    fav = favourite[s_student, rng.integers(0, favourite.shape[1], n)]
    topic1 = np.where(rng.random(n) < 0.75, fav, rng.integers(0, n_topics, n)).astype(np.int16)
    if n_topics > 1:
        other = (topic1 + rng.integers(1, n_topics, n)) % n_topics
        topic2 = np.where(rng.random(n) < 0.4, other, -1).astype(np.int16)
    else:
        topic2 = np.full(n, -1, dtype=np.int16)
    low, high = config.questions_per_session
    n_questions = rng.integers(low, high + 1, n).astype(np.int16)
    partial = config.partial_timing_share
    timing = rng.choice(4, size=n, p=[1 - config.untimed_share - partial, config.untimed_share,
                                     partial * 0.6, partial * 0.4]).astype(np.int8)
    strings = rng.random(n) < 0.10
    qid_str = rng.random(n) < 0.15
    correct_variant = rng.choice(3, size=n, p=[0.8, 0.1, 0.1]).astype(np.int8)
    form = rng.integers(1, 6, n).astype(np.int16)
    updated = rng.random(n) < 0.05
    update_ms = np.where(updated, rng.integers(60_000, 900_000, n), 0)
    update_ms = np.where(s_ms + update_ms < end_ms, update_ms, 0).astype(np.int32)

    kind = np.full(n, -1, dtype=np.int8)
    bad = np.zeros(n, dtype=np.int8)
    if config.malformed:
        per_kind = min(max(config.malformed_min, round(config.malformed_share * n)), n // len(MALFORMED_KINDS))
        chosen = rng.permutation(n)[: per_kind * len(MALFORMED_KINDS)]
        kind[chosen] = np.repeat(np.arange(len(MALFORMED_KINDS), dtype=np.int8), per_kind)
        element_kind = (kind >= 0) & ~np.isin(kind, [MALFORMED_KINDS.index(k) for k in SESSION_KINDS])
        bad[element_kind] = 1 + (rng.random(int(element_kind.sum())) < 0.3)

    students["sessions"] = np.bincount(s_student, minlength=n_students)
    user_tokens = [_copy_escape(u.encode()) + b"\t" for u in students["user_id"]]
    org_tokens = [b"%d\t" % o for o in students["org_id"]]
    return _Plan(
        config=config, start_ms=start_ms, end_ms=end_ms, items=items, students=students,
        item_a=a, item_b=b, item_time=time_intensity, item_topic=item_topic, pools=pools,
        theta=students["theta"].to_numpy(), gain=gain,
        user_tokens=user_tokens, org_tokens=org_tokens,
        s_student=s_student, s_ms=s_ms, s_update_ms=update_ms, s_topic1=topic1, s_topic2=topic2,
        s_questions=n_questions, s_timing=timing, s_strings=strings, s_qid_str=qid_str,
        s_correct_variant=correct_variant, s_form=form, s_kind=kind, s_bad=bad,
    )


# --------------------------------------------------------------------------------------------
# Token tables: every piece of text that repeats is formatted once; a chunk is then a
# b"".join over table look-ups (no per-question Python code).
# --------------------------------------------------------------------------------------------


@dataclass
class _Tables:
    head: np.ndarray      # (2, 2, items): ['', ','] + '{"question_id":1001' / '{"question_id":"1001"'
    correct: np.ndarray   # (3 variants, 2 values)
    time: np.ndarray      # (3 modes: absent, number, string, deciseconds)
    hints: np.ndarray     # (3 modes, 0..3 hints, topics): ',"used_hints":0,"topic":"대수"}'
    topic: np.ndarray     # (topics,): ',"topic":"대수"}'
    json_head: np.ndarray  # (4 timing, 2 strings, 5 forms, 3 shapes: array, object, missing)
    json_tail: np.ndarray  # (3 shapes)
    scaled: np.ndarray    # tenths 1000..9000 -> "100.0\t".."900.0\t"
    tenths: np.ndarray    # 0..1000 -> "0.0\t".."100.0\t"
    integers: np.ndarray  # 0..999 -> "n\t"
    statuses: np.ndarray
    exams: np.ndarray     # (topics, 5 forms): exam_id = 100 * (topic + 1) + form


def _object_array(values) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def _tables(plan: _Plan) -> _Tables:
    config = plan.config
    ids = plan.items["item_id"].to_numpy()
    head = np.empty((2, 2, len(ids)), dtype=object)  # (first element?, id as string?, item)
    for later, separator in enumerate((b"", b",")):
        head[later, 0] = [separator + b'{"question_id":%d' % i for i in ids]
        head[later, 1] = [separator + b'{"question_id":"%d"' % i for i in ids]
    correct = np.empty((3, 2), dtype=object)
    correct[0] = [b',"is_correct":false', b',"is_correct":true']
    correct[1] = [b',"is_correct":"false"', b',"is_correct":"true"']
    correct[2] = [b',"correct":false', b',"correct":true']
    numbers = [b"%d.%d" % divmod(d, 10) for d in range(MAX_TIME_DECISECONDS + 1)]
    time_table = np.empty((3, MAX_TIME_DECISECONDS + 1), dtype=object)
    time_table[0] = [b""] * len(numbers)
    time_table[1] = [b',"time_spent_sec":' + v for v in numbers]
    time_table[2] = [b',"time_spent_sec":"' + v + b'"' for v in numbers]
    topic = _object_array([b',"topic":' + _json_text(t) + b"}" for t in config.topics])
    hints = np.empty((3, 4, len(config.topics)), dtype=object)  # (mode, hints, topic), closes the element
    for h in range(4):
        hints[0, h] = topic
        hints[1, h] = [b',"used_hints":%d' % h + t for t in topic]
        hints[2, h] = [b',"used_hints":"%d"' % h + t for t in topic]
    json_head = np.empty((4, 2, 5, 3), dtype=object)
    for timing in range(4):
        for strings in range(2):
            for form in range(5):
                prefix = b'{"exam_version":"v3.%d","client":"%s","mode":"adaptive",' % (
                    form + 1, _CLIENTS[timing][strings].encode())
                json_head[timing, strings, form] = [prefix + b'"questions":[',
                                                    prefix + b'"questions":{"items":[',
                                                    prefix + b'"answers":[']
    json_tail = _object_array([b"]}\t", b"]}}\t", b"]}\t"])
    scaled = _object_array([b"%d.%d\t" % divmod(v, 10) for v in range(1000, 9001)])
    tenths = _object_array([b"%d.%d\t" % divmod(v, 10) for v in range(1001)])
    integers = _object_array([b"%d\t" % v for v in range(1000)])
    statuses = _object_array([b"ready\t", b"graded\t"])
    exams = np.empty((len(config.topics), 5), dtype=object)
    for t in range(len(config.topics)):
        exams[t] = [b"%d\t" % (100 * (t + 1) + form) for form in range(1, 6)]
    return _Tables(head, correct, time_table, hints, topic, json_head, json_tail, scaled, tenths,
                   integers, statuses, exams)


# --------------------------------------------------------------------------------------------
# Chunks
# --------------------------------------------------------------------------------------------

_KIND = {name: index for index, name in enumerate(MALFORMED_KINDS)}
_HEAD_TOKENS, _TAIL_TOKENS, _QUESTION_TOKENS = 7, 9, 4
_JOIN_SLICE = 32_768  # bytes.join over very long lists allocates a buffer per item: join slices


@dataclass
class _Chunk:
    payload: bytes
    sessions: int
    questions: int
    attempts: int
    findings: list[tuple[str, str]]
    # Only when details were asked for (generate):
    question_frame: pd.DataFrame | None = None


def _session_ids(plan: _Plan, start: int, stop: int) -> list[bytes]:
    prefix = b"s-%d-" % plan.config.seed
    return [prefix + b"%08d\t" % (i + 1) for i in range(start, stop)]


def _chunk(plan: _Plan, tables: _Tables, number: int, details: bool = False) -> _Chunk:
    config = plan.config
    start = number * CHUNK_SESSIONS
    stop = min(start + CHUNK_SESSIONS, plan.sessions)
    m = stop - start
    rng = np.random.default_rng([config.seed, 4, number])
    student = plan.s_student[start:stop]
    topic1, topic2 = plan.s_topic1[start:stop], plan.s_topic2[start:stop]

    # Questions: top-k without replacement over the one or two topics' items (Gumbel trick),
    # the main topic twice as likely. Item choice does not depend on θ (keeps IRT MAR).
    width = plan.pools.shape[1]
    candidates = np.concatenate([plan.pools[topic1], np.where(topic2[:, None] >= 0, plan.pools[topic2], -1)], axis=1)
    keys = rng.gumbel(size=candidates.shape) + np.repeat([np.log(2.0), 0.0], width)[None, :]
    keys[candidates < 0] = -np.inf
    high = config.questions_per_session[1]
    picked = np.argsort(-keys, axis=1, kind="stable")[:, :high]
    chosen = np.take_along_axis(candidates, picked, axis=1)
    take = (np.arange(chosen.shape[1])[None, :] < plan.s_questions[start:stop, None]) & (chosen >= 0)
    count = take.sum(axis=1)
    q_session = np.repeat(np.arange(m), count)
    q_item = chosen[take]
    q_position = np.arange(len(q_item)) - np.repeat(np.cumsum(count) - count, count)
    n_q = len(q_item)

    # Answers from the 2PL with the student's θ at the session (learning drift), time and hints.
    progress = (plan.s_ms[start:stop] - plan.start_ms) / (plan.end_ms - plan.start_ms)
    theta_s = plan.theta[student] + plan.gain[student] * progress
    theta_q = theta_s[q_session]
    a, b = plan.item_a[q_item], plan.item_b[q_item]
    correct = rng.random(n_q) < 1.0 / (1.0 + np.exp(-a * (theta_q - b)))
    hinted = rng.random(n_q) < 1.0 / (1.0 + np.exp(1.7 + 0.8 * theta_q - 0.4 * b))
    n_hints = hinted * (1 + rng.binomial(2, 0.2, n_q))
    log_time = (np.log(55.0) + np.log(plan.item_time[q_item]) - 0.15 * theta_q
                - np.where(correct, 0.2, 0.0) + 0.25 * hinted + rng.normal(0.0, 0.45, n_q))
    decis = np.clip(np.rint(np.exp(log_time) * 10), 20, MAX_TIME_DECISECONDS).astype(np.int64)

    timing = plan.s_timing[start:stop]
    strings = plan.s_strings[start:stop].astype(np.int64)
    time_mode = np.where((timing == _TIMING_BOTH) | (timing == _TIMING_TIME_ONLY), 1 + strings, 0)
    hint_mode = np.where((timing == _TIMING_BOTH) | (timing == _TIMING_HINTS_ONLY), 1 + strings, 0)
    variant = plan.s_correct_variant[start:stop]

    # Scores as an adaptive-testing engine reports them: the MAP ability under a N(0, 1) prior
    # (Newton steps; the log posterior is concave) with the true item parameters, its standard
    # error 1 / sqrt(information + 1), scaled 500 + 100 θ, and the percentile Φ(θ).
    first = np.cumsum(count) - count
    a_pad = np.where(take, plan.item_a[np.maximum(chosen, 0)], 0.0)
    b_pad = plan.item_b[np.maximum(chosen, 0)]
    correct_pad = np.zeros(take.shape, dtype=bool)
    correct_pad[take] = correct
    estimate = np.zeros(m)
    for _ in range(8):
        p = 1.0 / (1.0 + np.exp(-a_pad * (estimate[:, None] - b_pad)))
        gradient = (a_pad * (correct_pad - p)).sum(axis=1) - estimate
        information = (a_pad**2 * p * (1.0 - p)).sum(axis=1) + 1.0
        estimate = np.clip(estimate + gradient / information, -4.0, 4.0)
    p = 1.0 / (1.0 + np.exp(-a_pad * (estimate[:, None] - b_pad)))
    standard_error = 1.0 / np.sqrt((a_pad**2 * p * (1.0 - p)).sum(axis=1) + 1.0)
    raw_score = correct_pad.sum(axis=1)

    # Question tokens.
    q_tokens = np.empty((n_q, _QUESTION_TOKENS), dtype=object)
    q_topic = plan.item_topic[q_item]
    q_tokens[:, 0] = tables.head[(q_position > 0).astype(np.int64),
                                 plan.s_qid_str[start:stop][q_session].astype(np.int64), q_item]
    q_tokens[:, 1] = tables.correct[variant[q_session], correct.astype(np.int64)]
    q_tokens[:, 2] = tables.time[time_mode[q_session], decis]
    q_tokens[:, 3] = tables.hints[hint_mode[q_session], n_hints, q_topic]

    # Malformed input: session shapes and corrupted elements.
    kind = plan.s_kind[start:stop]
    shape = np.zeros(m, dtype=np.int64)
    shape[kind == _KIND["questions_not_array"]] = 1
    shape[kind == _KIND["questions_missing"]] = 2
    session_ids = _session_ids(plan, start, stop)
    findings: list[tuple[str, str]] = []
    q_kind = np.full(n_q, -1, dtype=np.int8)
    dropped = 0
    for local in np.flatnonzero(kind >= 0):
        name = MALFORMED_KINDS[kind[local]]
        sid = session_ids[local][:-1].decode()
        if name in SESSION_KINDS:
            findings.append((sid, name))
            continue
        positions = rng.choice(count[local], size=min(int(plan.s_bad[start + local]), int(count[local])), replace=False)
        for position in np.sort(positions):
            row = first[local] + position
            q_kind[row] = kind[local]
            findings.append((sid, name))
            item_id = config.first_item_id + int(q_item[row])
            separator = b"," if position > 0 else b""
            if name == "question_not_object":
                value = b"%d" % item_id if row % 2 == 0 else b'"%d"' % item_id
                q_tokens[row] = [separator + value, b"", b"", b""]
                dropped += 1
            elif name == "question_id_missing":
                if row % 2 == 0:
                    q_tokens[row, 0] = separator + b'{"question_id":""'
                else:  # no key at all; the next field loses its leading comma
                    q_tokens[row, 0] = separator + b"{"
                    q_tokens[row, 1] = q_tokens[row, 1][1:]
                dropped += 1
            elif name == "question_id_unreadable":
                q_tokens[row, 0] = separator + b'{"question_id":"q-%d"' % item_id
                dropped += 1
            elif name == "correct_unreadable":
                q_tokens[row, 1] = b',"correct":"maybe"' if variant[local] == 2 else b',"is_correct":"maybe"'
            elif name == "time_spent_unreadable":
                q_tokens[row, 2] = b',"time_spent_sec":"fast"'
            elif name == "used_hints_unreadable":
                q_tokens[row, 3] = b',"used_hints":"1.5"' + tables.topic[q_topic[row]]

    # Session tokens.
    created = plan.s_ms[start:stop]
    updated = created + plan.s_update_ms[start:stop]
    head = np.empty((m, _HEAD_TOKENS), dtype=object)
    head[:, 0] = _uuid_texts(rng.integers(0, 256, (m, 16), dtype=np.uint8), b"\t").tolist()
    head[:, 1] = session_ids
    users = [plan.user_tokens[s] for s in student]
    for local in np.flatnonzero(kind == _KIND["user_id_missing"]):
        users[local] = b"\\N\t"
    head[:, 2] = users
    head[:, 3] = tables.exams[topic1, plan.s_form[start:stop] - 1]
    head[:, 4] = [plan.org_tokens[s] for s in student]
    head[:, 5] = tables.statuses[(plan.s_update_ms[start:stop] > 0).astype(np.int64)]
    head[:, 6] = tables.json_head[timing, strings, plan.s_form[start:stop] - 1, shape]
    tail = np.empty((m, _TAIL_TOKENS), dtype=object)
    tail[:, 0] = tables.json_tail[shape]
    tail[:, 1] = tables.integers[raw_score]
    tail[:, 2] = tables.scaled[np.rint(5000 + 1000 * estimate).astype(np.int64) - 1000]
    tail[:, 3] = tables.tenths[np.rint(1000 * standard_error).astype(np.int64)]
    tail[:, 4] = tables.tenths[np.rint(1000 * ndtr(estimate)).astype(np.int64)]
    tail[:, 5] = np.datetime_as_string(created.astype("datetime64[ms]"), unit="ms").astype("S23").tolist()
    tail[:, 6] = b"+00\t"
    tail[:, 7] = np.datetime_as_string(updated.astype("datetime64[ms]"), unit="ms").astype("S23").tolist()
    tail[:, 8] = b"+00\n"

    # One flat token list in COPY order, then a single join.
    length = _HEAD_TOKENS + _TAIL_TOKENS + _QUESTION_TOKENS * count
    offset = np.cumsum(length) - length
    flat = np.empty(int(length.sum()), dtype=object)
    flat[offset[:, None] + np.arange(_HEAD_TOKENS)[None, :]] = head
    q_offset = offset[q_session] + _HEAD_TOKENS + _QUESTION_TOKENS * q_position
    flat[q_offset[:, None] + np.arange(_QUESTION_TOKENS)[None, :]] = q_tokens
    t_offset = offset + _HEAD_TOKENS + _QUESTION_TOKENS * count
    flat[t_offset[:, None] + np.arange(_TAIL_TOKENS)[None, :]] = tail
    payload = b"".join([b"".join(flat[i:i + _JOIN_SLICE].tolist()) for i in range(0, len(flat), _JOIN_SLICE)])

    in_array = shape[q_session] == 0
    attempts = int(in_array.sum()) - dropped
    frame = None
    if details:
        has_time = time_mode[q_session] > 0
        has_hints = hint_mode[q_session] > 0
        frame = pd.DataFrame({
            "session_id": np.array([s[:-1].decode() for s in session_ids], dtype=object)[q_session],
            "position": q_position.astype(np.int64),
            "item_id": (config.first_item_id + q_item).astype(np.int64),
            "topic": np.array(config.topics, dtype=object)[plan.item_topic[q_item]],
            "theta": theta_q,
            "correct": correct,
            "time_spent_sec": np.where(has_time, decis / 10.0, np.nan),
            "used_hints": pd.array(np.where(has_hints, n_hints, 0), dtype="Int64"),
            "malformed": np.where(q_kind >= 0, np.array(MALFORMED_KINDS, dtype=object)[np.maximum(q_kind, 0)], None),
        })
        frame.loc[~has_hints, "used_hints"] = pd.NA
    return _Chunk(payload, m, n_q, attempts, findings, frame)


def _chunk_count(plan: _Plan) -> int:
    return -(-plan.sessions // CHUNK_SESSIONS)


def _parse_copy_text(payload: bytes) -> pd.DataFrame:
    lines = payload.decode().split("\n")[:-1]
    frame = pd.DataFrame([line.split("\t") for line in lines], columns=list(COPY_COLUMNS))
    frame["user_id"] = frame["user_id"].where(frame["user_id"] != "\\N", None)
    for column in ("exam_id", "org_id", "score_raw"):
        frame[column] = frame[column].astype(np.int64)
    for column in ("score_scaled", "standard_error", "percentile"):
        frame[column] = frame[column].astype(float)
    for column in ("created_at", "updated_at"):
        frame[column] = pd.to_datetime(frame[column].str[:-3], utc=True)
    return frame


def generate(config: SyntheticConfig) -> SyntheticData:
    """All rows in memory (about 1.5 kB of COPY text a session, plus frames): for tests and
    inspection. seed_exam_results streams the identical rows without holding them."""
    plan = _plan(config)
    tables = _tables(plan)
    chunks = [_chunk(plan, tables, number, details=True) for number in range(_chunk_count(plan))]
    payload_chunks = [c.payload for c in chunks]
    sessions = _parse_copy_text(b"".join(payload_chunks)) if chunks else pd.DataFrame(columns=list(COPY_COLUMNS))
    questions = (pd.concat([c.question_frame for c in chunks], ignore_index=True) if chunks
                 else pd.DataFrame(columns=["session_id", "position", "item_id", "topic", "theta", "correct",
                                            "time_spent_sec", "used_hints", "malformed"]))
    findings = [finding for c in chunks for finding in c.findings]
    return SyntheticData(config=config, sessions=sessions, questions=questions,
                         truth=Truth(items=plan.items, students=plan.students, malformed=findings),
                         copy_chunks=payload_chunks)


def session_count(config: SyntheticConfig) -> int:
    """Sessions the config yields (plans the calendar only; about 1 s per million sessions)."""
    return _plan(config).sessions


def _summary_students(plan: _Plan) -> int:
    named = plan.s_kind != _KIND["user_id_missing"]
    return int(len(np.unique(plan.s_student[named])))


def seed_exam_results(connection, config: SyntheticConfig) -> SeedSummary:
    """Generate the config's rows and COPY them into exam_results on `connection`.

    connection is a psycopg 3 Connection (from SQLAlchemy: `sa_connection.connection.driver_connection`).
    The function never commits or rolls back: the caller owns the transaction (on a
    non-autocommit connection the rows appear when the caller commits; on error nothing is
    written and the caller must roll back). It uses one COPY statement; chunks are generated
    on a background thread while the server parses the previous chunk (at most two chunks are
    held in memory). exam_results must exist (see EXAM_RESULTS_DDL); the session ids
    ("s-<seed>-<n>") must not be there already.
    """
    started = time.perf_counter()
    plan = _plan(config)
    tables = _tables(plan)
    handoff: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()
    totals = {"questions": 0, "attempts": 0}
    findings: list[tuple[str, str]] = []

    def produce() -> None:
        try:
            for number in range(_chunk_count(plan)):
                if stop.is_set():
                    return
                chunk = _chunk(plan, tables, number)
                totals["questions"] += chunk.questions
                totals["attempts"] += chunk.attempts
                findings.extend(chunk.findings)
                while not stop.is_set():
                    try:
                        handoff.put(chunk.payload, timeout=0.1)
                        break
                    except queue.Full:
                        continue
            handoff.put(None)
        except BaseException as error:  # handed to the writer, which re-raises it
            handoff.put(error)

    producer = threading.Thread(target=produce, name="synthetic-exam-results", daemon=True)
    producer.start()
    try:
        with connection.cursor() as cursor, cursor.copy(COPY_SQL) as copy:
            while (item := handoff.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                copy.write(item)
    finally:
        stop.set()
        while producer.is_alive():
            try:
                handoff.get(timeout=0.1)
            except queue.Empty:
                pass
        producer.join()
    counts = {kind: 0 for kind in MALFORMED_KINDS}
    for _, kind in findings:
        counts[kind] += 1
    return SeedSummary(
        sessions=plan.sessions, questions=totals["questions"], attempts=totals["attempts"],
        students=_summary_students(plan), malformed=counts,
        first_day=config.start_date, last_day=config.end_date, seconds=time.perf_counter() - started,
    )
