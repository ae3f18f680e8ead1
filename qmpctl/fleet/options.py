"""`qmpctl matrix`'s fleet options, checked together before anything starts,
and the executor they choose (None: the local one)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..core.errors import UsageError
from ..matrix.cells import Cell
from .clusters import RemoteCluster, ThrowawayCluster
from .executor import FleetExecutor
from .journal import Journal, JournalHeader, journal_path
from .security import address, tls_of
from .serve import this_fleet_host

CLUSTERS = ("local",)
SCHEDULER_PORT = 8786  # Dask's own
WORKERS_TIMEOUT_S = 60.0  # --workers-timeout's default


@dataclass(frozen=True)
class FleetOptions:
    scheduler: str | None = None
    cluster: str | None = None
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    resume: bool = False
    workers: int | None = None
    workers_timeout: float | None = None

    @property
    def fleet(self) -> bool:
        return self.scheduler is not None or self.cluster is not None


def check(opts: FleetOptions, json_path: Path | None, lab_job: bool) -> None:
    """Options that do not go together are bad input (exit 2)."""
    if opts.scheduler is not None and opts.cluster is not None:
        raise UsageError("give --scheduler ADDRESS or --cluster local, not both")
    if opts.cluster is not None and opts.cluster not in CLUSTERS:
        raise UsageError(f"--cluster {opts.cluster}: only `local` (a throwaway cluster on "
                         "this host); a fleet's scheduler is --scheduler ADDRESS")
    tls_given = [n for n, p in (("--tls-ca", opts.tls_ca), ("--tls-cert", opts.tls_cert),
                                ("--tls-key", opts.tls_key)) if p is not None]
    if tls_given and opts.scheduler is None:
        raise UsageError(f"{', '.join(tls_given)} apply only with --scheduler")
    if not opts.fleet:
        for flag, value in (("--resume", opts.resume or None), ("--workers", opts.workers),
                            ("--workers-timeout", opts.workers_timeout)):
            if value is not None:
                raise UsageError(f"{flag} applies only with --scheduler or --cluster local")
        return
    if lab_job:
        raise UsageError("--lab-job runs inside a lab, not on a fleet")
    if opts.resume and json_path is None:
        raise UsageError("--resume needs --json PATH: PATH.journal records the finished tasks")
    if opts.workers is not None and opts.workers < 1:
        raise UsageError(f"--workers {opts.workers}: must be at least 1")
    if opts.workers_timeout is not None and opts.workers_timeout <= 0:
        raise UsageError(f"--workers-timeout {opts.workers_timeout}: must be positive")
    if opts.cluster is not None and opts.workers not in (None, 1):
        raise UsageError("--cluster local has one worker (this host)")


def executor(opts: FleetOptions, cells: list[Cell], source: str, repeat: int,
             json_path: Path | None) -> FleetExecutor:
    """The fleet executor the options ask for; opens the journal (with --json)."""
    tls = tls_of(opts.tls_ca, opts.tls_cert, opts.tls_key)
    cluster: RemoteCluster | ThrowawayCluster
    if opts.scheduler is not None:
        cluster = RemoteCluster(address(opts.scheduler, "--scheduler", tls, SCHEDULER_PORT), tls,
                                connect_timeout=opts.workers_timeout or WORKERS_TIMEOUT_S)
    else:
        cluster = ThrowawayCluster(this_fleet_host(None, 1, ()))
    journal = None
    if json_path is not None:
        header = JournalHeader(source=source, repeat=repeat, cells=[c.id for c in cells])
        journal = Journal(journal_path(json_path), header, opts.resume)
    return FleetExecutor(cluster, min_workers=opts.workers or 1,
                         workers_timeout=opts.workers_timeout or WORKERS_TIMEOUT_S, journal=journal)
