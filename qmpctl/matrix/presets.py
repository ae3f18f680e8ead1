"""The built-in matrices, as data in the shape of an `--axes` TOML file
(`spec.MatrixSpec`), so `qmpctl matrix --preset NAME` and a file are the same
thing and a preset can be copied into a file to be edited.

`smoke` is for CI: the x86_64 bare-metal cells that matter most (a feature
of each kind under TCG), once each, small guests (64 MiB RAM, an 18 MiB wave),
within about 3 minutes on a 2-core machine. `full` is every feature on both
bare-metal guests, every tracking, two ring sizes and the cross-version pairs,
3 runs each: the results table in docs/results.md, about 20 minutes here. `storm` is
ring-full storms, a writer on each of 1..8 vCPUs under KVM. `kvm-control`
puts the same x86_64 KVM cells on this host and in the x86_64 lab, and the
arm64 ones in the arm64 lab (the host axis: a real KVM as control beside
this host's; two lab boots, slow under nested TCG). `exhaustive`
is every axis value qmpctl knows, 5 runs each (hours; most cells need a host
with arm64 KVM, 64-bit KVM guests or more time than a CI job has).
"""

from __future__ import annotations

from typing import Any

from .features import FEATURES, RING_FEATURES

SMALL_BAREMETAL = {"ram": 64, "wave_end": 18, "timeout": 120.0}
SAME_QEMU = ["10.0->10.0"]
# Every feature TCG can run (dirty-limit needs KVM's dirty ring).
TCG_FEATURES = [f for f in FEATURES if f not in RING_FEATURES]

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
        "description": "bare metal x86_64 and arm64 ITS, every feature under TCG and KVM "
                       "(bitmap, rings of 1024 and 4096), 7.2 <-> 10.0; 3 runs each "
                       "(about 20 minutes here)",
        "repeat": 3,
        "options": SMALL_BAREMETAL,
        "axes": [
            {"arch": ["x86_64", "aarch64"], "accel": ["tcg"], "qemu": SAME_QEMU,
             "feature": TCG_FEATURES},
            {"accel": ["kvm"], "tracking": ["bitmap", "ring"], "ring": [1024, 4096],
             "qemu": SAME_QEMU, "feature": [*TCG_FEATURES, *RING_FEATURES]},
            {"arch": ["x86_64", "aarch64"], "accel": ["tcg"], "feature": ["precopy", "postcopy"],
             "qemu": ["7.2->10.0", "10.0->7.2"]},
        ],
    },
    "storm": {
        "description": "ring-full storms: x86_64 KVM, a wave writer on each of 1, 2, 4 and 8 "
                       "vCPUs, rings of 1024 and 4096 entries, the bitmap as control; "
                       "5 runs each (a few minutes here)",
        "repeat": 5,
        "options": SMALL_BAREMETAL,
        "axes": [
            {"accel": ["kvm"], "tracking": ["ring"], "ring": [1024, 4096],
             "smp": [1, 2, 4, 8], "qemu": SAME_QEMU},
            {"accel": ["kvm"], "tracking": ["bitmap"], "smp": [1, 4, 8], "qemu": SAME_QEMU},
        ],
    },
    "kvm-control": {
        "description": "host axis: x86_64 KVM rings of 1024 and 4096 entries and the bitmap, "
                       "1 and 2 vCPUs, ring 4096 with (vcpu-)dirty-limit, on this host and in the "
                       "x86_64 lab side by side; the same rings and bitmap on arm64 in the "
                       "arm64 lab; 3 runs each (one boot per lab, nested TCG: the better "
                       "part of an hour)",
        "repeat": 3,
        "options": {**SMALL_BAREMETAL, "timeout": 300.0},  # nested KVM under TCG is slow
        "axes": [
            {"accel": ["kvm"], "tracking": ["ring"], "ring": [1024, 4096], "smp": [1, 2],
             "qemu": SAME_QEMU, "host": ["local", "lab-x86_64"]},
            {"accel": ["kvm"], "tracking": ["bitmap"], "smp": [1, 2], "qemu": SAME_QEMU,
             "host": ["local", "lab-x86_64"]},
            {"accel": ["kvm"], "tracking": ["ring"], "ring": [4096], "smp": [1],
             "feature": ["dirty-limit", "vcpu-dirty-limit"], "qemu": SAME_QEMU,
             "host": ["local", "lab-x86_64"]},
            {"arch": ["aarch64"], "accel": ["kvm"], "tracking": ["ring"], "ring": [1024, 4096],
             "smp": [1, 2], "qemu": SAME_QEMU, "host": ["lab-aarch64"]},
            {"arch": ["aarch64"], "accel": ["kvm"], "tracking": ["bitmap"], "smp": [1, 2],
             "qemu": SAME_QEMU, "host": ["lab-aarch64"]},
        ],
    },
    "exhaustive": {
        "description": "every arch, accelerator, tracking, ring size, guest, feature and QEMU "
                       "pair; 5 runs each (hours)",
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
