-- SPEC §9, verbatim: the queries the platform's deploy guides run to verify each stage.
-- tests/test_operator_queries.py runs each one (statements end with ';').
SELECT user_id, week_start, kpis->>'I_t' AS improvement, kpis->>'E_t' AS efficiency,
       kpis->>'P' AS goal_prob, kpis->>'S' AS churn_risk, updated_at
FROM weekly_kpi WHERE week_start >= CURRENT_DATE - INTERVAL '7 days' ORDER BY updated_at DESC LIMIT 10;

SELECT user_id, topic_id, date, attempts, correct,
       ROUND((correct::float / NULLIF(attempts, 0) * 100)::numeric, 1) AS accuracy_pct, rt_median, hints, improvement
FROM features_topic_daily WHERE date >= CURRENT_DATE - INTERVAL '7 days' ORDER BY date DESC, user_id LIMIT 20;

SELECT item_id, model, params->>'a' AS discrimination, params->>'b' AS difficulty,
       params->>'c' AS guessing, fitted_at
FROM mirt_item_params ORDER BY fitted_at DESC LIMIT 20;

SELECT user_id, theta, se, model, version, fitted_at FROM mirt_ability ORDER BY fitted_at DESC LIMIT 20;

SELECT user_id, theta, se, version, fitted_at FROM mirt_ability
WHERE fitted_at >= NOW() - INTERVAL '1 hour' ORDER BY fitted_at DESC;

SELECT DATE(fitted_at) AS date, COUNT(*) AS updates, COUNT(DISTINCT user_id) AS unique_users
FROM mirt_ability WHERE fitted_at >= NOW() - INTERVAL '7 days' GROUP BY DATE(fitted_at) ORDER BY date DESC;

SELECT user_id, week_start, format, url, generated_at, file_size_bytes
FROM report_artifacts ORDER BY generated_at DESC LIMIT 10;

SELECT week_start, COUNT(DISTINCT user_id) AS users_with_report, COUNT(*) AS total_reports
FROM report_artifacts WHERE generated_at >= NOW() - INTERVAL '30 days' GROUP BY week_start ORDER BY week_start DESC;
