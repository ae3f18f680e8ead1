"""`qmpctl repro`: a lost run turned into a stand-alone reproducer directory
(QEMU command lines, a qemu.qmp-only driver script, the guest image, a
compare script and BUG.md) that needs no qmpctl to run."""
