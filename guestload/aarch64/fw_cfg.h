/* QEMU fw_cfg (MMIO flavour used by the arm "virt" board). */
#ifndef GUEST_FW_CFG_H
#define GUEST_FW_CFG_H
#include "lib.h"

bool fw_cfg_present(void);
/* RAM size in bytes as QEMU reports it (FW_CFG_RAM_SIZE), 0 if unknown. */
u64 fw_cfg_ram_size(void);
/* Copies up to len-1 bytes of file `name` into buf, NUL-terminated.
 * Returns the file size, or -1 if there is no such file. */
long fw_cfg_read_file(const char *name, char *buf, size_t len);
#endif
