"""One test's migration on a fleet (the pytest plugin's `--qmpctl-scheduler`):
submitted as a task asking for what its options and marker need, its whole
report back, and with artifacts asked for, the run's artifacts directory
unpacked where the test keeps them (so a failed test's come back)."""

from __future__ import annotations

from pathlib import Path

from ..core.errors import HostError
from ..report.models import RunReport
from ..scenario.options import MigrateOptions
from .clusters import RemoteCluster
from .resources import unschedulable
from .task import MigrationOutcome, MigrationTask, run_migration, unpack


async def migrate_on(cluster: RemoteCluster, test: str, opts: MigrateOptions,
                     needs: dict[str, float], artifacts: Path | None,
                     ) -> tuple[RunReport, str]:
    """The run's report and the worker that ran it. A run no connected worker
    can take is a HostError naming what it needs, at once."""
    async with cluster.client() as client:
        info = await client.scheduler.identity(n_workers=-1)
        workers = {str(w["name"]): dict(w.get("resources") or {})
                   for w in info["workers"].values()}
        if (why := unschedulable(needs, workers)) is not None:
            raise HostError(f"--qmpctl-scheduler {cluster.address}: {why}")
        options = opts.model_dump(mode="json", exclude_unset=True)
        options.pop("artifacts", None)
        payload = MigrationTask(test=test, options=options,
                                artifacts=artifacts is not None).model_dump_json()
        future = client.submit(run_migration, payload, resources=needs, pure=False)
        try:
            outcome = MigrationOutcome.model_validate_json(await future)
        finally:
            if not future.done():
                await client.cancel([future])
    if artifacts is not None and outcome.artifacts_tgz is not None:
        unpack(outcome.artifacts_tgz, artifacts)
    return outcome.report, outcome.worker
