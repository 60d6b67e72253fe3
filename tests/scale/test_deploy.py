"""`reach deploy` against a real Prefect server: schedules from files, stale ones removed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.scale.cluster import Cluster
from tests.scale.test_workers import _client

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def _reach(cluster: Cluster, root: Path, db_url: str, *args: str, **env: str):  # type: ignore[no-untyped-def]
    return cluster.run("reach", "--project", str(root), *args,
                       env={"REACH_DATABASE_URL": db_url, **env})


def test_reach_deploy_generates_and_clears_campaign_schedules(cluster: Cluster, tmp_path: Path,
                                                              db_url: str) -> None:
    import json

    from reach.scaffold import write_project

    root = write_project(tmp_path / "acme", contacts=40)
    news = root / "campaigns" / "autumn-newsletter.yaml"
    news.write_text(news.read_text() + 'schedule: "0 9 * * FRI"\n')
    friday = root / "campaigns" / "black-friday.yaml"
    friday.write_text(friday.read_text() + 'schedule: "2031-11-28T08:00:00+01:00"\n')
    done = _reach(cluster, root, db_url, "deploy", "--json",
                  REACH_EMAIL_TRANSPORT="smtp://127.0.0.1:2525?max_per_second=40")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(report["deployments"]) == {"journey-tick", "campaign-run", "campaign-batch",
                                          "traits-refresh"}
    assert report["cron"] == {"autumn-newsletter": "0 9 * * FRI"}
    assert report["rate_limits"] == {"reach-email": 40.0}

    with _client(cluster) as client:
        run = client.read_deployment_by_name("campaign-run/campaign-run")
        schedules = {s.slug: s for s in client.read_deployment_schedules(run.id)}
        assert set(schedules) == {"campaign-autumn-newsletter"}
        cron = schedules["campaign-autumn-newsletter"]
        assert cron.schedule.cron == "0 9 * * FRI" and cron.schedule.timezone == "UTC"
        assert cron.parameters == {"campaign": "autumn-newsletter"}
        assert run.parameters["project_dir"] == str(root)
        tick = client.read_deployment_by_name("journey-tick/journey-tick")
        assert tick.global_concurrency_limit.limit == 1
        assert tick.concurrency_options.collision_strategy.value == "CANCEL_NEW"
        limit = client.read_global_concurrency_limit_by_name("reach-email")
        assert limit.slot_decay_per_second == 40 and limit.limit == 40  # one second of it
        once = [r for r in client.read_flow_runs() if "reach-once" in (r.tags or [])]
        assert [(r.parameters["campaign"], r.state.type.value) for r in once] == [
            ("black-friday", "SCHEDULED")]
        assert once[0].expected_start_time.isoformat().startswith("2031-11-28T07:00:00")

    # The schedules disappear from the files: a second deploy removes them from Prefect.
    news.write_text(news.read_text().replace('schedule: "0 9 * * FRI"\n', ""))
    friday.write_text(friday.read_text().replace('schedule: "2031-11-28T08:00:00+01:00"\n', ""))
    done = _reach(cluster, root, db_url, "deploy", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["removed_schedules"] == ["campaign-run:campaign-autumn-newsletter"]
    assert len(report["removed_runs"]) == 1
    with _client(cluster) as client:
        run = client.read_deployment_by_name("campaign-run/campaign-run")
        assert client.read_deployment_schedules(run.id) == []
        assert not [r for r in client.read_flow_runs() if "reach-once" in (r.tags or [])]
        from prefect.exceptions import ObjectNotFound

        with pytest.raises(ObjectNotFound):
            client.read_global_concurrency_limit_by_name("reach-email")
