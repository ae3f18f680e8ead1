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
}
