"""Fault injection: `--fault WHAT@WHEN` specs (pure parsing), and the injector
that fires them from the migration's own events (pass, status, time)."""
