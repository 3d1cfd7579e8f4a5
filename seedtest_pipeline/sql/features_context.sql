-- The I_t context of features_topic_daily for a window starting on :first_day: each user's daily
-- attempts and correct answers on the 27 days before it, [:context_day, :first_day), counted
-- through the attempt row rules, under the user_id the pipeline writes (seedtest_user_key; a
-- student seen under two spellings on a day has two rows for that day, which the I_t sums add up).
-- Only counts, but it still reads those days' JSON: about 60% of computing their features. Day by
-- day, like the features: each day's results arrive in user order from exam_results_day_user_idx
-- and are counted as they come (no sort, no hash table, no time zone conversion per element).
SELECT context.user_id, day.date, context.attempts, context.correct
FROM (SELECT d::date AS date FROM generate_series(CAST(:context_day AS date), CAST(:first_day AS date) - 1,
                                                  interval '1 day') AS d) AS day
CROSS JOIN LATERAL (
  -- The user key once per raw id, after the grouping.
  SELECT seedtest_user_key(user_id) AS user_id, count(*)::integer AS attempts,
         count(*) FILTER (WHERE correct)::integer AS correct
  FROM (
    SELECT raw_user_id COLLATE "C" AS user_id, correct
    FROM attempt_rows
    -- The index's condition (it holds only user ids short enough to be keys).
    WHERE (completed_at AT TIME ZONE 'UTC')::date = day.date AND length(raw_user_id) <= 256
    ORDER BY 1  -- the index's order within the day: counted as the rows come
    OFFSET 0
  ) AS e
  GROUP BY e.user_id
  OFFSET 0  -- keeps the condition below after the grouping (PostgreSQL would push it down, per element)
) AS context
WHERE context.user_id IS NOT NULL
