"""What building each kind of guest image needs: a command (or a file) -> the
Debian package that has it. Standard library only, no package imports:
setup.py loads this file by path to check the build host before it builds
the bare-metal guests into a wheel."""

BAREMETAL_NEEDS = {"make": "make", "gcc": "gcc", "ld": "binutils",
                   "aarch64-linux-gnu-gcc": "gcc-aarch64-linux-gnu"}
LINUX_NEEDS = {"apt-get": "apt", "apt-cache": "apt", "dpkg-deb": "dpkg", "cpio": "cpio",
               "gzip": "gzip", "/usr/lib/x86_64-linux-gnu/libc.a": "libc6-dev",
               "/usr/aarch64-linux-gnu/lib/libc.a": "libc6-dev-arm64-cross"}
LAB_NEEDS = {"mmdebstrap": "mmdebstrap", "depmod": "kmod", "cpio": "cpio",
             "python3": "python3", "apt-cache": "apt"}
# Everything building every image needs (docs/install.md and `qmpctl doctor` list it).
ALL_NEEDS = {**BAREMETAL_NEEDS, **LINUX_NEEDS, **LAB_NEEDS}
