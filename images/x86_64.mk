# x86 bare-metal guests (sources in guestload/x86/), booted with
# `qemu-system-x86_64 -kernel <elf>` through QEMU's multiboot v1 loader:
#   wave.elf     32-bit protected-mode wave workload (runs under kvm_pvm too)
#   probe64.elf  prints "QMPCTL probe64 ok" once it executes 64-bit code
# Both are 32-bit ELF files (QEMU's multiboot loader refuses ELF64).

X86_MK   := $(lastword $(MAKEFILE_LIST))
X86_SRC  := $(GUESTLOAD)/x86
X86_OUT  := $(OUT)/x86_64

X86_CC   ?= gcc
X86_LD   ?= ld
X86_CFLAGS := -m32 -march=i686 -O2 -std=gnu11 -Wall -Wextra \
	-ffreestanding -nostdlib -fno-pic -fno-pie -fno-builtin \
	-fno-stack-protector -fno-asynchronous-unwind-tables \
	-fno-delete-null-pointer-checks -MMD -MP
X86_LDFLAGS := -m elf_i386 -nostdlib -static --build-id=none \
	-z max-page-size=0x1000 -z noexecstack --no-warn-rwx-segments \
	-T $(X86_SRC)/guest.ld

X86_WAVE_OBJS    := $(X86_OUT)/boot.o $(X86_OUT)/wave.o
X86_PROBE64_OBJS := $(X86_OUT)/probe64.o

all baremetal: $(X86_OUT)/wave.elf $(X86_OUT)/probe64.elf

$(X86_OUT):
	mkdir -p $@

# Objects also depend on this fragment so that flag changes rebuild them;
# header dependencies come from the -MMD .d files included below.
$(X86_OUT)/wave.o: $(X86_OUT)/%.o: $(X86_SRC)/%.c $(X86_MK) | $(X86_OUT)
	$(X86_CC) $(X86_CFLAGS) -c -o $@ $<

$(X86_OUT)/boot.o $(X86_OUT)/probe64.o: $(X86_OUT)/%.o: $(X86_SRC)/%.S $(X86_MK) | $(X86_OUT)
	$(X86_CC) $(X86_CFLAGS) -c -o $@ $<

$(X86_OUT)/wave.elf: $(X86_WAVE_OBJS) $(X86_SRC)/guest.ld $(X86_MK)
	$(X86_LD) $(X86_LDFLAGS) -o $@ $(X86_WAVE_OBJS)

$(X86_OUT)/probe64.elf: $(X86_PROBE64_OBJS) $(X86_SRC)/guest.ld $(X86_MK)
	$(X86_LD) $(X86_LDFLAGS) -o $@ $(X86_PROBE64_OBJS)

-include $(wildcard $(X86_OUT)/*.d)
