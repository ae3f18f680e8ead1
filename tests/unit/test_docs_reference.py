"""The docs site's generated reference (docs/gen_reference.py): checked
against what the CLI itself prints, so a command or option the generator
missed fails here as well as in `nox -s docs`."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest
from typer.testing import CliRunner

from qmpctl.cli import app
from qmpctl.matrix.features import FEATURES
from qmpctl.scenario.options import MigrateOptions

GEN = Path(__file__).resolve().parents[2] / "docs" / "gen_reference.py"


@pytest.fixture(scope="module")
def gen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_reference", GEN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # a module name other than "<run_path>": nothing written
    return module


@pytest.fixture(scope="module")
def pages(gen: ModuleType) -> dict[str, str]:
    return gen.pages()  # type: ignore[no-any-return]


def help_text(*args: str) -> str:
    result = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "400"},
                                terminal_width=400)
    assert result.exit_code == 0, result.output
    return result.output


def listed_commands(help_: str) -> list[str]:
    """The command names a `--help` lists in its Commands panel."""
    panel = help_.split("Commands", 1)[1] if "Commands" in help_ else ""
    return re.findall(r"^│ (\w[\w-]*) ", panel, re.MULTILINE)


def test_every_command_and_option_the_cli_prints_is_in_the_reference(
        pages: dict[str, str]) -> None:
    page = pages["reference/cli.md"]
    todo, seen = [()], 0
    while todo:
        path = todo.pop()
        help_ = help_text(*path)
        assert f"## `{' '.join(('qmpctl', *path))}`" in page
        for option in set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", help_)):
            assert option in page, f"qmpctl {' '.join(path)}: {option} is not in the reference"
            seen += 1
        todo += [(*path, sub) for sub in listed_commands(help_)]
    assert seen > 100  # the walk reached `migrate` and its options


def test_the_feature_table_has_every_feature_with_the_options_it_sets(
        pages: dict[str, str]) -> None:
    page = pages["reference/features.md"]
    for name in FEATURES:
        assert f"| `{name}` |" in page
    assert "| `xbzrle` | `--xbzrle-cache 16` | `xbzrle_cache=16` |" in page
    assert "| `postcopy` | `--postcopy` | `postcopy=True` |" in page


def test_a_feature_that_sets_no_cli_option_fails_the_build(
        gen: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gen, "FEATURES", {"bogus": {"no_such_option": 1}})
    with pytest.raises(SystemExit, match="no_such_option"):
        gen.pages()


def test_the_plugin_page_has_every_keyword_and_plugin_option(pages: dict[str, str]) -> None:
    page = pages["reference/plugin.md"]
    for name in MigrateOptions.model_fields:
        assert f"| `{name}` |" in page
    for option in ("--qmpctl-require-kvm", "--qmpctl-lab", "--qmpctl-timeout"):
        assert f"`{option}`" in page


def test_the_modules_page_has_every_module_of_the_package(pages: dict[str, str]) -> None:
    root = GEN.parents[1]
    page = pages["reference/modules.md"]
    files = sorted((root / "qmpctl").rglob("*.py"))
    assert len(files) > 50
    for f in files:
        name = ".".join(f.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
        assert f"| `{name}` |" in page, f"{name} is not on the modules page"
    assert page.index("## `qmpctl.cli`") < page.index("## `qmpctl.core`")  # top layer first
