"""Build hook: a wheel carries the bare-metal guests and the image recipes.

`build_py` also copies images/ (Makefile, fragments, scripts), guestload/ and
the host set-up scripts (tools/install-*.sh) into qmpctl/_data/ and builds
the bare-metal guests (`make -C images baremetal`: x86 wave and probe64, the
arm64 ITS guest; a few hundred KiB) into qmpctl/_data/images/out/, so an
installed qmpctl runs without a checkout and can build the larger images
itself (`qmpctl images build`). Editable installs skip this: a checkout uses
its own images/out.
"""

import importlib.util
import shutil
import subprocess
import tempfile
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
RECIPES = ("images/Makefile", "images/*.mk", "images/lab/*.sh", "images/linux/*.sh",
           "guestload/**/*", "tools/install-host.sh", "tools/install-bookworm-qemu.sh")
BAREMETAL = ("x86_64/wave.elf", "x86_64/probe64.elf", "aarch64/its.elf")


def _baremetal_needs() -> dict[str, str]:
    """Tool -> Debian package, from qmpctl/guests/needs.py (loaded by path: the
    build environment has none of qmpctl's dependencies)."""
    spec = importlib.util.spec_from_file_location("_qmpctl_needs",
                                                  ROOT / "qmpctl" / "guests" / "needs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return dict(module.BAREMETAL_NEEDS)


TOOLS = _baremetal_needs()


class BuildPyWithImages(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        data = Path(self.build_lib) / "qmpctl" / "_data"
        for pattern in RECIPES:
            for src in sorted(ROOT.glob(pattern)):
                if src.is_file():
                    dst = data / src.relative_to(ROOT)
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, dst)
        missing = [f"{tool} (Debian package {pkg})" for tool, pkg in TOOLS.items()
                   if shutil.which(tool) is None]
        if missing:
            raise SystemExit("qmpctl: building the bare-metal guest images needs "
                             + ", ".join(missing) + ": apt-get install "
                             + " ".join(TOOLS[m.split()[0]] for m in missing))
        with tempfile.TemporaryDirectory(prefix="qmpctl-images-") as out:
            subprocess.run(["make", "-s", "-C", str(ROOT / "images"), f"OUT={out}",
                            "baremetal"], check=True)
            for image in BAREMETAL:
                dst = data / "images" / "out" / image
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(Path(out) / image, dst)


setup(cmdclass={"build_py": BuildPyWithImages})
