"""The run report: models composed from the layers' own, text and JSON schema."""
