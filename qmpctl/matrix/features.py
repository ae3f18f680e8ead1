"""The `feature` axis: a name for each way of migrating, and the
`MigrateOptions` keyword arguments that select it.

One line per feature, so adding one is one line; the keywords are checked by
`MigrateOptions.from_kwargs` when a matrix is loaded, so a typo here is a
usage error naming the option, not a silent no-op. The `full` preset runs
every feature listed.
"""

from __future__ import annotations

FEATURES: dict[str, dict[str, object]] = {
    "precopy": {},
    "postcopy": {"postcopy": True},
    "postcopy-preempt": {"postcopy": True, "postcopy_preempt": True},
    "postcopy-recover": {"postcopy": True, "postcopy_recover": True},
    "postcopy-double-failure": {"postcopy": True, "postcopy_recover": True,
                                "postcopy_recover_fail": True},
    # 8 MiB/s held back: the guest outruns it, which is what makes QEMU throttle
    "auto-converge": {"auto_converge": True, "throttle": 8},
    "xbzrle": {"xbzrle_cache": 16},
    "multifd": {"multifd": 4},
    "multifd-zlib": {"multifd": 2, "multifd_compression": "zlib"},
    "multifd-zstd": {"multifd": 2, "multifd_compression": "zstd"},
    "multifd-zero-page": {"multifd": 2, "zero_page_detection": "multifd"},
    "no-zero-page": {"zero_page_detection": "none"},
    "dirty-limit": {"dirty_limit": 50},
    "vcpu-dirty-limit": {"vcpu_dirty_limit": 50},
    "cancel-setup": {"cancel_at": "setup"},
    "cancel-active": {"cancel_at": "active"},
    "cancel-pre-switchover": {"cancel_at": "pre-switchover"},
    "file": {"transport": "file"},
    "file-multifd": {"transport": "file", "multifd": 2},
}
