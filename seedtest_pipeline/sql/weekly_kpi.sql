-- The KPIs of one ISO week per user (SPEC §4), as the jsonb this writer owns in weekly_kpi.kpis,
-- under the keys the platform reads: I_t, E_t, R_t, A_t, P, S.
-- Attempts are read through the attempt row rules from the 90 days ending at :as_of (users idle
-- longer get no row, as in inactivity). age = days before as_of (0 = the as_of day).
-- The week's activity summary is read from features_topic_daily.
WITH recent_attempts AS (
  SELECT user_id, session_id, item_id, correct, hint_used, response_time_ms,
         completed_at, result_id, question_no,
         CAST(:as_of AS date) - (completed_at AT TIME ZONE 'UTC')::date AS age
  FROM attempt_rows
  WHERE completed_at >= :window_start AND completed_at < :as_of_end AND user_id IS NOT NULL
),
per_user AS (
  SELECT user_id,
         count(*) FILTER (WHERE age <= 13) AS attempts_r14,
         count(*) FILTER (WHERE age <= 13 AND correct) AS correct_r14,
         count(*) FILTER (WHERE age BETWEEN 14 AND 27) AS attempts_p14,
         count(*) FILTER (WHERE age BETWEEN 14 AND 27 AND correct) AS correct_p14,
         percentile_cont(0.5) WITHIN GROUP (ORDER BY response_time_ms)
           FILTER (WHERE age <= 27 AND correct AND response_time_ms > 0) AS median_correct_ms_r28,
         percentile_cont(0.5) WITHIN GROUP (ORDER BY response_time_ms)
           FILTER (WHERE age BETWEEN 28 AND 55 AND correct AND response_time_ms > 0) AS median_correct_ms_p28,
         count(*) FILTER (WHERE age <= 27) AS attempts_28,
         count(DISTINCT session_id) FILTER (WHERE age <= 27) AS sessions_28,
         count(DISTINCT age) FILTER (WHERE age <= 27) AS active_days_28,
         max(age) FILTER (WHERE age <= 27) - min(age) FILTER (WHERE age <= 27) AS span_days_28,
         avg(hint_used::int) FILTER (WHERE age <= 27) AS hints_per_attempt_28,
         count(DISTINCT session_id) FILTER (WHERE age <= 55) AS sessions_56,
         count(DISTINCT age) FILTER (WHERE age <= 55) AS active_days_56,
         max(age) FILTER (WHERE age <= 55) - min(age) FILTER (WHERE age <= 55) AS span_days_56,
         min(age) AS days_since_last_activity
  FROM recent_attempts
  GROUP BY user_id
),
session_seconds AS (
  -- A session's length is the sum of its timed answers; sessions without timing have none.
  SELECT user_id, avg(session_ms) / 1000.0 AS mean_session_seconds_28
  FROM (SELECT user_id, session_id, sum(response_time_ms) FILTER (WHERE response_time_ms > 0) AS session_ms
        FROM recent_attempts WHERE age <= 27 GROUP BY user_id, session_id) AS sessions
  GROUP BY user_id
),
item_recovery AS (
  -- Items answered wrong in the previous 28 days whose first re-attempt in the recent 28 days was right.
  SELECT user_id,
         count(*) FILTER (WHERE first_recent_correct IS NOT NULL) AS reattempted,
         count(*) FILTER (WHERE first_recent_correct) AS recovered
  FROM (SELECT user_id, item_id,
               (array_agg(correct ORDER BY completed_at, result_id, question_no)
                  FILTER (WHERE age <= 27))[1] AS first_recent_correct
        FROM recent_attempts
        GROUP BY user_id, item_id
        HAVING bool_or(NOT correct AND age BETWEEN 28 AND 55)) AS wrong_before
  GROUP BY user_id
),
week_activity AS (
  SELECT user_id, sum(attempts) AS attempts, sum(correct) AS correct, count(DISTINCT date) AS active_days
  FROM features_topic_daily
  WHERE date >= :week_start AND date < :week_end
  GROUP BY user_id
),
latest_theta AS (
  SELECT u.user_id, m.theta, m.se
  FROM per_user u
  CROSS JOIN LATERAL (SELECT theta, se FROM mirt_ability a
                      WHERE a.user_id = u.user_id AND a.fitted_at <= :as_of_end
                      ORDER BY a.fitted_at DESC, a.id DESC LIMIT 1) AS m
)
SELECT u.user_id,
       jsonb_build_object(
         'as_of', CAST(:as_of AS date),
         'I_t', kpi_improvement(u.correct_r14, u.attempts_r14, u.correct_p14, u.attempts_p14),
         'E_t', kpi_efficiency(u.median_correct_ms_p28, u.median_correct_ms_r28),
         'R_t', kpi_recovery(r.recovered, r.reattempted),
         'A_t', kpi_engagement(u.attempts_28, u.sessions_28,
                               u.span_days_28::float8 / nullif(u.active_days_28 - 1, 0),
                               u.hints_per_attempt_28, s.mean_session_seconds_28),
         'P', kpi_goal_probability(t.theta, t.se, CAST(:goal_target AS float8)),
         'S', kpi_churn_risk(u.days_since_last_activity, u.active_days_56,
                             u.span_days_56::float8 / nullif(u.active_days_56 - 1, 0),
                             u.sessions_56),
         'week_attempts', coalesce(w.attempts, 0),
         'week_correct', coalesce(w.correct, 0),
         'week_active_days', coalesce(w.active_days, 0)
       ) AS kpis
FROM per_user u
LEFT JOIN session_seconds s USING (user_id)
LEFT JOIN item_recovery r USING (user_id)
LEFT JOIN week_activity w USING (user_id)
LEFT JOIN latest_theta t USING (user_id)
