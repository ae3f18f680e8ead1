"""`qmpctl repro`'s pure parts: the plan (command lines made runnable, the
hold-back, refusals), BUG.md, the inputs it reads and refuses, the compare
script, and the directory it writes. The fixture is a real report: a ring
loss on this project's build host (kvm_pvm, ring 4096, `qmpctl migrate --accel
kvm --wave-end 34`), its timeline and kernel lists shortened."""

from __future__ import annotations

import hashlib
import json
import os
import runpy
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from qmpctl.core.errors import UsageError
from qmpctl.faults.injector import FaultRecord
from qmpctl.host.facts import parse_cpuinfo
from qmpctl.migration.driver import StuckAfter
from qmpctl.migration.models import Decision
from qmpctl.report.models import Hop, RunReport
from qmpctl.repro.bug import GuestImage, bug_report, command_text
from qmpctl.repro.inputs import choose, load_path, load_runs
from qmpctl.repro.plan import ReproPlan, make_plan, refusal, stuck_bound
from qmpctl.repro.write import default_out, make_repro

DATA = Path(__file__).parent / "data" / "repro-ring-loss.json"
FILES = Path(__file__).resolve().parents[2] / "qmpctl" / "repro" / "files"
STUCK = StuckAfter(10.0, "a test's bound")


def lost() -> RunReport:
    return RunReport.model_validate(json.loads(DATA.read_text()))


def edited(**changes: Any) -> RunReport:
    rep = lost()
    assert rep.config is not None
    for key, value in changes.items():
        setattr(rep.config, key, value)
    return rep


def test_the_plan_makes_the_command_lines_runnable() -> None:
    rep = lost()
    c = rep.config
    assert c is not None and c.run_dir is not None
    plan = make_plan(rep, STUCK)
    for side in ("src", "dst"):
        assert not any(c.run_dir in a for a in plan.argv[side])
        assert plan.argv[side][plan.argv[side].index("-kernel") + 1] == "{repro}/guest/wave.elf"
        assert plan.files[side].ram_file == f"{{run}}/{side}.ram"
        assert plan.files[side].qmp_socket == f"{{run}}/{side}.qmp.sock"
        assert "kvm,dirty-ring-size=4096" in plan.argv[side]
    assert plan.argv["dst"][-3:] == ["-incoming", "defer", "-S"]
    # Everything else is the command line as qmpctl launched it.
    same = [a for a in c.qemu_argv_src if c.run_dir not in a and "wave.elf" not in a]
    assert [a for a in plan.argv["src"] if "{" not in a] == same
    assert plan.uri == "unix:{run}/mig.sock"


def test_the_plan_replays_the_settings_and_the_hold_back() -> None:
    rep = lost()
    c = rep.config
    assert c is not None
    plan = make_plan(rep, STUCK)
    assert plan.capabilities == c.migration_settings.capabilities
    assert plan.parameters == {"max-bandwidth": c.throttle_bandwidth, "downtime-limit": 1}
    assert plan.min_passes == c.min_passes and plan.hold_timeout_s == c.hold_timeout_s
    assert plan.release == {"max-bandwidth": 8 << 30,
                            "downtime-limit": c.converge_downtime_ms}
    assert (plan.stuck_s, plan.stuck_why) == (10.0, "a test's bound")
    assert plan.ram_segments[0].gpa == 0 and plan.ram_segments[0].size == c.ram_mib << 20
    assert stuck_bound(rep, 4 << 20).seconds == pytest.approx(10.0)  # 4 MiB at 64 MiB/s: floor


def test_a_tcp_run_gets_a_free_port_and_a_fault_is_replayed() -> None:
    rep = edited(migration_uri="tcp:127.0.0.1:40123", transport="tcp")
    rep.faults = [FaultRecord(fault="corrupt-dst=0x500000", at_s=1.0, pass_no=5,
                              status="completed", detail="flipped")]
    plan = make_plan(rep, STUCK)
    assert plan.uri == "tcp:127.0.0.1:{port}"
    assert [(f.gpa, f.offset) for f in plan.corrupt_dst] == [(0x500000, 0x500000)]


def test_a_ram_dir_run_puts_its_ram_in_the_reproducers_run_too() -> None:
    rep = lost()
    c = rep.config
    assert c is not None and c.run_dir is not None
    c.run_ram_dir = "/mnt/huge/qmpctl-x"
    for argv in (c.qemu_argv_src, c.qemu_argv_dst):
        argv[:] = [a.replace(f"mem-path={c.run_dir}/", "mem-path=/mnt/huge/qmpctl-x/")
                   for a in argv]
    plan = make_plan(rep, STUCK)
    assert plan.files["src"].ram_file == "{run}/src.ram"
    assert not any("/mnt/huge" in a for a in plan.argv["src"] + plan.argv["dst"])


def test_the_default_directory_is_named_after_the_run() -> None:
    assert default_out("2026-12-02T22:31:41+00:00") == Path("repro-20261202T223141")


def test_big_guest_offsets_follow_the_pci_hole() -> None:
    rep = edited(ram_mib=4096)
    rep.faults = [FaultRecord(fault="corrupt-dst=0x100000000", at_s=1.0, pass_no=5,
                              status="completed", detail="flipped")]
    plan = make_plan(rep, STUCK)
    assert plan.corrupt_dst[0].offset == 3 << 30  # RAM above 3 GiB sits at 4 GiB


@pytest.mark.parametrize(("change", "why"), [
    ({"verdict": "verified"}, "the run verified: no page was lost, there is nothing to reproduce"),
    ({"verdict": "inconclusive"}, "the run ended inconclusive, not mismatch"),
    ({"config": None}, "the run ended before it was configured"),
])
def test_runs_without_a_loss_are_refused(change: dict[str, Any], why: str) -> None:
    rep = lost().model_copy(update=change)
    assert (refusal(rep) or "").startswith(why)
    with pytest.raises(UsageError, match="cannot reproduce this run: " + why.split(":")[0]):
        make_plan(rep, STUCK)


def test_what_the_script_cannot_replay_is_refused_by_name() -> None:
    assert "does not record the QEMU command lines" in (refusal(edited(qemu_argv_dst=[])) or "")
    assert "x86_64 bare-metal wave" in (refusal(edited(guest="linux")) or "")
    assert "one host" in (refusal(edited(topology="netns")) or "")
    assert "transport file" in (refusal(edited(transport="file")) or "")
    rep = lost()
    rep.hops = [Hop(number=1, source="src", destination="dst")]
    assert "more than once" in (refusal(rep) or "")
    rep = lost()
    assert rep.migration is not None
    rep.migration.decisions.append(Decision(pass_no=5, elapsed_s=1, action="StartPostcopy",
                                            why="switch"))
    assert refusal(rep) == ("the policy took actions the reproducer does not replay: "
                            "StartPostcopy")
    rep = lost()
    rep.faults = [FaultRecord(fault="kill-dst", at_s=1, pass_no=2, status="active",
                              detail="killed")]
    assert refusal(rep) == "faults the reproducer cannot inject: kill-dst (only corrupt-dst)"


def test_bug_md_carries_what_a_maintainer_asks_for() -> None:
    rep = lost()
    text = bug_report(rep, [rep], ["r.json"], make_plan(rep, STUCK),
                      GuestImage(path="guest/wave.elf", source="/x/wave.elf", size=3,
                                 sha256="ab" * 32))
    assert rep.host_facts is not None and rep.config is not None
    assert text.startswith("# Live migration loses dirty pages: QEMU 10.0.2 -> 10.0.2, KVM on "
                           f"Linux {rep.host_facts.kernel_release} (KVM: pvm), the KVM dirty "
                           "ring (4096 entries)")
    for needed in (
            f"host kernel: {rep.host_facts.kernel_release}",
            "dirty-log-ring = 1048576 bytes a ring at most (65536 entries)",
            "machine type: pc", "CPU model: `qemu64,-kvmclock`",
            "virtualisation flags: hypervisor, pdpe1gb (neither vmx nor svm)",
            "loss rate **1/1 100.0% [20.7%, 100.0%]**",
            "122 stale (1 pass behind)", "sha256 `" + "ab" * 32 + "`",
            "| 0 | 12333 | 8237 | 237 | 4253 | 237 | 4096 |",  # the kernel's own counts
            "122 of the 122 differing pages are among them",
            "-accel kvm,dirty-ring-size=4096 \\", "-incoming defer \\\n    -S",
            "EndHoldBack: 3 dirty syncs done and the guest rewrote sent memory"):
        assert needed in text, needed
    assert ("3 non-empty ring reaps (8237 pages), the last at +0.097 s (45 pages); 128333 "
            "ring-full exits (128330 after the last reap)") in text


def test_the_rate_is_over_every_run_given() -> None:
    rep = lost()
    ok = rep.model_copy(update={"verdict": "verified"})
    text = bug_report(rep, [ok, rep, ok], ["a", "b", "c"], make_plan(rep, STUCK),
                      GuestImage(path="g", source="s", size=1, sha256="0"))
    assert "Over the 3 run(s) given to `qmpctl repro` (1 mismatch, 2 verified): loss rate " \
           "**1/3 33.3% [6.1%, 79.2%]**" in text


def test_command_text_is_one_option_a_line_and_shell_quoted() -> None:
    assert command_text(["/q", "-name", "a b", "-S"]) == "/q \\\n    -name 'a b' \\\n    -S"


def test_bad_inputs_are_named(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file or directory"):
        load_path(tmp_path / "nope")
    with pytest.raises(UsageError, match=r"not a qmpctl run directory \(no report.json"):
        load_path(tmp_path)
    (tmp_path / "a.json").write_text("{not json")
    with pytest.raises(UsageError, match=r"not a qmpctl report .not JSON"):
        load_path(tmp_path / "a.json")
    (tmp_path / "b.json").write_text('{"matrix": 1}')
    with pytest.raises(UsageError, match="not a qmpctl run report"):
        load_path(tmp_path / "b.json")
    with pytest.raises(UsageError, match="give a run directory"):
        load_runs([])


def test_run_directories_arrays_and_the_run_chosen(tmp_path: Path) -> None:
    rep = lost()
    ok = rep.model_copy(update={"verdict": "verified"})
    for i, r in ((1, ok), (2, rep)):
        (tmp_path / f"run-{i}").mkdir()
        (tmp_path / f"run-{i}" / "report.json").write_text(r.model_dump_json())
    runs = load_path(tmp_path)
    assert [r.report.verdict for r in runs] == ["verified", "mismatch"]
    assert choose(runs).source == str(tmp_path / "run-2" / "report.json")
    assert choose(runs).logs == str(tmp_path / "run-2")
    array = tmp_path / "repeat.json"
    array.write_text("[" + ok.model_dump_json() + "," + ok.model_dump_json() + "]")
    with pytest.raises(UsageError, match=r"none of the 2 runs lost pages .verified."):
        choose(load_path(array))
    with pytest.raises(UsageError, match="nothing to reproduce"):
        choose(load_runs([tmp_path / "run-1"]))
    other = rep.model_copy(deep=True)
    assert other.config is not None
    other.config.dirty_ring_size = 1024
    (tmp_path / "other.json").write_text(other.model_dump_json())
    with pytest.raises(UsageError, match=r"in dirty_ring_size .1024 against 4096.: runs of "
                                         r"different configurations"):
        choose(load_runs([tmp_path / "run-2", tmp_path / "other.json"]))


def _runnable(tmp_path: Path) -> Path:
    """The fixture with its guest image and QEMU pointed at files that exist here."""
    rep = lost()
    c = rep.config
    assert c is not None
    image, qemu = tmp_path / "wave.elf", tmp_path / "qemu"
    image.write_bytes(b"\x7fELF guest")
    qemu.write_text("")
    old = c.qemu_argv_src[c.qemu_argv_src.index("-kernel") + 1]
    for argv in (c.qemu_argv_src, c.qemu_argv_dst):
        argv[:] = [str(image) if a == old else a for a in argv]
        argv[0] = str(qemu)
    c.qemu_src = c.qemu_dst = str(qemu)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "report.json").write_text(rep.model_dump_json())
    (tmp_path / "run" / "src.log").write_text("trace")
    return tmp_path / "run"


def test_the_directory_written(tmp_path: Path) -> None:
    run = _runnable(tmp_path)
    chosen, out, written = make_repro([run], tmp_path / "out")
    assert out == tmp_path / "out" and chosen.report.verdict == "mismatch"
    names = sorted(str(p.relative_to(out)) for p in written)
    assert names == ["BUG.md", "compare.py", "guest/wave.elf", "plan.json", "qemu-dst.cmdline",
                     "qemu-src.cmdline", "qmpctl-logs/src.log", "report.json", "repro.py"]
    plan = ReproPlan.model_validate_json((out / "plan.json").read_text())
    assert plan.guest_image == "guest/wave.elf"
    assert (out / "guest" / "wave.elf").read_bytes() == b"\x7fELF guest"
    sha = hashlib.sha256(b"\x7fELF guest").hexdigest()
    assert sha in (out / "BUG.md").read_text()
    assert (out / "repro.py").stat().st_mode & stat.S_IXUSR
    assert (out / "repro.py").read_bytes() == (FILES / "repro.py").read_bytes()
    with pytest.raises(UsageError, match="exists and is not an empty directory"):
        make_repro([run], out)


def test_missing_files_are_named_before_anything_is_written(tmp_path: Path) -> None:
    run = _runnable(tmp_path)
    (tmp_path / "wave.elf").unlink()
    with pytest.raises(UsageError, match=r"the run's guest image .*wave.elf is missing"):
        make_repro([run], tmp_path / "out")
    assert not (tmp_path / "out").exists()
    (tmp_path / "wave.elf").write_bytes(b"x")
    (tmp_path / "qemu").unlink()
    with pytest.raises(UsageError, match=r"the source QEMU .*qemu is missing"):
        make_repro([run], tmp_path / "out")


def test_the_cli_exits_2_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / "ok.json").write_text(lost().model_copy(update={"verdict": "verified"})
                                      .model_dump_json())
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    for arg, said in ((tmp_path / "ok.json", "nothing to reproduce"),
                      (tmp_path, "not a qmpctl run directory")):
        res = subprocess.run([sys.executable, "-m", "qmpctl", "repro", str(arg)],
                             capture_output=True, text=True, env=env)
        assert res.returncode == 2, res.stderr
        assert said in res.stderr and res.stderr.startswith("qmpctl: ")


def test_compare_script_lists_the_differing_pages(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    compare = runpy.run_path(str(FILES / "compare.py"))
    src, dst = tmp_path / "src.ram", tmp_path / "dst.ram"
    data = bytearray(3 << 20)
    src.write_bytes(data)
    dst.write_bytes(data)
    assert compare["main"](["c", str(src), str(dst)]) == 0
    data[0x1000 + 5] = 7
    data[0x200000] = 9
    dst.write_bytes(data)
    assert compare["main"](["c", str(src), str(dst)]) == 1
    out = capsys.readouterr().out
    assert "page gpa 0x1000 (file offset 0x1000): byte +0x5 src 0x00 dst 0x07" in out
    assert "2 pages differ" in out
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"ram_segments": [{"gpa": 1 << 30, "offset": 0,
                                                  "size": 3 << 20}],
                                "exclude": [[(1 << 30) + 0x200000, (1 << 30) + 0x201000]]}))
    assert compare["main"](["c", str(src), str(dst), str(plan)]) == 1
    out = capsys.readouterr().out
    assert "page gpa 0x40001000 (file offset 0x1000)" in out and "1 pages differ" in out


def test_cpuinfo_is_parsed() -> None:
    text = ("processor\t: 0\nmodel name\t: Xeon\nflags\t\t: fpu vmx ept\n\n"
            "processor\t: 1\nmodel name\t: Xeon\nflags\t\t: fpu vmx ept\n")
    assert parse_cpuinfo(text) == ("Xeon", 2, ["fpu", "vmx", "ept"])
    assert parse_cpuinfo("") == (None, 0, [])
