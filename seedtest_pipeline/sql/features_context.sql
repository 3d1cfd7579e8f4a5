-- The I_t context of features_topic_daily for a window starting on :first_day: each user's daily
-- attempts and correct answers on the 27 days before it, [:context_day, :first_day), counted
-- through the attempt row rules. Only counts, but it still reads those days' JSON: about 60% of
-- computing their features. Day by day, like the features: each day's results arrive in user
-- order from exam_results_completed_day_user_idx and are counted as they come (no sort, no hash
-- table, no time zone conversion per element).
SELECT context.user_id, day.date, context.attempts, context.correct
FROM (SELECT d::date AS date FROM generate_series(CAST(:context_day AS date), CAST(:first_day AS date) - 1,
                                                  interval '1 day') AS d) AS day
CROSS JOIN LATERAL (
  SELECT user_id COLLATE "C" AS user_id, count(*)::integer AS attempts,
         count(*) FILTER (WHERE correct)::integer AS correct
  FROM attempt_rows
  WHERE (completed_at AT TIME ZONE 'UTC')::date = day.date AND user_id IS NOT NULL
  GROUP BY 1
) AS context
