-- features_topic_daily for the days in [:window_start, :window_end), read through the attempt
-- row rules. improvement is the user's I_t as of each day, so the user's daily counts are read
-- from 27 days before the window too. An attempt is timed when response_time_ms > 0 (the view
-- maps a missing time_spent_sec to 0).
WITH window_attempts AS (
  SELECT user_id,
         coalesce(topic_id, 'general') AS topic_id,
         (completed_at AT TIME ZONE 'UTC')::date AS date,
         correct, hint_used, response_time_ms, completed_at
  FROM attempt_rows
  WHERE completed_at >= :window_start AND completed_at < :window_end AND user_id IS NOT NULL
),
user_days AS (
  SELECT user_id,
         (completed_at AT TIME ZONE 'UTC')::date AS date,
         count(*) AS attempts,
         count(*) FILTER (WHERE correct) AS correct
  FROM attempt_rows
  WHERE completed_at >= :context_start AND completed_at < :window_end AND user_id IS NOT NULL
  GROUP BY 1, 2
),
user_improvement AS (
  SELECT user_id, date,
         kpi_improvement((sum(correct) OVER recent14)::bigint, (sum(attempts) OVER recent14)::bigint,
                         (sum(correct) OVER previous14)::bigint,
                         (sum(attempts) OVER previous14)::bigint) AS improvement
  FROM user_days
  WINDOW recent14 AS (PARTITION BY user_id ORDER BY date
                      RANGE BETWEEN '13 days'::interval PRECEDING AND CURRENT ROW),
         previous14 AS (PARTITION BY user_id ORDER BY date
                        RANGE BETWEEN '27 days'::interval PRECEDING AND '14 days'::interval PRECEDING)
),
topic_days AS (
  SELECT user_id, topic_id, date,
         count(*)::integer AS attempts,
         count(*) FILTER (WHERE correct)::integer AS correct,
         count(*) FILTER (WHERE hint_used)::integer AS hints,
         round(avg(response_time_ms) FILTER (WHERE response_time_ms > 0))::integer AS avg_time_ms,
         round(percentile_cont(0.5) WITHIN GROUP (ORDER BY response_time_ms)
               FILTER (WHERE response_time_ms > 0))::integer AS rt_median,
         round(percentile_cont(0.5) WITHIN GROUP (ORDER BY response_time_ms)
               FILTER (WHERE correct AND response_time_ms > 0))::integer AS rt_correct_median,
         max(completed_at) AS last_seen_at
  FROM window_attempts
  GROUP BY 1, 2, 3
)
SELECT t.user_id, t.topic_id, t.date, t.attempts, t.correct, t.hints, t.avg_time_ms, t.rt_median,
       t.rt_correct_median, round(i.improvement::numeric, 6) AS improvement, t.last_seen_at,
       now() AS computed_at
FROM topic_days t
JOIN user_improvement i USING (user_id, date)
