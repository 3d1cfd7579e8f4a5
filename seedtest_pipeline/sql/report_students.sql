-- The students of one week's reports (SPEC §6): everyone with a weekly_kpi row for the week or
-- activity in features_topic_daily during it, restricted to the chunks being rendered.
-- report_chunk is the first 32 bits of md5(user_id) modulo the number of chunks; the Python
-- twin is seedtest_pipeline.reports.data.report_chunk (keep them equal).
-- With :done_since set (a retry), students whose two reports were recorded since then are left
-- out: only what is missing is rendered again. :user_ids (when not null) keeps only those users.
SELECT user_id
FROM (
  SELECT user_id FROM weekly_kpi WHERE week_start = :week_start
  UNION
  SELECT user_id FROM features_topic_daily WHERE date >= :week_start AND date < :week_end
) AS students
WHERE mod(CAST(CAST('x' || substr(md5(user_id), 1, 8) AS bit(32)) AS bigint), :chunk_count)
        = ANY(CAST(:chunks AS int[]))
  AND (CAST(:user_ids AS text[]) IS NULL OR user_id = ANY(CAST(:user_ids AS text[])))
  AND (CAST(:done_since AS timestamptz) IS NULL
       OR (SELECT count(*) FROM report_artifacts r
           WHERE r.user_id = students.user_id AND r.week_start = :week_start
             AND r.generated_at >= CAST(:done_since AS timestamptz)) < 2)
