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
from clickhouse_connect.driver.client import Client

from productgraph.connections import clickhouse_client
from query_api.analytics import Tenant
from query_api.funnels.bench import load_events
from query_api.funnels.spec import FunnelSpec, FunnelStep
from query_api.funnels.sql import aggregate_query
from query_api.tenant_scope import read_settings
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


def _selected_rows(ch: Client) -> int:
    return int(ch.query("SELECT value FROM system.events WHERE event = 'SelectedRows'").result_rows[0][0])


def test_identity_pass_skips_granules_without_anonymous_ids(servers: Servers) -> None:
    """The ``anon_ids`` index (deploy/clickhouse/0006): a project whose events carry no anonymous id costs
    the funnel's identity pass no read at all (with the query API's read settings); without the index the pass
    reads every row of the range."""
    ch = clickhouse_client(servers.clickhouse_url)
    tenant = Tenant(str(uuid.uuid4()), str(uuid.uuid4()))
    start = (datetime.now(UTC) - timedelta(days=5)).replace(hour=0, minute=0, second=0, microsecond=0)
    ch.command(
        "INSERT INTO events (org_id, project_id, event_id, session_id, event_type, timestamp, received_at, user_id, "
        "event_name) SELECT {org:UUID}, {project:UUID}, concat('n', toString(number)), "
        "concat('s', toString(intDiv(number, 10))), 'custom', {start:DateTime64(3)} + toIntervalSecond(number), "
        "{start:DateTime64(3)} + toIntervalSecond(number), concat('u', toString(number % 97)), "
        "concat('step_', toString(number % 3)) FROM numbers(50000)",
        parameters={"org": tenant.org_id, "project": tenant.project_id, "start": start},
    )
    steps = (FunnelStep(Matcher(event_name="step_1")), FunnelStep(Matcher(event_name="step_2")))
    q = aggregate_query(
        FunnelSpec(steps=steps, date_from=start, date_to=start + timedelta(days=2)), tenant.org_id, tenant.project_id
    )
    params = q.params | {"org": tenant.org_id, "project": tenant.project_id}
    # the identity pass alone: the text up to the mapping scalar (the line after ``anon``)
    stage = q.sql[: q.sql.index("\n(SELECT")].rstrip().rstrip(",") + "\nSELECT count() FROM anon"
    read = {}
    for name, extra in (("index", {}), ("no index", {"use_skip_indexes": 0})):
        before = _selected_rows(ch)
        options = read_settings(ch, q.settings | extra | {"use_query_condition_cache": 0})
        rows = ch.query(stage, parameters=params, settings=options)
        read[name] = _selected_rows(ch) - before
        assert rows.result_rows == [(0,)]  # no anonymous id, no mapping
    # (the counter also sees the few rows of system.events that reading it costs)
    assert read["index"] < 1_000 and read["no index"] >= 50_000, read
    ch.close()
