from qmpctl.qemu.console import parse_console


def test_records_and_pass_markers() -> None:
    view = parse_console(
        b"SeaBIOS noise\r\nQMPCTL wave start=0x200000 end=0x400000\nBBB"
        b"\nQMPCTL table name=its-device base=0x40100000 size=0x10000\nBB")
    assert view.passes == 5
    wave = view.find("wave")[0]
    assert wave.int("start") == 0x200000
    assert view.find("table", name="its-device")[0].int("size") == 0x10000
    assert view.last("error") is None


def test_partial_record_is_not_counted_yet() -> None:
    assert parse_console(b"QMPCTL wave start=0x2").records == []
