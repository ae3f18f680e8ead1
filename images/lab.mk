# Lab images (qmpctl lab, images/lab/build.sh): a KVM host as a VM, one per
# architecture, in $(OUT)/lab/<arch>/ (vmlinuz, rootfs.cpio, config,
# manifest.txt). Rebuilt when the recipe, qmpctl's dependencies or the host's
# apt lists change. Needs mmdebstrap, cpio, kmod (tools/install-host.sh).

LAB_SRC := $(CURDIR)/lab
# init.sh is not an input: every job packs the checkout's own /init.
# pyproject.toml: in a checkout (an installed qmpctl's recipes have none).
LAB_INPUTS := $(LAB_SRC)/build.sh $(LAB_SRC)/sources.sh \
	$(wildcard $(CURDIR)/../pyproject.toml) $(wildcard /var/lib/apt/lists/*bookworm-backports*_Packages*)
LAB_ARCHES := aarch64 x86_64
LAB_DEBARCH_aarch64 := arm64
LAB_DEBARCH_x86_64 := amd64

all: lab
lab: $(foreach a,$(LAB_ARCHES),$(OUT)/lab/$(a)/manifest.txt)
lab-%: $(OUT)/lab/%/manifest.txt ;
.PHONY: lab lab-clean

$(OUT)/lab/%/manifest.txt: $(LAB_INPUTS)
	$(LAB_SRC)/build.sh $(LAB_DEBARCH_$*) $(@D)

lab-clean:
	rm -rf $(OUT)/lab
