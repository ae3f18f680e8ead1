"""One QEMU process: its command line, its QMP monitor, its serial console,
its run directory, and what its QMP schema offers."""
