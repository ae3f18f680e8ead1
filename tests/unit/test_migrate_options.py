"""`qmpctl migrate`'s options come from one declaration, MigrateOptions'
fields (issue 21 item 1): same names, help, defaults; only the CLI's own
options are declared in cli.py."""

from __future__ import annotations

import pytest
import typer.main

from qmpctl.cli import MIGRATE_PANELS, app, cli_type
from qmpctl.scenario.options import MigrateOptions

CLI_ONLY = {"json_out", "report", "plot", "html", "repeat", "until_fail", "bisect", "until_ci"}


def migrate_params() -> dict[str, object]:
    root = typer.main.get_command(app)
    cmd = root.get_command(None, "migrate")  # type: ignore[attr-defined]
    return {p.name: p for p in cmd.params}


def test_every_field_is_an_option_with_its_help_default_and_panel() -> None:
    params = migrate_params()
    assert set(params) - {"help"} == set(MigrateOptions.model_fields) | CLI_ONLY
    for name, info in MigrateOptions.model_fields.items():
        param = params[name]
        assert param.opts[0] == "--" + name.replace("_", "-")  # type: ignore[attr-defined]
        assert param.help == info.description  # type: ignore[attr-defined]
        assert info.description, f"{name}: no help"
        assert param.rich_help_panel in MIGRATE_PANELS  # type: ignore[attr-defined]
        if not isinstance(info.default, tuple):
            assert param.default == info.default, name  # type: ignore[attr-defined]


@pytest.mark.parametrize(("annotation", "parsed"), [
    (int | None, int), (bool, bool), (tuple[str, ...], list[str]),
    (MigrateOptions.model_fields["guest"].annotation, str),
])
def test_field_types_as_typer_parses_them(annotation: object, parsed: object) -> None:
    assert cli_type(annotation) == parsed


def test_not_given_is_none_and_resolved_later() -> None:
    opts = MigrateOptions.from_kwargs()
    assert (opts.throttle, opts.transport, opts.verify, opts.dst_root, opts.dst_qmpctl) == (
        None, None, None, None, None)
