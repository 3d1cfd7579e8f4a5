-- The attempt V1 contract (SPEC §2.2): the student identity rule, tolerant readers for the
-- loosely typed result_json fields, the row rules (attempt_rows) and the schema-locked view.
-- Every statement is idempotent (CREATE OR REPLACE), so materialising `attempt` can re-apply it.
-- CREATE OR REPLACE VIEW refuses to change a column's name, order or type: that is the lock.

-- The one identity rule: user_id -> student_id.
CREATE OR REPLACE FUNCTION seedtest_student_id(user_id text) RETURNS uuid
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE
    WHEN user_id IS NULL THEN NULL
    -- ^[0-9a-f-]{36}$ that PostgreSQL also accepts as a uuid: hex in groups of four, an
    -- optional hyphen between groups; 36 characters means 32 hex digits and 4 hyphens.
    WHEN length(user_id) = 36 AND user_id ~* '^[0-9a-f]{4}(-?[0-9a-f]{4}){7}$' THEN user_id::uuid
    ELSE md5(user_id)::uuid
  END
$$;

-- Readers return NULL for a value that cannot be read, where a plain cast would abort the query.
-- pg_input_is_valid (PostgreSQL 16+) asks the type's own input function, so a readable value is
-- exactly one the original view's cast accepted; it is also ~5x cheaper than a regular expression.
-- STABLE, as pg_input_is_valid is: an IMMUTABLE wrapper would not be inlined into queries.
CREATE OR REPLACE FUNCTION seedtest_read_bigint(value text) RETURNS bigint
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN pg_input_is_valid(value, 'bigint') THEN value::bigint END
$$;

CREATE OR REPLACE FUNCTION seedtest_read_int(value text) RETURNS integer
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN pg_input_is_valid(value, 'integer') THEN value::integer END
$$;

CREATE OR REPLACE FUNCTION seedtest_read_bool(value text) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN pg_input_is_valid(value, 'boolean') THEN value::boolean END
$$;

-- Seconds, only when the milliseconds fit the view's integer column (NaN and infinities do not).
CREATE OR REPLACE FUNCTION seedtest_read_seconds(value text) RETURNS numeric
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN pg_input_is_valid(value, 'numeric') THEN
    CASE WHEN abs(value::numeric) < 2147483.6 THEN value::numeric END
  END
$$;

CREATE OR REPLACE FUNCTION seedtest_questions(result_json jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN jsonb_typeof(result_json -> 'questions') = 'array'
              THEN result_json -> 'questions' ELSE '[]'::jsonb END
$$;

-- Every element of every result, read once: the row rules' values and what they could not read.
-- attempt_rows keeps the readable elements; attempt_input_issues lists the findings; the features
-- pass reads this view directly, so it aggregates attempts and counts findings in one pass.
-- Findings of an element (SPEC §2.2): element_finding is the one that drops it (or correct
-- unreadable, which keeps it as incorrect); time and hints findings are flags of kept elements.
CREATE OR REPLACE VIEW attempt_elements AS
SELECT
  r.id AS result_id,
  r.session_id,
  r.user_id,
  coalesce(r.updated_at, r.created_at) AS completed_at,
  q.question_no,
  q.element,
  seedtest_read_bigint(q.element ->> 'question_id') AS item_id,
  coalesce(seedtest_read_bool(q.element ->> 'is_correct'),
           seedtest_read_bool(q.element ->> 'correct'), false) AS correct,
  coalesce(round(seedtest_read_seconds(q.element ->> 'time_spent_sec') * 1000)::integer, 0) AS response_time_ms,
  coalesce(seedtest_read_int(q.element ->> 'used_hints') > 0, false) AS hint_used,
  nullif(q.element ->> 'topic', '') AS topic_id,
  CASE WHEN jsonb_typeof(q.element) <> 'object' THEN 'question_not_object'
       WHEN coalesce(q.element ->> 'question_id', '') = '' THEN 'question_id_missing'
       WHEN seedtest_read_bigint(q.element ->> 'question_id') IS NULL THEN 'question_id_unreadable'
       WHEN nullif(q.element ->> 'is_correct', '') IS NOT NULL
            AND seedtest_read_bool(q.element ->> 'is_correct') IS NULL THEN 'correct_unreadable'
       WHEN nullif(q.element ->> 'is_correct', '') IS NULL
            AND nullif(q.element ->> 'correct', '') IS NOT NULL
            AND seedtest_read_bool(q.element ->> 'correct') IS NULL THEN 'correct_unreadable'
  END AS element_finding,
  -- Only kept elements can have these (a dropped element has its one finding already).
  (nullif(q.element ->> 'time_spent_sec', '') IS NOT NULL
   AND seedtest_read_seconds(q.element ->> 'time_spent_sec') IS NULL
   AND seedtest_read_bigint(q.element ->> 'question_id') IS NOT NULL) AS time_spent_unreadable,
  (nullif(q.element ->> 'used_hints', '') IS NOT NULL
   AND seedtest_read_int(q.element ->> 'used_hints') IS NULL
   AND seedtest_read_bigint(q.element ->> 'question_id') IS NOT NULL) AS used_hints_unreadable
FROM exam_results r
CROSS JOIN LATERAL jsonb_array_elements(seedtest_questions(r.result_json))
  WITH ORDINALITY AS q(element, question_no);

-- The row rules, once. The V1 view numbers these rows; partitioned work filters them by
-- completed_at, which PostgreSQL pushes down to an index range scan of exam_results.
-- user_id, result_id and question_no are carried for grouping and a total attempt order.
CREATE OR REPLACE VIEW attempt_rows AS
SELECT
  ('x' || left(md5(e.result_id::text || '-' || (e.element ->> 'question_id')), 16))::bit(64)::bigint AS id,
  seedtest_student_id(e.user_id) AS student_id,
  e.item_id,
  e.correct,
  e.response_time_ms,
  e.hint_used,
  e.completed_at,
  e.completed_at
    - make_interval(secs => coalesce(round(seedtest_read_seconds(e.element ->> 'time_spent_sec')), 0)::float8) AS started_at,
  e.session_id,
  e.topic_id,
  e.user_id,
  e.result_id,
  e.question_no
FROM attempt_elements e
WHERE e.item_id IS NOT NULL;

-- Findings about a whole result (its questions, its user_id): one per result.
CREATE OR REPLACE VIEW attempt_result_issues AS
SELECT r.session_id, coalesce(r.updated_at, r.created_at) AS completed_at,
       CASE WHEN r.result_json ? 'questions' THEN 'questions_not_array' ELSE 'questions_missing' END AS kind
FROM exam_results r
WHERE jsonb_typeof(r.result_json -> 'questions') IS DISTINCT FROM 'array'
UNION ALL
SELECT r.session_id, coalesce(r.updated_at, r.created_at), 'user_id_missing'
FROM exam_results r
WHERE r.user_id IS NULL;

-- What the row rules left out or could not read, one row per finding (SPEC §2.2).
CREATE OR REPLACE VIEW attempt_input_issues AS
SELECT e.session_id, e.completed_at, finding.kind
FROM attempt_elements e
CROSS JOIN LATERAL unnest(ARRAY[
  e.element_finding,
  CASE WHEN e.time_spent_unreadable THEN 'time_spent_unreadable' END,
  CASE WHEN e.used_hints_unreadable THEN 'used_hints_unreadable' END
]) AS finding(kind)
WHERE finding.kind IS NOT NULL
UNION ALL
SELECT session_id, completed_at, kind FROM attempt_result_issues;

-- attempt V1: names, order and types are frozen (SPEC §2.2).
CREATE OR REPLACE VIEW attempt AS
SELECT
  id,
  student_id,
  item_id,
  correct,
  response_time_ms,
  hint_used,
  completed_at,
  started_at,
  (row_number() OVER (PARTITION BY student_id, item_id
                      ORDER BY completed_at, result_id, question_no))::integer AS attempt_no,
  session_id,
  topic_id
FROM attempt_rows;
