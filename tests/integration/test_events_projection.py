"""The ``by_step_match`` projection of ``events`` (deploy/clickhouse/0005): a funnel reads only the rows of the
event types / names its steps match, and answers exactly as from the main sort order.

Without the projection every granule of the date range is read (the main order is per session); this test
fails if the planner stops choosing it, e.g. when the funnel query starts reading a column the projection
does not hold.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from productgraph.connections import clickhouse_client
from query_api.analytics import Tenant
from query_api.funnels.bench import load_events
from query_api.funnels.spec import FunnelSpec, FunnelStep
from query_api.funnels.sql import aggregate_query
from schemas.matchers import Matcher
from tests.conftest import Servers

pytestmark = pytest.mark.integration

N = 120_000


def test_funnel_reads_the_projection_and_answers_the_same(servers: Servers) -> None:
    ch = clickhouse_client(servers.clickhouse_url)
    tenant = Tenant(str(uuid.uuid4()), str(uuid.uuid4()))
    start = (datetime.now(UTC) - timedelta(days=10)).replace(hour=0, minute=0, second=0, microsecond=0)
    load_events(ch, tenant, N, start, days=7, users=2_000)
    # the last two of the dozen event names: a tenth of the events
    steps = (FunnelStep(Matcher(event_name="step_10")), FunnelStep(Matcher(event_name="step_11")))
    spec = FunnelSpec(steps=steps, date_from=start, date_to=start + timedelta(days=7))
    q = aggregate_query(spec, tenant.org_id, tenant.project_id)
    params = q.params | {"org": tenant.org_id, "project": tenant.project_id}
    used = ch.query(q.sql, parameters=params, settings=q.settings)
    main = ch.query(q.sql, parameters=params, settings=q.settings | {"optimize_use_projections": 0})
    assert used.result_rows == main.result_rows
    assert main.result_rows[0][3] > 0  # the funnel has entrants
    # The plan of the step stage (``ev``, every column the later stages take from it): read from the projection,
    # a few granules of it.  (EXPLAIN of the whole query is not used: planning every kernel stage is costly.)
    stage = q.sql[: q.sql.index("ent AS (")].rstrip().rstrip(",") + "\nSELECT count(), sum(cityHash64(*)) FROM ev"
    plans = {}
    for name, extra in (("used", {}), ("main", {"optimize_use_projections": 0})):
        rows = ch.query("EXPLAIN indexes = 1 " + stage, parameters=params, settings=q.settings | extra).result_rows
        plans[name] = "\n".join(r[0] for r in rows)
    assert "ReadFromMergeTree (by_step_match)" in plans["used"], plans["used"]
    assert "by_step_match" not in plans["main"]
    granules = {k: [int(g) for g in re.findall(r"Granules: (\d+)/", v)] for k, v in plans.items()}
    assert granules["used"][-1] * 2 < granules["main"][-1], granules
    ch.close()
