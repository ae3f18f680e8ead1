"""Reading migration features out of query-qmp-schema (pure)."""

from qmpctl.qemu.schema import schema_features

# A trimmed query-qmp-schema: types are referred to by opaque ids, as QEMU does.
SCHEMA = [
    {"name": "migrate-set-capabilities", "meta-type": "command", "arg-type": "0"},
    {"name": "0", "meta-type": "object", "members": [{"name": "capabilities", "type": "[1]"}]},
    {"name": "[1]", "meta-type": "array", "element-type": "1"},
    {"name": "1", "meta-type": "object", "members": [{"name": "capability", "type": "2"},
                                                     {"name": "state", "type": "bool"}]},
    {"name": "2", "meta-type": "enum", "members": [{"name": "xbzrle"}, {"name": "events"}]},
    {"name": "migrate-set-parameters", "meta-type": "command", "arg-type": "3"},
    {"name": "3", "meta-type": "object", "members": [
        {"name": "max-bandwidth", "type": "int"},
        {"name": "multifd-compression", "type": "4"},
        {"name": "tls-creds", "type": "5"}]},
    {"name": "4", "meta-type": "enum", "values": ["none", "zlib"]},
    {"name": "5", "meta-type": "alternate", "members": []},
    {"name": "int", "meta-type": "builtin", "json-type": "int"},
    {"name": "bool", "meta-type": "builtin", "json-type": "boolean"},
    {"name": "calc-dirty-rate", "meta-type": "command", "arg-type": "6"},
    {"name": "6", "meta-type": "object", "members": [{"name": "mode", "type": "7"}]},
    {"name": "7", "meta-type": "enum", "values": ["page-sampling", "dirty-ring"]},
    {"name": "migrate-pause", "meta-type": "command", "arg-type": "0"},
]


def test_schema_features() -> None:
    f = schema_features(SCHEMA)
    assert f["migration_capabilities"] == ["xbzrle", "events"]
    assert f["migration_parameters"] == {"max-bandwidth": "int",
                                         "multifd-compression": "enum:none|zlib",
                                         "tls-creds": "alternate"}
    assert f["dirty_rate_modes"] == ["page-sampling", "dirty-ring"]
    assert f["commands"]["migrate-pause"] and not f["commands"]["migrate-recover"]
