-- Attempts and correct answers per student and topic during the week.
SELECT f.user_id, f.topic_id, sum(f.attempts) AS attempts, sum(f.correct) AS correct
FROM features_topic_daily f
JOIN report_students s USING (user_id)
WHERE f.date >= :week_start AND f.date < :week_end
GROUP BY f.user_id, f.topic_id
