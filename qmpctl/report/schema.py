"""The report's JSON schema, published as docs/report.schema.json."""

from __future__ import annotations

import json

from .models import RunReport


def report_schema() -> str:
    return json.dumps(RunReport.model_json_schema(mode="serialization"), indent=2,
                      sort_keys=True) + "\n"
