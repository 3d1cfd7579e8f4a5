-- This week's and the previous week's KPIs of the week's students (null where a week has no row).
SELECT s.user_id, current_week.kpis AS kpis, previous_week.kpis AS previous_kpis
FROM report_students s
LEFT JOIN weekly_kpi current_week
  ON current_week.user_id = s.user_id AND current_week.week_start = :week_start
LEFT JOIN weekly_kpi previous_week
  ON previous_week.user_id = s.user_id AND previous_week.week_start = :previous_week_start
ORDER BY s.user_id
