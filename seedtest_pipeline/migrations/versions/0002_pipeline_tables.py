"""Tables the pipeline writes (SPEC §3)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE features_topic_daily (
          user_id text NOT NULL,
          topic_id text NOT NULL,
          date date NOT NULL,
          attempts integer NOT NULL,
          correct integer NOT NULL,
          hints integer NOT NULL,
          avg_time_ms integer,
          rt_median integer,
          rt_correct_median integer,
          improvement numeric,
          last_seen_at timestamptz NOT NULL,
          computed_at timestamptz NOT NULL DEFAULT now(),
          PRIMARY KEY (user_id, topic_id, date)
        );
        CREATE INDEX features_topic_daily_date_idx ON features_topic_daily (date);

        CREATE TABLE weekly_kpi (
          user_id text NOT NULL,
          week_start date NOT NULL CHECK (extract(isodow FROM week_start) = 1),
          kpis jsonb NOT NULL DEFAULT '{}'::jsonb,
          created_at timestamptz NOT NULL DEFAULT now(),
          updated_at timestamptz NOT NULL DEFAULT now(),
          PRIMARY KEY (user_id, week_start)
        );
        CREATE INDEX weekly_kpi_week_start_idx ON weekly_kpi (week_start);

        CREATE TABLE mirt_fit_meta (
          calibration_id uuid PRIMARY KEY,
          model text NOT NULL,
          spec jsonb NOT NULL,
          metrics jsonb NOT NULL,
          linking jsonb NOT NULL,
          fitted_at timestamptz NOT NULL
        );

        CREATE TABLE mirt_item_params (
          calibration_id uuid NOT NULL REFERENCES mirt_fit_meta (calibration_id),
          item_id text NOT NULL,
          model text NOT NULL,
          params jsonb NOT NULL,
          version text NOT NULL,
          fitted_at timestamptz NOT NULL,
          PRIMARY KEY (calibration_id, item_id)
        );

        CREATE TABLE mirt_ability (
          id bigserial PRIMARY KEY,
          user_id text NOT NULL,
          theta double precision NOT NULL,
          se double precision CHECK (se IS NULL OR se > 0),
          model text NOT NULL,
          version text NOT NULL,
          source text NOT NULL CHECK (source IN ('calibration', 'online')),
          calibration_id uuid REFERENCES mirt_fit_meta (calibration_id),
          fitted_at timestamptz NOT NULL
        );
        -- "theta as of time t" reads the latest row per user before t.
        CREATE INDEX mirt_ability_user_fitted_idx ON mirt_ability (user_id, fitted_at DESC);

        CREATE TABLE report_artifacts (
          id bigserial PRIMARY KEY,
          user_id text NOT NULL,
          week_start date NOT NULL,
          format text NOT NULL CHECK (format IN ('pdf', 'html')),
          url text NOT NULL,
          file_size_bytes bigint NOT NULL,
          sha256 text NOT NULL,
          generated_at timestamptz NOT NULL DEFAULT now(),
          UNIQUE (user_id, week_start, format)
        );
        """
    )


def downgrade() -> None:
    # Part tables a killed features run left behind (features.PART_PREFIX) go with the table.
    op.execute(
        """
        DO $$
        DECLARE part regclass;
        BEGIN
          FOR part IN SELECT oid::regclass FROM pg_class
                      WHERE relkind = 'r' AND starts_with(relname, 'features_topic_daily_part_')
                        AND pg_table_is_visible(oid) LOOP
            EXECUTE format('DROP TABLE %s', part);
          END LOOP;
        END $$;
        """
    )
    op.execute(
        """
        DROP TABLE report_artifacts;
        DROP TABLE mirt_ability;
        DROP TABLE mirt_item_params;
        DROP TABLE mirt_fit_meta;
        DROP TABLE weekly_kpi;
        DROP TABLE features_topic_daily;
        """
    )
