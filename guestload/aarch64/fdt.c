/*
 * virt's fw_cfg carries no RAM-size item on arm (that is an x86 item), so
 * the RAM size comes from the DTB QEMU places in RAM: walk the structure
 * block and read "reg" of the top-level memory@... node(s).  All FDT
 * fields are big-endian.
 */
#include "fdt.h"

#define FDT_MAGIC      0xd00dfeed
#define FDT_BEGIN_NODE 1
#define FDT_END_NODE   2
#define FDT_PROP       3
#define FDT_NOP        4
#define FDT_END        9

static u32 be32(u64 a)
{
	const u8 *b = (const u8 *)a;
	return ((u32)b[0] << 24) | ((u32)b[1] << 16) | ((u32)b[2] << 8) | b[3];
}

static u64 cells(u64 a, u32 n)
{
	u64 v = 0;
	for (u32 i = 0; i < n; i++)
		v = (v << 32) | be32(a + 4 * i);
	return v;
}

u64 fdt_ram_size(u64 fdt, u64 base)
{
	if (!fdt || be32(fdt) != FDT_MAGIC)
		return 0;
	u64 total = be32(fdt + 4);
	u64 p = fdt + be32(fdt + 8), strings = fdt + be32(fdt + 12), end = fdt + total;
	u32 addr_cells = 2, size_cells = 1;   /* defaults per the DT spec */
	int depth = 0;
	bool in_memory = false;

	while (p + 4 <= end) {
		u32 tok = be32(p);
		p += 4;
		switch (tok) {
		case FDT_BEGIN_NODE: {
			const char *name = (const char *)p;
			depth++;
			in_memory = depth == 2 && strncmp(name, "memory", 6) == 0 &&
				    (name[6] == '@' || name[6] == '\0');
			p += (strlen(name) + 1 + 3) & ~3UL;
			break;
		}
		case FDT_END_NODE:
			depth--;
			in_memory = false;
			break;
		case FDT_PROP: {
			u32 len = be32(p), nameoff = be32(p + 4);
			const char *pname = (const char *)(strings + nameoff);
			u64 val = p + 8;
			if (depth == 1 && strncmp(pname, "#address-cells", 15) == 0)
				addr_cells = be32(val);
			else if (depth == 1 && strncmp(pname, "#size-cells", 12) == 0)
				size_cells = be32(val);
			else if (in_memory && strncmp(pname, "reg", 4) == 0) {
				u32 step = 4 * (addr_cells + size_cells);
				for (u32 off = 0; off + step <= len; off += step)
					if (cells(val + off, addr_cells) == base)
						return cells(val + off + 4 * addr_cells, size_cells);
			}
			p = val + ((len + 3) & ~3UL);
			break;
		}
		case FDT_NOP:
			break;
		default:   /* FDT_END or garbage */
			return 0;
		}
	}
	return 0;
}

const char *fdt_bootargs(u64 fdt)
{
	if (!fdt || be32(fdt) != FDT_MAGIC)
		return NULL;
	u64 p = fdt + be32(fdt + 8), strings = fdt + be32(fdt + 12), end = fdt + be32(fdt + 4);
	int depth = 0;
	bool in_chosen = false;

	while (p + 4 <= end) {
		u32 tok = be32(p);
		p += 4;
		switch (tok) {
		case FDT_BEGIN_NODE: {
			const char *name = (const char *)p;
			depth++;
			in_chosen = depth == 2 && strncmp(name, "chosen", 7) == 0;
			p += (strlen(name) + 1 + 3) & ~3UL;
			break;
		}
		case FDT_END_NODE:
			depth--;
			in_chosen = false;
			break;
		case FDT_PROP: {
			u32 len = be32(p), nameoff = be32(p + 4);
			const char *pname = (const char *)(strings + nameoff);
			if (in_chosen && strncmp(pname, "bootargs", 9) == 0 && len)
				return (const char *)(p + 8);
			p += 8 + ((len + 3) & ~3UL);
			break;
		}
		case FDT_NOP:
			break;
		default:
			return NULL;
		}
	}
	return NULL;
}
