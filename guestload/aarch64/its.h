/* GICv3 ITS: table setup and the command queue. */
#ifndef GUEST_ITS_H
#define GUEST_ITS_H
#include "lib.h"
#include "gic.h"

#define ITS_BASE 0x08080000UL

struct its_info {
	unsigned itt_entry_size;   /* bytes per ITT entry (GITS_TYPER) */
	unsigned devbits, cidbits;
	bool pta;                  /* RDbase is a physical address, not a PE number */
	u64 dev_base, dev_size;    /* as programmed into GITS_BASER<n> */
	u64 coll_base, coll_size;
	u64 cmdq_base, cmdq_size;
};

/* Region sizes reserved in the image for the ITS tables (see main.c). */
#define ITS_TABLE_BYTES 0x10000UL
#define ITS_CMDQ_BYTES  0x10000UL

bool its_init(struct its_info *info, u64 dev_table, u64 coll_table, u64 cmdq,
	      const char **why);
u64 its_rdbase(const struct its_info *info, const struct redist *rd);

/* Commands are queued and only become visible to the ITS on its_kick();
 * its_wait() then waits (bounded) until the ITS consumed them all. */
void its_mapd(u32 dev, u64 itt, unsigned event_bits);
void its_mapc(u16 icid, u64 rdbase);
void its_mapti(u32 dev, u32 event, u32 intid, u16 icid);
void its_int(u32 dev, u32 event);
void its_inv(u32 dev, u32 event);
void its_invall(u16 icid);
void its_sync(u64 rdbase);
void its_kick(void);
bool its_wait(u64 timeout_us);
/* Free command slots left in the ring. */
unsigned its_free_slots(void);
#endif
