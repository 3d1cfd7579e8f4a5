-- user_inactivity for day :day (SPEC §7; docs/decisions.md, "Inactivity"): one row per user whose
-- last activity (a session with an attempt the row rules keep, under the user key of
-- seedtest_user_key) lies more than :threshold_days whole UTC days before :day and within the 90
-- days ending at :day, so days_inactive is in (:threshold_days, 89]. Nothing after :day counts: a
-- day computed again later gives the same rows.
--
-- Bounded and cheap: which user had a session on which day comes from exam_results_day_user_idx
-- over the 90 days (no JSON read); the row rules then read only what decides the answer: each
-- user's sessions of their latest day (almost always that day has a readable attempt; otherwise
-- the days before it, in the rare case), and the inactive users' sessions of the 56 days for
-- their count. Never the whole history, and never all JSON of the 90 days.
WITH session_days AS MATERIALIZED (
  SELECT DISTINCT (coalesce(updated_at, created_at) AT TIME ZONE 'UTC')::date AS day,
         user_id COLLATE "C" AS raw_user_id
  FROM exam_results
  WHERE (coalesce(updated_at, created_at) AT TIME ZONE 'UTC')::date >= CAST(:horizon_start AS date)
    AND (coalesce(updated_at, created_at) AT TIME ZONE 'UTC')::date <= CAST(:day AS date)
    AND length(user_id) <= 256  -- the index's condition: user ids that can be keys
),
-- Per user key, the days with a session, latest first, each with the spelling of the id it came
-- under (a student seen under two spellings on one day has that day twice).
users AS MATERIALIZED (
  SELECT seedtest_user_key(raw_user_id) AS user_id,
         array_agg(day ORDER BY day DESC, raw_user_id) AS days,
         array_agg(raw_user_id ORDER BY day DESC, raw_user_id) AS raw_user_ids
  FROM session_days
  GROUP BY 1
),
last_activity AS MATERIALIZED (
  SELECT u.user_id, u.days, u.raw_user_ids,
         CASE WHEN EXISTS (
                SELECT FROM unnest(u.days, u.raw_user_ids) AS d(day, raw_user_id)
                WHERE d.day = u.days[1]
                  AND EXISTS (SELECT FROM attempt_rows a
                              WHERE (a.completed_at AT TIME ZONE 'UTC')::date = d.day
                                AND a.raw_user_id COLLATE "C" = d.raw_user_id AND length(a.raw_user_id) <= 256))
              THEN u.days[1]
              -- The latest day's sessions had no attempt the rules keep: the latest day that has one.
              ELSE (SELECT max(d.day) FROM unnest(u.days, u.raw_user_ids) AS d(day, raw_user_id)
                    WHERE EXISTS (SELECT FROM attempt_rows a
                                  WHERE (a.completed_at AT TIME ZONE 'UTC')::date = d.day
                                    AND a.raw_user_id COLLATE "C" = d.raw_user_id AND length(a.raw_user_id) <= 256))
         END AS last_day
  FROM users u
  WHERE u.user_id IS NOT NULL
)
SELECT l.user_id,
       CAST(:day AS date) AS day,
       (SELECT max(a.completed_at)
        FROM unnest(l.days, l.raw_user_ids) AS d(day, raw_user_id)
        CROSS JOIN LATERAL (SELECT a.completed_at FROM attempt_rows a
                            WHERE (a.completed_at AT TIME ZONE 'UTC')::date = d.day
                              AND a.raw_user_id COLLATE "C" = d.raw_user_id AND length(a.raw_user_id) <= 256
                            OFFSET 0) AS a
        WHERE d.day = l.last_day) AS last_activity_at,
       CAST(:day AS date) - l.last_day AS days_inactive,
       -- Sessions with an attempt in the 56 days ending at :day, as the churn risk S counts them.
       (SELECT count(DISTINCT a.session_id)::integer
        FROM unnest(l.days, l.raw_user_ids) AS d(day, raw_user_id)
        CROSS JOIN LATERAL (SELECT a.session_id FROM attempt_rows a
                            WHERE (a.completed_at AT TIME ZONE 'UTC')::date = d.day
                              AND a.raw_user_id COLLATE "C" = d.raw_user_id AND length(a.raw_user_id) <= 256
                            OFFSET 0) AS a
        WHERE d.day >= CAST(:sessions_start AS date)) AS sessions_56d,
       CAST(:threshold_days AS integer) AS threshold_days
FROM last_activity l
WHERE l.last_day < CAST(:day AS date) - CAST(:threshold_days AS integer)
ORDER BY l.user_id
