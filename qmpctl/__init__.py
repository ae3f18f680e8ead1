"""qmpctl: drive QEMU live migration over QMP and prove no dirty page was lost."""

# The one place the version is written: pyproject.toml reads it from here
# ([tool.setuptools.dynamic]). A literal, not a package-metadata lookup: that
# import alone was 40 ms of every run. The CLI's --version, every report and
# JUnit file say which qmpctl judged.
__version__ = "0.2.0"
