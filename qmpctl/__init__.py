"""qmpctl: drive QEMU live migration over QMP and prove no dirty page was lost."""

__version__ = "0.1.0"
