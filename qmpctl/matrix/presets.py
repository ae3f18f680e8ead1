"""The built-in matrices, as data in the shape of an `--axes` TOML file
(`spec.MatrixSpec`), so `qmpctl matrix --preset NAME` and a file are the same
thing and a preset can be copied into a file to be edited.

`smoke` is for CI: the x86_64 bare-metal cells that matter most (a feature
of each kind under TCG), once each,
small guests (64 MiB RAM, an 18 MiB wave), within about 3 minutes on a 2-core
machine. `full` is every axis value qmpctl knows, 5 runs each (hours).
"""

from __future__ import annotations

from typing import Any

from .features import FEATURES

SMALL_BAREMETAL = {"ram": 64, "wave_end": 18, "timeout": 120.0}
SAME_QEMU = ["10.0->10.0"]

PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {
        "description": "CI: x86_64 bare metal, TCG precopy, postcopy and six features, KVM "
                       "bitmap and ring 4096, one cross-version pair; 1 run each",
        "repeat": 1,
        "options": SMALL_BAREMETAL,
        "axes": [
            {"accel": ["tcg"], "qemu": SAME_QEMU,
             "feature": ["precopy", "postcopy", "postcopy-recover", "auto-converge", "xbzrle",
                         "multifd-zstd", "cancel-active", "file"]},
            {"accel": ["kvm"], "tracking": ["bitmap"], "qemu": SAME_QEMU},
            {"accel": ["kvm"], "tracking": ["ring"], "ring": [4096], "qemu": SAME_QEMU},
            {"accel": ["tcg"], "qemu": ["7.2->10.0"]},
        ],
    },
    "full": {
        "description": "every arch, accelerator, tracking, ring size, guest, feature and QEMU "
                       "pair; 5 runs each",
        "repeat": 5,
        "axes": {
            "arch": ["x86_64", "aarch64"],
            "accel": ["tcg", "kvm"],
            "tracking": ["bitmap", "ring"],
            "ring": [1024, 4096, 65536],
            "guest": ["baremetal", "linux"],
            "feature": list(FEATURES),
            "qemu": ["10.0->10.0", "7.2->10.0", "10.0->7.2"],
        },
    },
}
