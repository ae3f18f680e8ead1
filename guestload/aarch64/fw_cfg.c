/*
 * fw_cfg access, the way the controller hands us parameters without a
 * kernel command line: a named "file" in the fw_cfg directory.
 *
 * virt maps fw_cfg at 0x09020000: data register at +0 (byte reads are
 * fine), selector at +8 which is big-endian on MMIO, whatever the CPU's
 * endianness.  Directory entries (selector 0x19) are big-endian too; the
 * RAM-size item (0x03) is little-endian (legacy items are guest-endian LE).
 */
#include "fw_cfg.h"

#define FW_CFG_BASE 0x09020000UL
#define FW_CFG_DATA (FW_CFG_BASE + 0)
#define FW_CFG_SEL  (FW_CFG_BASE + 8)

#define FW_CFG_SIGNATURE 0x00
#define FW_CFG_RAM_SIZE  0x03
#define FW_CFG_FILE_DIR  0x19

static void select_item(u16 key)
{
	writew(FW_CFG_SEL, __builtin_bswap16(key));
}

static void read_bytes(void *buf, size_t len)
{
	u8 *p = buf;
	while (len--)
		*p++ = readb(FW_CFG_DATA);
}

bool fw_cfg_present(void)
{
	char sig[4];
	select_item(FW_CFG_SIGNATURE);
	read_bytes(sig, 4);
	return sig[0] == 'Q' && sig[1] == 'E' && sig[2] == 'M' && sig[3] == 'U';
}

u64 fw_cfg_ram_size(void)
{
	u8 b[8];
	u64 v = 0;
	select_item(FW_CFG_RAM_SIZE);
	read_bytes(b, 8);
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | b[i];
	return v;
}

static u32 be32(const u8 *b)
{
	return ((u32)b[0] << 24) | ((u32)b[1] << 16) | ((u32)b[2] << 8) | b[3];
}

long fw_cfg_read_file(const char *name, char *buf, size_t len)
{
	u8 hdr[4], ent[64];
	u32 count, size = 0;
	u16 sel = 0;
	bool found = false;

	select_item(FW_CFG_FILE_DIR);
	read_bytes(hdr, 4);
	count = be32(hdr);
	/* The directory is read sequentially; keep reading to the wanted entry. */
	for (u32 i = 0; i < count; i++) {
		read_bytes(ent, sizeof(ent));
		if (strncmp((const char *)ent + 8, name, 56) == 0) {
			size = be32(ent);
			sel = (u16)((ent[4] << 8) | ent[5]);
			found = true;
			break;
		}
	}
	if (!found)
		return -1;

	select_item(sel);
	size_t n = size < len - 1 ? size : len - 1;
	read_bytes(buf, n);
	buf[n] = '\0';
	return size;
}
