"""The fleet: `qmpctl matrix` spread over many KVM hosts with Dask.

Dask's distributed scheduler places the tasks (one per cell and repeat) on
workers that declare, as Dask resources, what their host can run (`resources`,
from `qmpctl doctor`'s facts); `qmpctl worker` runs only qmpctl's own task
function (`task`, `guard`, `serve`, `daskworker`); the controller
(`options`, `clusters`, `executor`, `journal`) streams the results
into the same `MatrixState` a local matrix fills, so the table, JSON, JUnit,
Markdown and plot are the same. Dask is imported only here and only when a
fleet is used.
"""
