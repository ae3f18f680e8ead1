/* Minimal flattened-device-tree reader (only what the guest needs). */
#ifndef GUEST_FDT_H
#define GUEST_FDT_H
#include "lib.h"

/* Size of the /memory node range that starts at `base`, 0 if not found. */
u64 fdt_ram_size(u64 fdt, u64 base);
/* /chosen/bootargs (QEMU's -append), or NULL. */
const char *fdt_bootargs(u64 fdt);
#endif
