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

-- The user id the pipeline writes (docs/decisions.md, "One person, one user_id"): the raw id,
-- except that every spelling of a uuid (upper case, hyphens elsewhere) becomes its canonical
-- spelling, so one student is one user_id wherever the pipeline writes; NULL for a user the
-- pipeline cannot attribute work to (no id, a blank one, or one longer than a key may be: 256
-- characters). seedtest_student_id(seedtest_user_key(x)) = seedtest_student_id(x) for every
-- usable x. The canonical spelling (the common case) is recognised without a regular expression,
-- which costs about ten times as much.
CREATE OR REPLACE FUNCTION seedtest_user_key(user_id text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE
    WHEN length(user_id) > 256 OR btrim(user_id, E' \t\r\n') = '' THEN NULL
    WHEN length(user_id) <> 36 THEN user_id
    WHEN lower(user_id COLLATE "C") = user_id AND substr(user_id, 9, 1) = '-' AND substr(user_id, 14, 1) = '-'
         AND substr(user_id, 19, 1) = '-' AND substr(user_id, 24, 1) = '-' THEN user_id
    WHEN user_id ~* '^[0-9a-f]{4}(-?[0-9a-f]{4}){7}$' THEN user_id::uuid::text
    ELSE user_id
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

CREATE OR REPLACE FUNCTION seedtest_read_numeric(value text) RETURNS numeric
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN pg_input_is_valid(value, 'numeric') THEN value::numeric END
$$;

-- result_json's questions when they are an array, else none. The containment test reads the
-- stored JSON in place, where jsonb_typeof(result_json -> 'questions') would copy the array out
-- once more first.
CREATE OR REPLACE FUNCTION seedtest_questions(result_json jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN result_json @> '{"questions": []}' THEN result_json -> 'questions' ELSE '[]'::jsonb END
$$;

-- Every element of every result, read once: the row rules' values and what they could not read.
-- attempt_rows keeps the readable elements; attempt_input_issues lists the findings; the features
-- pass reads this view directly, so it aggregates attempts and counts findings in one pass.
-- Findings of an element (SPEC §2.2): element_finding is the one that drops it (or correct
-- unreadable, which keeps it as incorrect); the time, hints and topic findings are flags of kept
-- elements, whose value is then treated as missing.
--
-- Each field's value is taken out of the element once (level 1) and each reader runs once (level 2);
-- OFFSET 0 keeps PostgreSQL from pulling the levels up, which would copy every reader into each
-- expression that uses its value (findings, flags, milliseconds) and evaluate it again there.
-- This halves the cost of reading an element. The levels sit in one LATERAL per result, around
-- the result's elements, so PostgreSQL restarts them once per result rather than once per element
-- (a restart per element cost about 8% of a features pass).
--
-- Plausible values (docs/decisions.md): time_spent_sec in [0, 3600] seconds, used_hints in
-- [0, 100], a topic and a user id of at most 256 characters (they are keys of the tables the
-- pipeline writes). A readable value outside its range is a finding (*_implausible, topic_too_long)
-- and is treated as missing; so is a topic given as an object or an array (topic_unreadable).
-- The column order is that of earlier versions, new columns last: CREATE OR REPLACE VIEW only
-- appends columns.
CREATE OR REPLACE VIEW attempt_elements AS
SELECT
  r.id AS result_id,
  r.session_id,
  r.user_id,
  coalesce(r.updated_at, r.created_at) AS completed_at,
  v.question_no,
  v.element,
  v.item_id,
  coalesce(v.is_correct, v.correct, false) AS correct,
  -- numeric to integer rounds half away from zero, as round() does, without round()'s copy.
  coalesce((v.seconds * 1000)::integer, 0) AS response_time_ms,
  coalesce(v.hints > 0, false) AS hint_used,
  v.topic_id,
  CASE
    WHEN v.item_id IS NOT NULL THEN
      CASE WHEN v.is_correct IS NULL
                AND (nullif(v.is_correct_text, '') IS NOT NULL
                     OR (v.correct IS NULL AND nullif(v.correct_text, '') IS NOT NULL))
           THEN 'correct_unreadable' END
    WHEN jsonb_typeof(v.element) <> 'object' THEN 'question_not_object'
    WHEN coalesce(v.question_id_text, '') = '' THEN 'question_id_missing'
    ELSE 'question_id_unreadable'
  END AS element_finding,
  -- Only kept elements can have these (a dropped element has its one finding already).
  (v.item_id IS NOT NULL AND v.any_seconds IS NULL AND nullif(v.time_spent #>> '{}', '') IS NOT NULL) AS time_spent_unreadable,
  (v.item_id IS NOT NULL AND v.any_hints IS NULL AND nullif(v.used_hints_text, '') IS NOT NULL) AS used_hints_unreadable,
  v.question_id_text,
  v.seconds,
  (v.item_id IS NOT NULL AND v.any_seconds IS NOT NULL AND v.seconds IS NULL) AS time_spent_implausible,
  (v.item_id IS NOT NULL AND v.any_hints IS NOT NULL AND v.hints IS NULL) AS used_hints_implausible,
  CASE WHEN v.item_id IS NOT NULL THEN v.topic_finding END AS topic_finding
FROM exam_results r
CROSS JOIN LATERAL (
  SELECT read.*,
         CASE WHEN read.any_seconds >= 0 AND read.any_seconds <= 3600 THEN read.any_seconds END AS seconds,
         CASE WHEN read.any_hints >= 0 AND read.any_hints <= 100 THEN read.any_hints END AS hints,
         -- A topic is text of at most 256 characters. Almost every topic is short and does not start
         -- like a JSON object or array ([ or {), which two cheap tests tell (octet_length reads the
         -- length word only); only the others are looked at closely.
         CASE WHEN read.topic_plain THEN nullif(read.topic_text, '')
              WHEN jsonb_typeof(read.element -> 'topic') IN ('object', 'array') THEN NULL
              WHEN length(read.topic_text) <= 256 THEN read.topic_text END AS topic_id,
         CASE WHEN read.topic_plain THEN NULL
              WHEN jsonb_typeof(read.element -> 'topic') IN ('object', 'array') THEN 'topic_unreadable'
              WHEN length(read.topic_text) > 256 THEN 'topic_too_long' END AS topic_finding,
         -- "correct" is read only where is_correct is not readable (older clients send it).
         CASE WHEN read.is_correct IS NULL THEN seedtest_read_bool(read.correct_text) END AS correct
  FROM (
    SELECT field.*,
           seedtest_read_bigint(field.question_id_text) AS item_id,
           -- JSON true/false, as almost every client sends it, without the general reader.
           CASE field.is_correct_text WHEN 'true' THEN true WHEN 'false' THEN false
                ELSE seedtest_read_bool(field.is_correct_text) END AS is_correct,
           -- A JSON number is a numeric already: no text to print and parse again.
           CASE WHEN jsonb_typeof(field.time_spent) = 'number' THEN field.time_spent::numeric
                ELSE seedtest_read_numeric(field.time_spent #>> '{}') END AS any_seconds,
           -- 0 and 1 hints, as most answers have, without the general reader.
           CASE field.used_hints_text WHEN '0' THEN 0 WHEN '1' THEN 1
                ELSE seedtest_read_int(field.used_hints_text) END AS any_hints,
           field.topic_text IS NULL OR (octet_length(field.topic_text) <= 256
                                        AND ascii(field.topic_text) NOT IN (91, 123)) AS topic_plain  -- [ {
    FROM (
      -- r.id is carried through for the planner: it makes every result distinct, so PostgreSQL
      -- never wraps these levels in a Memoize cache keyed by the JSON (measured 2.9x slower).
      SELECT r.id AS result_id, q.element, q.question_no,
             q.element ->> 'question_id' AS question_id_text,
             q.element ->> 'is_correct' AS is_correct_text,
             q.element ->> 'correct' AS correct_text,
             q.element -> 'time_spent_sec' AS time_spent,
             q.element ->> 'used_hints' AS used_hints_text,
             q.element ->> 'topic' AS topic_text
      FROM jsonb_array_elements(seedtest_questions(r.result_json)) WITH ORDINALITY AS q(element, question_no)
      OFFSET 0
    ) AS field
    OFFSET 0
  ) AS read
  OFFSET 0
) AS v;

-- The row rules, once. The V1 view numbers these rows; partitioned work filters them by
-- completed_at, which PostgreSQL pushes down to an index range scan of exam_results.
-- user_id is the pipeline's user key (NULL for a session no user can be credited with),
-- raw_user_id the platform's; result_id and question_no give a total attempt order.
CREATE OR REPLACE VIEW attempt_rows AS
SELECT
  ('x' || left(md5(e.result_id::text || '-' || e.question_id_text), 16))::bit(64)::bigint AS id,
  seedtest_student_id(e.user_id) AS student_id,
  e.item_id,
  e.correct,
  e.response_time_ms,
  e.hint_used,
  e.completed_at,
  e.completed_at
    - make_interval(secs => coalesce(round(e.seconds), 0)::float8) AS started_at,
  e.session_id,
  e.topic_id,
  seedtest_user_key(e.user_id) AS user_id,
  e.result_id,
  e.question_no,
  e.user_id AS raw_user_id
FROM attempt_elements e
WHERE e.item_id IS NOT NULL;

-- Findings about a whole result (its questions, its user_id); only the few results with a finding
-- go on to be split into one row per finding. The WHERE condition is also the condition of the
-- partial index exam_results_findings_day_idx (migration 0010), which finds those results by day
-- without reading the others: change both together.
CREATE OR REPLACE VIEW attempt_result_issues AS
SELECT r.session_id, r.completed_at, finding.kind
FROM (
  SELECT session_id, coalesce(updated_at, created_at) AS completed_at,
         CASE WHEN NOT result_json @> '{"questions": []}' THEN  -- as in seedtest_questions
           CASE WHEN result_json ? 'questions' THEN 'questions_not_array' ELSE 'questions_missing' END
         END AS questions_finding,
         CASE WHEN length(user_id) > 256 THEN 'user_id_too_long'
              WHEN seedtest_user_key(user_id) IS NULL THEN 'user_id_missing' END AS user_finding
  FROM exam_results
  WHERE NOT result_json @> '{"questions": []}' OR seedtest_user_key(user_id) IS NULL
) AS r
CROSS JOIN LATERAL unnest(ARRAY[r.questions_finding, r.user_finding]) AS finding(kind)
WHERE finding.kind IS NOT NULL;

-- What the row rules left out, could not read or found implausible, one row per finding (SPEC §2.2).
-- A session whose user_id is too long to be anyone's key has one finding (user_id_too_long) and its
-- elements are not read (the features pass reads only sessions it could credit, or no one).
CREATE OR REPLACE VIEW attempt_input_issues AS
SELECT e.session_id, e.completed_at, finding.kind
FROM attempt_elements e
CROSS JOIN LATERAL unnest(ARRAY[
  e.element_finding,
  CASE WHEN e.time_spent_unreadable THEN 'time_spent_unreadable' END,
  CASE WHEN e.time_spent_implausible THEN 'time_spent_implausible' END,
  CASE WHEN e.used_hints_unreadable THEN 'used_hints_unreadable' END,
  CASE WHEN e.used_hints_implausible THEN 'used_hints_implausible' END,
  e.topic_finding
]) AS finding(kind)
WHERE finding.kind IS NOT NULL AND (e.user_id IS NULL OR length(e.user_id) <= 256)
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

-- The seconds reader of earlier versions of this script, replaced by seedtest_read_numeric and the
-- range check in attempt_elements (nothing depends on it once the views above are replaced).
DROP FUNCTION IF EXISTS seedtest_read_seconds(text);
