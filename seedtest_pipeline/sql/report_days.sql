-- Attempts per student and UTC day of the week (days without attempts have no row).
SELECT f.user_id, f.date, sum(f.attempts) AS attempts
FROM features_topic_daily f
JOIN report_students s USING (user_id)
WHERE f.date >= :week_start AND f.date < :week_end
GROUP BY f.user_id, f.date
