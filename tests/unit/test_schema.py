from pathlib import Path

from qmpctl.report.schema import report_schema

PUBLISHED = Path(__file__).resolve().parents[2] / "docs" / "report.schema.json"


def test_published_schema_is_current() -> None:
    """docs/report.schema.json is the contract; regenerate with `qmpctl schema`."""
    assert PUBLISHED.read_text() == report_schema()
