"""The guests qmpctl launches: their images, launch pieces, RAM layout, how to
tell that their workload runs, and the checks they run on themselves.

Every guest implements the `Guest` protocol (`guests.protocol`)."""
