"""qmpctl: drive QEMU live migration over QMP and prove no dirty page was lost."""

import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


def _version() -> str:
    """pyproject.toml's version is the one source: through the installed
    package's metadata, or read from the checkout qmpctl runs from when it
    was never installed (PYTHONPATH, a lab), where stray metadata such as an
    `qmpctl.egg-info` without PKG-INFO may answer None."""
    try:
        if found := version("qmpctl"):
            return found
    except PackageNotFoundError:
        pass
    try:
        project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml")
                               .read_text())["project"]
        return str(project["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "0+unknown"


# The CLI's --version, every report and JUnit file say which qmpctl judged.
__version__ = _version()
