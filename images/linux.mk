# Linux guests for x86_64 and aarch64: Debian's cloud kernel + an initramfs
# with busybox, the virtio-pci/virtio-net modules and the static guestload.
#
#   $(OUT)/<arch>/linux/vmlinuz      kernel (bzImage / arm64 Image)
#   $(OUT)/<arch>/linux/initrd.img   gzip'd cpio, /init = guestload/linux/init.sh
#   $(OUT)/<arch>/linux/guestload    the static workload binary (also in initrd)
#   $(OUT)/<arch>/linux/manifest.txt what it was built from
#
# Inputs are resolved with apt (linux-image-cloud-<debarch> -> the versioned
# linux-image-6.1.0-NN-cloud-<debarch>, busybox-static) into the stamp
# $(LINUX_CACHE)/<debarch>/versions.mk, which make includes: it is re-resolved
# only when the host's apt lists or fetch-debs.sh change, and the .debs it
# names are downloaded once into $(LINUX_CACHE)/debs/.  Run `apt-get update`
# on the host first.  Needs: apt, dpkg-deb, cpio, gzip, gcc,
# aarch64-linux-gnu-gcc + libc6-dev-arm64-cross (tools/install-host.sh).

LINUX_SRC   := $(CURDIR)/linux
LINUX_CACHE ?= $(CURDIR)/cache/linux
LINUX_GL    := $(GUESTLOAD)/linux
LINUX_ARCHES := x86_64 aarch64
LINUX_DEBARCH_x86_64  := amd64
LINUX_DEBARCH_aarch64 := arm64
LINUX_CC_x86_64  := gcc
LINUX_CC_aarch64 := aarch64-linux-gnu-gcc
LINUX_CFLAGS := -O2 -Wall -Wextra -static -pthread

# Host apt lists: when `apt-get update` brings new ones, re-resolve.
LINUX_APT_LISTS := $(wildcard /var/lib/apt/lists/*_Packages*)

linux_outs = $(foreach a,$(LINUX_ARCHES),$(addprefix $(OUT)/$(a)/linux/,vmlinuz initrd.img guestload manifest.txt))

all: linux
linux: $(linux_outs)
.PHONY: linux linux-clean linux-resolve

# Resolving needs apt: not for goals that build no Linux guest (baremetal, clean).
LINUX_NO_RESOLVE := clean linux-clean baremetal
ifneq ($(if $(MAKECMDGOALS),$(filter-out $(LINUX_NO_RESOLVE),$(MAKECMDGOALS)),all),)
-include $(LINUX_CACHE)/amd64/versions.mk $(LINUX_CACHE)/arm64/versions.mk
endif

$(LINUX_CACHE)/%/versions.mk: $(LINUX_SRC)/fetch-debs.sh $(LINUX_APT_LISTS)
	@mkdir -p $(@D)
	$(LINUX_SRC)/fetch-debs.sh resolve $* $(LINUX_CACHE) $@

# Force re-resolving (e.g. after apt-get update did not change list files).
linux-resolve:
	rm -f $(LINUX_CACHE)/amd64/versions.mk $(LINUX_CACHE)/arm64/versions.mk
	$(MAKE) -f $(firstword $(MAKEFILE_LIST)) linux

define LINUX_ARCH_RULES
# $(1) = QEMU arch, $(2) = Debian arch
$(OUT)/$(1)/linux/guestload: $(LINUX_GL)/guestload.c
	@mkdir -p $$(@D)
	$(LINUX_CC_$(1)) $(LINUX_CFLAGS) -o $$@.tmp $$<
	mv $$@.tmp $$@

$(OUT)/$(1)/linux/vmlinuz: $$(LINUX_KDEB_$(2))
	@mkdir -p $$(@D)
	dpkg-deb --fsys-tarfile $$< | tar -xO --wildcards './boot/vmlinuz-*' > $$@.tmp
	test -s $$@.tmp && mv $$@.tmp $$@

$(OUT)/$(1)/linux/initrd.img: $$(LINUX_KDEB_$(2)) $$(LINUX_BBDEB_$(2)) $(OUT)/$(1)/linux/guestload \
		$(LINUX_GL)/init.sh $(LINUX_SRC)/mkinitramfs.sh
	$(LINUX_SRC)/mkinitramfs.sh $$(LINUX_KDEB_$(2)) $$(LINUX_BBDEB_$(2)) \
		$(OUT)/$(1)/linux/guestload $(LINUX_GL)/init.sh $$@

$(OUT)/$(1)/linux/manifest.txt: $$(LINUX_KDEB_$(2)) $$(LINUX_BBDEB_$(2)) \
		$(OUT)/$(1)/linux/vmlinuz $(OUT)/$(1)/linux/initrd.img
	printf 'kernel_package=%s\nkernel_version=%s\nkernel_release=%s\nbusybox_static=%s\n' \
		'$$(LINUX_KPKG_$(2))' '$$(LINUX_KVER_$(2))' '$$(LINUX_KREL_$(2))' '$$(LINUX_BBVER_$(2))' > $$@
endef
$(foreach a,$(LINUX_ARCHES),$(eval $(call LINUX_ARCH_RULES,$(a),$(LINUX_DEBARCH_$(a)))))

linux-clean:
	rm -rf $(foreach a,$(LINUX_ARCHES),$(OUT)/$(a)/linux)
