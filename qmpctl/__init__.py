"""qmpctl: drive QEMU live migration over QMP and prove no dirty page was lost."""

from importlib.metadata import PackageNotFoundError, version

# The package metadata is the one source (pyproject.toml's version): the CLI's
# --version, every report and JUnit file say what is installed.
try:
    __version__ = version("qmpctl")
except PackageNotFoundError:  # a checkout on PYTHONPATH, never installed
    __version__ = "0+unknown"
