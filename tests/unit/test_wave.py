import numpy as np

from qmpctl.verify.wave import WaveParams, check_samples


def arr(*v: int) -> np.ndarray:
    return np.array(v, dtype=np.uint8)


def test_all_equal_and_one_edge_hold() -> None:
    assert check_samples(arr(5, 5, 5, 5), 1) == (0, None, "no edge (all blocks equal)")
    assert check_samples(arr(6, 6, 5, 5), 1) == (1, None, "one edge")


def test_edge_wraps_modulo_256() -> None:
    assert check_samples(arr(0, 0, 255, 255), 1)[1] is None
    assert check_samples(arr(2, 2, 255), 3)[1] is None


def test_stale_block_is_found() -> None:
    _edges, bad, detail = check_samples(arr(7, 7, 5, 7, 6, 6), 1)
    assert bad == 2
    assert "block 2 holds 0x05 after 0x07" in detail


def test_two_edges_is_a_failure() -> None:
    _edges, bad, _detail = check_samples(arr(7, 6, 6, 7, 6), 1)
    # 7->6 is an edge; 6->7 steps the wrong way: block 3 is newer than its predecessor.
    assert bad == 3


def test_a_page_one_pass_behind_makes_a_second_edge() -> None:
    _edges, bad, _detail = check_samples(arr(6, 6, 5, 6, 5, 5), 1)
    assert bad is not None


def test_params_problems() -> None:
    assert WaveParams(0x200000, 0x400000).problems() == []
    assert WaveParams(0x200001, 0x400000).problems() == [
        "wave start and end must be multiples of the stride"]
    assert "delta 0 must be in 1..255" in WaveParams(0x200000, 0x400000, delta=0).problems()
    assert WaveParams(0x200000, 0x400000).fw_cfg_string() == (
        "start=0x200000 end=0x400000 stride=0x1000 delta=0x1 offset=0x0")
