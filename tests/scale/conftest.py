"""One Prefect server for the session's slow tests, the deployments of prefect.yaml applied
once (a server start and deploy cost ~13 s; tests clean up what they change on it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.scale.cluster import Cluster

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """`prefect server start` on a free port, a `process` pool, `prefect deploy --all`."""
    home = tmp_path_factory.mktemp("prefect-home")
    server = Cluster(home)
    try:
        server.start()
        done = server.run("prefect", "work-pool", "create", "reach", "--type", "process")
        assert done.returncode == 0, done.stderr
        # project_dir is a parameter of every run the tests trigger; any folder will do here.
        done = server.run("prefect", "--no-prompt", "deploy", "--all", cwd=ROOT,
                          env={"REACH_PROJECT_DIR": str(home)})
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        for name in ("journey-tick", "campaign-run", "campaign-batch", "traits-refresh"):
            assert f"'{name}/{name}' successfully created" in " ".join(done.stdout.split())
        yield server
    finally:
        server.close()
