-- KPI formulas of SPEC §4, one function each, applied in PostgreSQL where the inputs are
-- aggregated. Every function returns NULL when its KPI is undefined. Idempotent.

CREATE OR REPLACE FUNCTION kpi_clamp(x float8, lo float8 DEFAULT 0, hi float8 DEFAULT 1)
RETURNS float8 LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  -- float8smaller/float8larger are least/greatest of two float8s (the functions behind min and
  -- max), but strict: NULL stays NULL. x appears once, so PostgreSQL inlines kpi_clamp even when
  -- x is a long expression (it does not inline a function that would evaluate one twice, and
  -- calls it through the SQL function executor instead: +0.5 s per 433,000 I_t values measured).
  SELECT float8larger(float8smaller(x, hi), lo)
$$;

-- I_t: accuracy change between the 14 days ending at as_of (recent) and the 14 before,
-- damped by exposure and by the recent accuracy's 95% half-width. In [-1, 1].
CREATE OR REPLACE FUNCTION kpi_improvement(correct_recent bigint, attempts_recent bigint,
                                           correct_previous bigint, attempts_previous bigint)
RETURNS float8 LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  -- One expression (no FROM) so PostgreSQL inlines it into the calling query.
  SELECT kpi_clamp(
    (correct_recent::float8 / nullif(attempts_recent, 0)
       - correct_previous::float8 / nullif(attempts_previous, 0))
    * least(1.0, attempts_recent / 30.0::float8)  -- float8 throughout: numeric here cost 2x per call
    * (1 - least(0.5, 1.96 * sqrt((correct_recent::float8 / nullif(attempts_recent, 0))
                                  * (1 - correct_recent::float8 / nullif(attempts_recent, 0))
                                  / nullif(attempts_recent, 0)))),
    -1, 1)
$$;

-- E_t: how much faster the median correct answer got (28 days vs the 28 before), in [0, 1].
CREATE OR REPLACE FUNCTION kpi_efficiency(previous_median_ms float8, recent_median_ms float8)
RETURNS float8 LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN previous_median_ms > 0 AND recent_median_ms IS NOT NULL
              THEN kpi_clamp((previous_median_ms - recent_median_ms) / previous_median_ms) END
$$;

-- R_t: share of earlier-wrong items answered correctly when re-attempted.
CREATE OR REPLACE FUNCTION kpi_recovery(recovered bigint, reattempted bigint)
RETURNS float8 LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT recovered::float8 / nullif(reattempted, 0)
$$;

-- A_t over 28 days; a term without data counts 0.5; NULL without attempts.
CREATE OR REPLACE FUNCTION kpi_engagement(attempts bigint, sessions bigint, mean_gap_days float8,
                                          hints_per_attempt float8, mean_session_seconds float8)
RETURNS float8 LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN attempts > 0 THEN
      0.35 * kpi_clamp(sessions / 28.0)
    + 0.25 * coalesce(kpi_clamp(1.0 / nullif(mean_gap_days, 0)), 0.5)
    + 0.20 * coalesce(kpi_clamp(1.0 - hints_per_attempt / 3.0), 0.5)
    + 0.20 * coalesce(kpi_clamp(mean_session_seconds / 900.0), 0.5)
  END
$$;

-- P = 1 - Phi((target - theta) / se) = erfc(z / sqrt 2) / 2.
CREATE OR REPLACE FUNCTION kpi_goal_probability(theta float8, se float8, target float8)
RETURNS float8 LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN theta IS NOT NULL AND se > 0
              THEN 0.5 * erfc(((target - theta) / se) / sqrt(2.0)) END
$$;

-- S over 56 days. The gap term: no active day in the window is the worst rhythm (1); a single
-- active day shows no rhythm yet, and counts 0.5 as A_t's terms without data do.
CREATE OR REPLACE FUNCTION kpi_churn_risk(days_since_last_activity integer, active_days bigint,
                                          mean_gap_days float8, sessions bigint)
RETURNS float8 LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN days_since_last_activity IS NOT NULL THEN kpi_clamp(
      0.60 * kpi_clamp(days_since_last_activity / 14.0)
    + 0.25 * CASE WHEN active_days = 0 THEN 1.0
                  WHEN active_days = 1 THEN 0.5
                  ELSE kpi_clamp(mean_gap_days / 7.0) END
    + 0.15 * kpi_clamp(1.0 - sessions / 10.0))
  END
$$;

-- The median of an array already sorted ascending (percentile_cont(0.5) semantics); NULL if empty.
-- Aggregating into a sorted array lets PostgreSQL sort once for many groups. One expression (no
-- FROM), so it is inlined into the calling query.
CREATE OR REPLACE FUNCTION seedtest_sorted_median(sorted integer[])
RETURNS float8 LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN cardinality(sorted) % 2 = 1 THEN sorted[(cardinality(sorted) + 1) / 2]::float8
              WHEN cardinality(sorted) > 0
              THEN (sorted[cardinality(sorted) / 2]::float8 + sorted[cardinality(sorted) / 2 + 1]) / 2 END
$$;

-- Concatenation of arrays, as an aggregate (features merge the groups of one student's several
-- user_id spellings: their sorted response-time arrays and their findings).
CREATE OR REPLACE AGGREGATE seedtest_concat(anycompatiblearray) (SFUNC = array_cat, STYPE = anycompatiblearray);

-- An integer array in ascending order (for seedtest_sorted_median after a concatenation).
CREATE OR REPLACE FUNCTION seedtest_sorted(values_ integer[])
RETURNS integer[] LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT array_agg(v ORDER BY v) FROM unnest(values_) AS v
$$;
