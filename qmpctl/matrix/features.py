"""The `feature` axis: a name for each way of migrating, and the
`MigrateOptions` keyword arguments that select it.

Assembled from the feature registry (`qmpctl.migration.features`: each
feature class lists its own values), so a new feature brings its values
with it; the keywords are checked by `MigrateOptions.from_kwargs` when a
matrix is loaded, so a typo is a usage error naming the option, not a
silent no-op. The `full` preset runs every value listed.
"""

from __future__ import annotations

from ..migration.features import matrix_values, registry

FEATURES: dict[str, dict[str, object]] = matrix_values()

# Values that mean something only where KVM's dirty ring is used.
RING_FEATURES: tuple[str, ...] = tuple(name for cls in registry() if cls.matrix_needs_ring
                                       for name in cls.matrix)
