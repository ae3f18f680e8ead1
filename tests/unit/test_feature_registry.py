"""The feature registry (qmpctl.migration.features): each feature's module
brings its options, rules, matrix values and docs row; everything else
(the CLI, MigrateOptions, the matrix axis) is assembled from it."""

from __future__ import annotations

import pkgutil

import pytest
import typer.main

from qmpctl.cli import app
from qmpctl.core.errors import UsageError
from qmpctl.matrix.features import FEATURES, RING_FEATURES
from qmpctl.migration import features
from qmpctl.scenario.options import MigrateOptions


def test_every_module_of_the_package_is_one_feature() -> None:
    modules = {m.name for m in pkgutil.iter_modules(features.__path__)
               if not m.name.startswith("_")}
    found = {cls.__module__.rsplit(".", 1)[1] for cls in features.registry()}
    assert found == modules
    assert len(features.registry()) == len(modules)  # one class each
    orders = [cls.order for cls in features.registry()]
    assert len(set(orders)) == len(orders)


def test_feature_options_are_migrate_options_and_cli_options() -> None:
    fields = features.option_fields()
    assert {"multifd", "xbzrle_cache", "auto_converge", "dirty_limit"} <= set(fields)
    assert set(fields) <= set(MigrateOptions.model_fields)
    migrate = typer.main.get_command(app).get_command(None, "migrate")  # type: ignore[attr-defined]
    params = {p.name: p for p in migrate.params}
    for name, info in fields.items():
        assert params[name].help == info.description
        assert f"--{name.replace('_', '-')}" in params[name].opts


def test_the_matrix_axis_is_every_features_values() -> None:
    expected = ["precopy"] + [v for cls in features.registry() for v in cls.matrix]
    assert list(FEATURES) == expected
    assert set(RING_FEATURES) == {"dirty-limit", "vcpu-dirty-limit"}
    for kwargs in FEATURES.values():
        MigrateOptions.from_kwargs(**kwargs)  # every keyword is an option


def test_a_feature_field_is_validated_by_migrate_options() -> None:
    with pytest.raises(UsageError, match="--multifd-compression 'lz4': choose none, zlib or zstd"):
        MigrateOptions.from_kwargs(multifd=2, multifd_compression="lz4")
