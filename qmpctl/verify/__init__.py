"""Pure analysis of what a migration left behind: RAM images compared page by
page, the workload's own invariant, the dirty-tracking evidence from QEMU's
trace. Each module owns the result model it computes; the report reuses them."""
