/*
 * ITS driver.  Only CPU0 ever touches the command queue (setup, the LPI
 * issuer and the post-migration checks all run there), so the queue has no
 * lock.  All tables are flat (indirect=0): a few devices and one collection
 * per CPU fit easily in one 64 KiB table each.
 */
#include "its.h"

#define GITS_CTLR     0x0000
#define GITS_TYPER    0x0008
#define GITS_CBASER   0x0080
#define GITS_CWRITER  0x0088
#define GITS_CREADR   0x0090
#define GITS_BASER(n) (0x0100 + 8 * (n))

#define GITS_CTLR_ENABLED   (1u << 0)
#define GITS_CTLR_QUIESCENT (1u << 31)
#define GITS_CREADR_STALLED (1UL << 0)

#define BASER_VALID      (1UL << 63)
#define BASER_INNER_WAWB (7UL << 59)
#define BASER_TYPE(v)    (((v) >> 56) & 7)
#define BASER_ESIZE(v)   ((((v) >> 48) & 0x1f) + 1)
#define BASER_SH_INNER   (1UL << 10)
#define BASER_PSZ_SHIFT  8
#define BASER_TYPE_DEVICE     1
#define BASER_TYPE_COLLECTION 4

#define CMD_INT    0x03
#define CMD_SYNC   0x05
#define CMD_MAPD   0x08
#define CMD_MAPC   0x09
#define CMD_MAPTI  0x0a
#define CMD_INV    0x0c
#define CMD_INVALL 0x0d

#define CMD_BYTES 32
#define CMDQ_SLOTS (ITS_CMDQ_BYTES / CMD_BYTES)

static u64 *cmdq;
static unsigned wr;   /* next slot to fill */

/* Program one GITS_BASER: try 64 KiB pages first (every ITS must accept
 * at least one of 4/16/64 KiB), keep what reads back. */
static bool setup_baser(int n, u64 table, u64 bytes, u64 *size_out)
{
	static const u64 psz_code[] = { 2, 1, 0 };
	static const u64 psz_bytes[] = { 0x10000, 0x4000, 0x1000 };
	u64 orig = readq(ITS_BASE + GITS_BASER(n));

	for (int i = 0; i < 3; i++) {
		u64 pages = bytes / psz_bytes[i];
		u64 v = BASER_VALID | BASER_INNER_WAWB | (orig & (7UL << 56)) |
			(orig & (0x1fUL << 48)) | table | BASER_SH_INNER |
			(psz_code[i] << BASER_PSZ_SHIFT) | (pages - 1);
		writeq(ITS_BASE + GITS_BASER(n), v);
		u64 rb = readq(ITS_BASE + GITS_BASER(n));
		if (((rb >> BASER_PSZ_SHIFT) & 3) == psz_code[i] && (rb & BASER_VALID)) {
			*size_out = pages * psz_bytes[i];
			return true;
		}
	}
	return false;
}

bool its_init(struct its_info *info, u64 dev_table, u64 coll_table, u64 cmdq_pa,
	      const char **why)
{
	u64 typer = readq(ITS_BASE + GITS_TYPER);
	bool have_dev = false, have_coll = false;

	if (!(typer & 1)) {   /* GITS_TYPER.Physical */
		*why = "its-without-physical-lpis";
		return false;
	}
	info->itt_entry_size = ((typer >> 4) & 0xf) + 1;
	info->devbits = ((typer >> 13) & 0x1f) + 1;
	info->pta = (typer >> 19) & 1;
	info->cidbits = (typer & (1UL << 36)) ? ((typer >> 32) & 0xf) + 1 : 16;

	/* Must be disabled and quiescent before the tables may change. */
	writel(ITS_BASE + GITS_CTLR, 0);
	u64 end = now_ticks() + us_to_ticks(100000);
	while (!(readl(ITS_BASE + GITS_CTLR) & GITS_CTLR_QUIESCENT) && now_ticks() < end)
		cpu_relax();

	for (int n = 0; n < 8; n++) {
		u64 v = readq(ITS_BASE + GITS_BASER(n));
		switch (BASER_TYPE(v)) {
		case BASER_TYPE_DEVICE:
			if (!setup_baser(n, dev_table, ITS_TABLE_BYTES, &info->dev_size)) {
				*why = "its-device-baser";
				return false;
			}
			info->dev_base = dev_table;
			have_dev = true;
			break;
		case BASER_TYPE_COLLECTION:
			if (!setup_baser(n, coll_table, ITS_TABLE_BYTES, &info->coll_size)) {
				*why = "its-collection-baser";
				return false;
			}
			info->coll_base = coll_table;
			have_coll = true;
			break;
		default:
			break;   /* unimplemented or vPE tables: leave invalid */
		}
	}
	/* Collections may live in the ITS itself (GITS_TYPER.HCC); QEMU has none. */
	if (!have_dev || (!have_coll && !((typer >> 24) & 0xff))) {
		*why = "its-missing-table";
		return false;
	}

	cmdq = (u64 *)cmdq_pa;
	wr = 0;
	writeq(ITS_BASE + GITS_CBASER, BASER_VALID | BASER_INNER_WAWB | BASER_SH_INNER |
	       cmdq_pa | (ITS_CMDQ_BYTES / 0x1000 - 1));
	writeq(ITS_BASE + GITS_CWRITER, 0);
	info->cmdq_base = cmdq_pa;
	info->cmdq_size = ITS_CMDQ_BYTES;
	dsb_sy();
	writel(ITS_BASE + GITS_CTLR, GITS_CTLR_ENABLED);
	return true;
}

u64 its_rdbase(const struct its_info *info, const struct redist *rd)
{
	/* MAPC/SYNC RDbase field holds bits [51:16] of the address if PTA=1. */
	return info->pta ? rd->base >> 16 : rd->procnum;
}

unsigned its_free_slots(void)
{
	unsigned rd = (unsigned)(readq(ITS_BASE + GITS_CREADR) / CMD_BYTES) % CMDQ_SLOTS;
	return (rd + CMDQ_SLOTS - wr - 1) % CMDQ_SLOTS;
}

static void queue(u64 d0, u64 d1, u64 d2, u64 d3)
{
	/* One slot stays empty: CWRITER == CREADR means "queue empty". */
	u64 end = now_ticks() + us_to_ticks(1000000);
	while (its_free_slots() == 0) {
		its_kick();
		if (now_ticks() > end) {
			record("error reason=its-cmdq-stuck creadr=%x cwriter=%x",
			       readq(ITS_BASE + GITS_CREADR), readq(ITS_BASE + GITS_CWRITER));
			halt();
		}
		cpu_relax();
	}
	u64 *c = cmdq + wr * 4;
	c[0] = d0;
	c[1] = d1;
	c[2] = d2;
	c[3] = d3;
	wr = (wr + 1) % CMDQ_SLOTS;
}

void its_kick(void)
{
	/* Command bytes must reach memory before the ITS sees the new CWRITER. */
	dsb_sy();
	writeq(ITS_BASE + GITS_CWRITER, (u64)wr * CMD_BYTES);
}

bool its_wait(u64 timeout_us)
{
	u64 end = now_ticks() + us_to_ticks(timeout_us);
	for (;;) {
		u64 rd = readq(ITS_BASE + GITS_CREADR);
		if ((rd & ~0x1fUL) == (u64)wr * CMD_BYTES)
			return true;
		if ((rd & GITS_CREADR_STALLED) || now_ticks() > end)
			return false;
		cpu_relax();
	}
}

void its_mapd(u32 dev, u64 itt, unsigned event_bits)
{
	queue(CMD_MAPD | ((u64)dev << 32), event_bits - 1, (1UL << 63) | itt, 0);
}

void its_mapc(u16 icid, u64 rdbase)
{
	queue(CMD_MAPC, 0, (1UL << 63) | (rdbase << 16) | icid, 0);
}

void its_mapti(u32 dev, u32 event, u32 intid, u16 icid)
{
	queue(CMD_MAPTI | ((u64)dev << 32), event | ((u64)intid << 32), icid, 0);
}

void its_int(u32 dev, u32 event)
{
	queue(CMD_INT | ((u64)dev << 32), event, 0, 0);
}

void its_inv(u32 dev, u32 event)
{
	queue(CMD_INV | ((u64)dev << 32), event, 0, 0);
}

void its_invall(u16 icid)
{
	queue(CMD_INVALL, 0, icid, 0);
}

void its_sync(u64 rdbase)
{
	queue(CMD_SYNC, 0, rdbase << 16, 0);
}
