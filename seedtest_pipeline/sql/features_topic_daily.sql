-- features_topic_daily for the days [:first_day, :end_day), read through the attempt row rules
-- (attempt_elements), plus per group the findings of input those rules could not read, so one
-- pass over the elements gives both. Groups of unreadable input only (attempts = 0, or no user_id)
-- carry findings and are not features. improvement is the user's I_t as of each day, which needs
-- the user's daily counts of the 27 days before the window too: the caller puts them in the
-- temporary table features_context (user_id, date, attempts, correct) first, either counted from
-- exam_results (features_context.sql) or summed from the features of the part computed just
-- before. An attempt is timed when response_time_ms > 0 (the view maps a missing time_spent_sec
-- to 0).
--
-- Day by day (LATERAL): each day's results come from exam_results_day_user_idx in user order
-- and are grouped on their own, so a sort never holds more than a day, whatever the
-- window, and only sorts each user's few elements by topic and time (an incremental sort).
-- Grouping keys compare in the "C" collation: byte order sorts several times faster than the
-- locale's; equality does not depend on the collation. Days come out in order, and within a day
-- the groups in key order.
WITH topic_days AS MATERIALIZED (
  SELECT day.date, groups.*
  FROM (SELECT d::date AS date FROM generate_series(CAST(:first_day AS date), CAST(:end_day AS date) - 1,
                                                    interval '1 day') AS d) AS day
  CROSS JOIN LATERAL (
    -- The user_id the pipeline writes (seedtest_user_key), once per group.
    SELECT user_id, topic_id, seedtest_user_key(user_id) AS user_key,
           count(*) FILTER (WHERE kept)::integer AS attempts,
           count(*) FILTER (WHERE kept AND correct)::integer AS correct,
           count(*) FILTER (WHERE kept AND hint_used)::integer AS hints,
           sum(response_time_ms) FILTER (WHERE kept AND response_time_ms > 0) AS timed_ms_sum,
           -- One ORDER BY shared by both arrays: the day's sort delivers it, no sort per group.
           array_agg(response_time_ms ORDER BY response_time_ms)
             FILTER (WHERE kept AND response_time_ms > 0) AS timed_ms,
           array_agg(response_time_ms ORDER BY response_time_ms)
             FILTER (WHERE kept AND correct AND response_time_ms > 0) AS timed_correct_ms,
           max(completed_at) FILTER (WHERE kept) AS last_seen_at,
           array_agg(finding) FILTER (WHERE finding IS NOT NULL) AS findings
    FROM (
      -- Every value is read here, below the sort, so the sort moves a few narrow columns instead
      -- of each element's JSON; OFFSET 0 keeps PostgreSQL from evaluating them above the sort
      -- instead. The sort keys come first, the fixed-width one first of all: a sort reaches a
      -- column directly only up to the first text column, and walks past text to reach others. An element's findings are one value: its kinds, comma-separated, ':' and its
      -- session id (no kind contains ',' or ':'); NULL for almost every element.
      SELECT response_time_ms, user_id COLLATE "C" AS user_id, coalesce(topic_id, 'general') COLLATE "C" AS topic_id,
             completed_at, item_id IS NOT NULL AS kept, correct, hint_used,
             CASE WHEN element_finding IS NOT NULL OR time_spent_unreadable OR time_spent_implausible
                       OR used_hints_unreadable OR used_hints_implausible OR topic_finding IS NOT NULL
                  THEN concat_ws(',', element_finding,
                                 CASE WHEN time_spent_unreadable THEN 'time_spent_unreadable' END,
                                 CASE WHEN time_spent_implausible THEN 'time_spent_implausible' END,
                                 CASE WHEN used_hints_unreadable THEN 'used_hints_unreadable' END,
                                 CASE WHEN used_hints_implausible THEN 'used_hints_implausible' END,
                                 topic_finding)
                       || ':' || session_id
             END AS finding
      FROM attempt_elements
      -- Sessions of a user_id too long to be a key are reported (user_id_too_long), not read; the
      -- condition is the index's, which holds only the others.
      WHERE (completed_at AT TIME ZONE 'UTC')::date = day.date AND (user_id IS NULL OR length(user_id) <= 256)
      ORDER BY 2  -- the index's order within the day: no sort
      OFFSET 0
    ) AS e
    GROUP BY 1, 2
  ) AS groups
),
-- One student, one user_id (docs/decisions.md): the days on which a student's sessions came under
-- a spelling other than the one the pipeline writes (a uuid in upper case, say). Almost always
-- none; their groups are merged under the written user_id, the others pass through as they are.
respelled AS MATERIALIZED (
  SELECT DISTINCT date, user_key FROM topic_days WHERE user_key <> user_id
),
feature_groups AS (
  -- "IN (respelled)" is a hashed lookup per group: no join, no sort of the whole window.
  SELECT date, user_key AS user_id, topic_id, attempts, correct, hints, timed_ms_sum, timed_ms,
         timed_correct_ms, last_seen_at, findings
  FROM topic_days
  WHERE NOT coalesce((date, user_key) IN (SELECT date, user_key FROM respelled), false)
  UNION ALL
  SELECT date, user_key, topic_id, sum(attempts)::integer, sum(correct)::integer, sum(hints)::integer,
         sum(timed_ms_sum), seedtest_sorted(seedtest_concat(timed_ms)),
         seedtest_sorted(seedtest_concat(timed_correct_ms)), max(last_seen_at), seedtest_concat(findings)
  FROM topic_days
  WHERE (date, user_key) IN (SELECT date, user_key FROM respelled)
  GROUP BY date, user_key, topic_id
),
user_days AS (
  -- integer counts: sum() over integers is a bigint, where over bigints it would be a numeric.
  SELECT user_key AS user_id, date, sum(attempts)::integer AS attempts, sum(correct)::integer AS correct
  FROM topic_days WHERE user_key IS NOT NULL AND attempts > 0 GROUP BY user_key, date
  UNION ALL
  SELECT user_id, date, attempts, correct FROM pg_temp.features_context
),
user_improvement AS (
  SELECT user_id, date,
         kpi_improvement(sum(correct) OVER recent14, sum(attempts) OVER recent14,
                         sum(correct) OVER previous14, sum(attempts) OVER previous14) AS improvement
  -- Days as integers: RANGE frames over an integer compare far faster than over date + interval.
  FROM (SELECT *, date - DATE '2000-01-01' AS day FROM user_days) AS numbered
  WINDOW recent14 AS (PARTITION BY user_id ORDER BY day RANGE BETWEEN 13 PRECEDING AND CURRENT ROW),
         previous14 AS (PARTITION BY user_id ORDER BY day RANGE BETWEEN 27 PRECEDING AND 14 PRECEDING)
)
SELECT t.user_id, t.topic_id, t.date, t.attempts, t.correct, t.hints,
       round(t.timed_ms_sum::numeric / cardinality(t.timed_ms))::integer AS avg_time_ms,
       round(seedtest_sorted_median(t.timed_ms))::integer AS rt_median,
       round(seedtest_sorted_median(t.timed_correct_ms))::integer AS rt_correct_median,
       round(i.improvement::numeric, 6) AS improvement, t.last_seen_at,
       now() AS computed_at, t.findings
FROM feature_groups t
LEFT JOIN user_improvement i ON i.user_id = t.user_id AND i.date = t.date
-- The primary key's order (date first), so the rows reach it nearly in order when written.
ORDER BY t.date, t.user_id, t.topic_id
