"""`qmpctl matrix`: many real migrations over the cartesian product of axes
(arch, accel, dirty tracking, ring size, vCPUs, guest, feature, QEMU pair),
each cell repeated, with a loss rate and its Wilson interval per cell.

A loss that shows up once in ten runs needs repetition and a matrix to be
seen at all; this package turns axes into cells (`spec`, `cells`), says which
cells cannot run here and why (`plan`), runs them one after another through
the ordinary runner (`execute`), and writes what happened (`results`, `stats`,
`junit`, `table`, `markdown`, and the heat map `heat` draws for `plot` and
`html`; `repeat` makes a `migrate --repeat` a one-cell matrix for `html`).
Every cell is a `MigrateOptions` built at load time, so a bad axis value is a
usage error before anything starts.
"""
