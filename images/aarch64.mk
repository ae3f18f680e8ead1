# arm64 bare-metal guest exercising the GICv3 ITS (guestload/aarch64/),
# booted with -kernel under qemu-system-aarch64 -M virt,gic-version=3,its=on.
# Included by images/Makefile, which defines OUT, GUESTLOAD and `all`.

AARCH64_MK := $(lastword $(MAKEFILE_LIST))
AARCH64_CROSS ?= aarch64-linux-gnu-
AARCH64_SRC := $(GUESTLOAD)/aarch64
AARCH64_OUT := $(OUT)/aarch64

# -mno-outline-atomics: gcc would otherwise call libgcc helpers for atomics.
# -mstrict-align: early code runs with the MMU off, where RAM is Device memory.
AARCH64_CFLAGS := -O2 -g -std=gnu11 -Wall -Wextra -Werror \
	-ffreestanding -nostdlib -fno-builtin -fno-stack-protector -fno-pic \
	-mgeneral-regs-only -mno-outline-atomics -mstrict-align \
	-march=armv8-a -MMD -MP -ffile-prefix-map=$(GUESTLOAD)=guestload
AARCH64_LDFLAGS := -nostdlib -static -no-pie -Wl,--build-id=none -Wl,--no-warn-rwx-segments \
	-T $(AARCH64_SRC)/guest.ld

AARCH64_C := uart.c lib.c fw_cfg.c fdt.c params.c mmu.c gic.c its.c lpi.c wave.c main.c
AARCH64_OBJS := $(addprefix $(AARCH64_OUT)/its-obj/,$(AARCH64_C:.c=.o) entry.o)

all baremetal: $(AARCH64_OUT)/its.elf

$(AARCH64_OUT)/its.elf: $(AARCH64_OBJS) $(AARCH64_SRC)/guest.ld
	$(AARCH64_CROSS)gcc $(AARCH64_CFLAGS) $(AARCH64_LDFLAGS) -o $@ $(AARCH64_OBJS) -lgcc

# Objects also depend on this file, so a flag change rebuilds them.
$(AARCH64_OUT)/its-obj/%.o: $(AARCH64_SRC)/%.c $(AARCH64_MK) | $(AARCH64_OUT)/its-obj
	$(AARCH64_CROSS)gcc $(AARCH64_CFLAGS) -c -o $@ $<

$(AARCH64_OUT)/its-obj/%.o: $(AARCH64_SRC)/%.S $(AARCH64_MK) | $(AARCH64_OUT)/its-obj
	$(AARCH64_CROSS)gcc $(AARCH64_CFLAGS) -c -o $@ $<

$(AARCH64_OUT)/its-obj:
	mkdir -p $@

-include $(AARCH64_OBJS:.o=.d)
