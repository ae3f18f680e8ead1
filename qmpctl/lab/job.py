"""One command run inside a lab: what it needs there and what comes back.

The lab sees the checkout at the same absolute path as the host does, packed
afresh for every run (a developer tests their working tree, not a copy from
set-up time), and so are files the command names outside it (`--kernel`,
`--initrd`). What the command writes under the checkout, under its working
directory and at any absolute path it names (`--report`, `--junit`,
`--artifacts`) comes back to the same place on the host. Planning is pure;
packing writes cpio "newc" archives, which the kernel unpacks after the root
file system's (concatenated initramfs).
"""

from __future__ import annotations

import ast
import os
import shlex
import stat
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from ..core.errors import HostError
from ..host.kvm import LAB_ENV

LAB_SITE = "/opt/qmpctl-lab/site"  # the lab image's Python dependencies (build.sh)
ENV_PASSED = ("CI", "QMPCTL_IMAGES", "NO_COLOR", "COLUMNS")
# Never packed: the host's own environment and the lab images themselves.
SUITE_SKIP = {".git", "__pycache__", ".pytest_cache", ".venv", ".nox"}
CHECKOUT_SKIP = (".git", ".venv", ".nox", ".qemu", "images/cache", "images/out/lab")


@dataclass(frozen=True)
class JobPlan:
    """What a lab needs to run `argv` in `cwd` (all paths absolute, as on the host)."""

    argv: tuple[str, ...]
    cwd: Path
    checkout: Path
    inputs: tuple[Path, ...]  # files named outside the checkout, packed at the same path
    outputs: tuple[Path, ...]  # brought back: what the command wrote under them
    env: tuple[tuple[str, str], ...] = field(default=())


def _path_values(argv: Sequence[str]) -> Iterator[str]:
    """Each argument, and the value of each `--opt=value`, that could be a path."""
    for arg in argv:
        yield arg
        if arg.startswith("-") and "=" in arg:
            yield arg.partition("=")[2]


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def plan_job(argv: Sequence[str], cwd: Path, checkout: Path,
             environ: dict[str, str] | None = None) -> JobPlan:
    """The files to pack and the paths to bring back for `argv` (pure but for
    looking at which named paths exist on the host)."""
    if not argv:
        raise ValueError("no command")
    inputs: list[Path] = []
    outputs: list[Path] = [checkout]
    if not _inside(cwd, checkout):  # e.g. a user's own suite: its files go in too
        outputs.append(cwd)
        if cwd.is_dir():
            inputs += [p for p in sorted(cwd.rglob("*")) if p.is_file()
                       and not set(p.relative_to(cwd).parts) & SUITE_SKIP]
    for value in _path_values(argv[1:]):
        if not value or value.startswith("-") or "\n" in value:
            continue
        path = Path(os.path.normpath(cwd / value))
        if not value.startswith("/") and not path.exists():
            continue  # a relative word that names nothing here is not a path
        if _inside(path, checkout) or any(_inside(path, o) for o in outputs[1:]) or (
                path in inputs):
            continue
        if path.is_file():
            inputs.append(path)
        if path.is_dir() or path.parent.is_dir():
            outputs.append(path)
    env = environ if environ is not None else dict(os.environ)
    passed = tuple((k, env[k]) for k in ENV_PASSED if k in env)
    return JobPlan(tuple(argv), cwd, checkout, tuple(dict.fromkeys(inputs)),
                   tuple(dict.fromkeys(outputs)), passed)


def job_script(plan: JobPlan, arch: str) -> str:
    """/lab/job.sh: the command in its directory, with the checkout's qmpctl
    first on the path; its own running time on the console (pure)."""
    env = [("PYTHONPATH", f"{plan.checkout}:{LAB_SITE}"), (LAB_ENV, arch),
           ("HOME", "/root"), ("TERM", "dumb"), ("PYTHONDONTWRITEBYTECODE", "1"),
           *plan.env]
    exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env)
    cwd = shlex.quote(str(plan.cwd))
    return ("#!/bin/sh\n" + exports
            + f"mkdir -p {cwd} && cd {cwd} || exit 125\n"
            + "t0=$(cut -d' ' -f1 /proc/uptime)\n"
            + shlex.join(plan.argv) + "\n"
            + "rc=$?\n"
            + 'echo "qmpctl-lab: command ran $(awk -v a="$t0" \'{printf "%.1f", $1 - a}\' '
              '/proc/uptime) s"\n'
            + "exit $rc\n")


def dist_info(pyproject: str, init: str) -> dict[str, str]:
    """METADATA and entry_points.txt for the checkout's qmpctl (its
    pyproject.toml and qmpctl/__init__.py, which holds the version), so the lab
    finds its console script and pytest plugin as an installed qmpctl would
    (pure)."""
    project = tomllib.loads(pyproject)["project"]
    version = next(ast.literal_eval(node.value) for node in ast.parse(init).body
                   if isinstance(node, ast.Assign)
                   and any(isinstance(t, ast.Name) and t.id == "__version__"
                           for t in node.targets))
    groups = {"console_scripts": project.get("scripts", {}),
              **project.get("entry-points", {})}
    entry_points = "".join(
        f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in points.items()) + "\n"
        for group, points in groups.items())
    return {"METADATA": f"Metadata-Version: 2.1\nName: {project['name']}\n"
                        f"Version: {version}\n",
            "entry_points.txt": entry_points}


def checkout_files(checkout: Path) -> list[Path]:
    """The checkout as git sees it (tracked and untracked, not ignored) plus the
    built guest images, without the host's venv and QEMU prefixes."""
    try:
        listed = subprocess.run(
            ["git", "-C", str(checkout), "ls-files", "-z", "--cached", "--others",
             "--exclude-standard"], capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise HostError(f"a lab runs a git checkout of qmpctl; {checkout} is not one: "
                        f"{exc}") from exc
    files = [checkout / os.fsdecode(n) for n in listed.split(b"\0") if n]
    images = checkout / "images" / "out"
    if images.is_dir():
        files += [p for p in images.rglob("*") if p.is_file()]
    # qmpctl's bytecode, as ./bootstrap compiled it: the lab's Python (the same
    # 3.11) loads it instead of compiling qmpctl under TCG in every process
    # (the lab writes no bytecode; about 2 s of the 18-20 s an import takes
    # there). A stale file is ignored: it names its source's mtime and size.
    files += sorted((checkout / "qmpctl").rglob(
        f"__pycache__/*.{sys.implementation.cache_tag}.pyc"))
    skip = tuple(checkout / s for s in CHECKOUT_SKIP)
    return [f for f in dict.fromkeys(files)
            if f.is_file() and not any(_inside(f, s) for s in skip)]


def checkout_dirs(checkout: Path) -> list[Path]:
    """Every directory of the checkout, ignored ones too (`reports/`): a command
    writing there must find it as on the host."""
    skip = {checkout / s for s in CHECKOUT_SKIP}
    out = []
    for root, dirs, _ in os.walk(checkout):
        dirs[:] = [d for d in dirs if Path(root, d) not in skip and d not in SUITE_SKIP]
        out += [Path(root, d) for d in dirs]
    return out


class Cpio:
    """A cpio "newc" archive writer: what the kernel's initramfs unpacker reads.
    Parent directories are written before their entries (the unpacker does not
    create them)."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.ino = 1
        self.dirs: set[PurePosixPath] = set()

    def _header(self, name: str, mode: int, size: int, mtime: int) -> None:
        encoded = name.encode() + b"\0"
        fields = (self.ino, mode, 0, 0, 1, mtime, size, 0, 0, 0, 0, len(encoded), 0)
        self.ino += 1
        self.out.write(b"070701" + b"".join(b"%08X" % f for f in fields) + encoded)
        self._pad(110 + len(encoded))

    def _pad(self, n: int) -> None:
        self.out.write(b"\0" * (-n % 4))

    def _parents(self, name: PurePosixPath) -> None:
        for parent in reversed(name.parents[:-1]):
            if parent not in self.dirs:
                self.dirs.add(parent)
                self._header(str(parent), stat.S_IFDIR | 0o755, 0, 0)

    def add_bytes(self, name: str, data: bytes, mode: int = 0o644) -> None:
        path = PurePosixPath(name.lstrip("/"))
        self._parents(path)
        self._header(str(path), stat.S_IFREG | mode, len(data), 0)
        self.out.write(data)
        self._pad(len(data))

    def add_dir(self, name: str) -> None:
        path = PurePosixPath(name.lstrip("/"))
        self._parents(path / "x")

    def add_file(self, name: str, source: Path) -> None:
        """A host file (or symlink) at `name` in the archive."""
        path = PurePosixPath(name.lstrip("/"))
        self._parents(path)
        st = source.lstat()
        if stat.S_ISLNK(st.st_mode):
            target = os.fsencode(os.readlink(source))
            self._header(str(path), st.st_mode, len(target), int(st.st_mtime))
            self.out.write(target)
            self._pad(len(target))
            return
        self._header(str(path), stat.S_IFREG | stat.S_IMODE(st.st_mode), st.st_size,
                     int(st.st_mtime))
        with source.open("rb") as f:
            copied = 0
            while chunk := f.read(1 << 20):
                self.out.write(chunk)
                copied += len(chunk)
        if copied != st.st_size:
            raise HostError(f"{source} changed size while it was packed for the lab")
        self._pad(copied)

    def add_tree(self, name: str, source: Path) -> None:
        for path in sorted(source.rglob("*")):
            if path.is_file() or path.is_symlink():
                self.add_file(f"{name}/{path.relative_to(source)}", path)

    def close(self) -> None:
        self._header("TRAILER!!!", 0, 0, 0)


def pack_job(plan: JobPlan, arch: str, out: BinaryIO, files: Iterable[Path],
             modules: Path | None = None, interactive: bool = False) -> None:
    """The job's archive: /lab (script, paths to bring back), qmpctl's dist-info,
    the checkout and the named inputs at their host paths, and a developer's
    kernel modules under /lib/modules."""
    cpio = Cpio(out)
    cpio.add_file("init", plan.checkout / "images" / "lab" / "init.sh")
    cpio.add_bytes("lab/job.sh", job_script(plan, arch).encode(), 0o755)
    if interactive:  # /init gives the job the console
        cpio.add_bytes("lab/interactive", b"")
    cpio.add_bytes("lab/collect", "".join(f"{p}\n" for p in plan.outputs).encode())
    for name, text in dist_info((plan.checkout / "pyproject.toml").read_text(),
                                (plan.checkout / "qmpctl" / "__init__.py").read_text()).items():
        cpio.add_bytes(f"{LAB_SITE}/qmpctl-lab.dist-info/{name}", text.encode())
    for path in [*files, *plan.inputs]:
        cpio.add_file(str(path), path)
    for path in checkout_dirs(plan.checkout):
        cpio.add_dir(str(path))
    for path in plan.outputs:
        if not path.exists() or path.is_dir():
            cpio.add_dir(str(path if path.is_dir() else path.parent))
    if modules is not None:
        cpio.add_tree(f"lib/modules/{modules.name}", modules)
    cpio.close()
