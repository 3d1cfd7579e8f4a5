"""A code location holding only the online θ sensor and job, for tests that run the sensor
daemon's own code path; the warehouse is the one of DATABASE_URL (the test's database)."""

import dagster as dg

from assets.online_theta import online_theta_job, session_completed
from resources.warehouse import WarehouseResource

defs = dg.Definitions(jobs=[online_theta_job], sensors=[session_completed], resources={"warehouse": WarehouseResource()})
