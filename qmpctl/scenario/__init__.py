"""What to run: the options of one migration (`MigrateOptions`), their
resolution against the host, and the runner that orchestrates the layers."""
