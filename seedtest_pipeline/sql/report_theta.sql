-- θ as of the end of each of the trend's weeks: the latest mirt_ability row (calibration or
-- online) fitted no later than the week's end, as the goal probability P reads it.
-- One index probe per student and week on mirt_ability (user_id, fitted_at DESC).
SELECT s.user_id, w.week_start, m.theta, m.se
FROM report_students s
CROSS JOIN unnest(CAST(:trend_weeks AS date[]), CAST(:trend_ends AS timestamptz[])) AS w(week_start, week_end)
CROSS JOIN LATERAL (
  SELECT a.theta, a.se FROM mirt_ability a
  WHERE a.user_id = s.user_id AND a.fitted_at <= w.week_end
  ORDER BY a.fitted_at DESC, a.id DESC
  LIMIT 1
) AS m
