/*
 * LPI bookkeeping.  LPIs are edge-like: a second INT while the first is
 * still pending merges into one delivery.  To make "delivered exactly once
 * per issue" checkable, the issuer only re-triggers an LPI once the previous
 * one was acknowledged (delivered == issued).  Every count lives in guest
 * RAM, so it migrates with the VM; a lost LPI leaves delivered < issued, a
 * duplicated one delivered > issued.
 *
 * Writers: `issued` only by CPU0 (the single ITS command-queue user);
 * `delivered`/`wrong_pe` by whichever CPU takes the interrupt (atomics).
 */
#include "lpi.h"

enum lpi_kind { KIND_TRAFFIC, KIND_PENDING, KIND_UNMAPPED };

struct lpi {
	u32 dev, event;
	u16 icid;
	u8 kind;
	int expected_cpu;    /* PE the collection targets, -1 while unmapped */
	u64 issued;
	u64 delivered;
	u64 wrong_pe;
};

#define LPI_PROP_ENABLED  0xa3   /* priority 0xa0, bit1 RES1, enable */
#define LPI_PROP_DISABLED 0xa2

static struct lpi lpis[N_LPI];
static const struct lpi_env *env;
static u64 unknown_intids;
static u64 per_cpu_delivered[MAX_CPUS];
static unsigned rr;   /* issuer round-robin cursor */

static u64 ld(const u64 *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static void inc(u64 *p) { __atomic_fetch_add(p, 1, __ATOMIC_RELAXED); }

static u64 rdbase(int cpu) { return its_rdbase(env->its, env->rd[cpu]); }

static void sync_all(void)
{
	for (int c = 0; c < env->ncpus; c++)
		its_sync(rdbase(c));
	its_kick();
}

bool lpi_setup(const struct lpi_env *e, const char **why)
{
	int n = 0;
	env = e;

	u16 unmapped_icid = (u16)e->ncpus;   /* one past the last MAPC'd collection */
	if (unmapped_icid >= (1u << e->its->cidbits) ||
	    unmapped_icid >= e->its->coll_size / 8) {
		*why = "no-spare-collection";
		return false;
	}

	for (u32 d = 0; d < N_DEV; d++) {
		u32 nev = d == DEV_UNMAPPED ? N_UNMAPPED : EVENTS_PER_DEV;
		for (u32 ev = 0; ev < nev; ev++, n++) {
			struct lpi *l = &lpis[n];
			l->dev = d;
			l->event = ev;
			if (d == DEV_UNMAPPED) {
				l->kind = KIND_UNMAPPED;
				l->icid = unmapped_icid;
				l->expected_cpu = -1;
			} else {
				l->kind = d == DEV_PENDING ? KIND_PENDING : KIND_TRAFFIC;
				l->icid = (u16)(n % e->ncpus);
				l->expected_cpu = l->icid;   /* collection c -> CPU c */
			}
			/* Pending-set LPIs stay disabled: an INT only sets their
			 * pending bit, so they remain pending across migration. */
			e->prop[n] = l->kind == KIND_PENDING ? LPI_PROP_DISABLED : LPI_PROP_ENABLED;
		}
	}
	dsb_sy();

	for (int c = 0; c < e->ncpus; c++)
		its_mapc((u16)c, rdbase(c));
	for (u32 d = 0; d < N_DEV; d++)
		its_mapd(d, e->itt[d], EVENT_BITS);
	for (int i = 0; i < N_LPI; i++)
		its_mapti(lpis[i].dev, lpis[i].event, LPI_BASE_INTID + i, lpis[i].icid);
	/* Make the redistributors (re)read the property table. */
	for (int c = 0; c < e->ncpus; c++)
		its_invall((u16)c);
	sync_all();
	if (!its_wait(1000000)) {
		*why = "its-cmdq-timeout";
		return false;
	}

	/* Park the pending set: pending but disabled, hence never delivered. */
	for (int i = 0; i < N_LPI; i++) {
		if (lpis[i].kind == KIND_PENDING) {
			lpis[i].issued++;
			its_int(lpis[i].dev, lpis[i].event);
		}
	}
	sync_all();
	if (!its_wait(1000000)) {
		*why = "its-cmdq-timeout";
		return false;
	}
	return true;
}

void lpi_issue_round(void)
{
	unsigned queued = 0, room = its_free_slots();

	for (unsigned k = 0; k < N_TRAFFIC && queued < room; k++) {
		struct lpi *l = &lpis[rr];
		rr = (rr + 1) % N_TRAFFIC;
		if (ld(&l->delivered) != l->issued)
			continue;   /* still in flight: re-issuing would merge */
		/* Count before the ITS can see the command, so delivered never
		 * transiently exceeds issued. */
		__atomic_store_n(&l->issued, l->issued + 1, __ATOMIC_RELEASE);
		its_int(l->dev, l->event);
		queued++;
	}
	if (queued) {
		its_kick();
		its_wait(10000);
	}
}

bool lpi_wait_traffic_flowing(u64 timeout_us)
{
	u64 end = now_ticks() + us_to_ticks(timeout_us);
	for (;;) {
		bool all = true;
		for (int c = 0; c < env->ncpus; c++)
			if (!ld(&per_cpu_delivered[c]))
				all = false;
		if (all)
			return true;
		if (now_ticks() > end)
			return false;
		lpi_issue_round();
	}
}

u64 lpi_pending_delivered(void)
{
	u64 n = 0;
	for (int i = 0; i < N_LPI; i++)
		if (lpis[i].kind == KIND_PENDING)
			n += ld(&lpis[i].delivered);
	return n;
}

struct tally {
	u64 issued, delivered, wrong_pe, mismatched;
};

static struct tally tally(enum lpi_kind kind)
{
	struct tally t = { 0, 0, 0, 0 };
	for (int i = 0; i < N_LPI; i++) {
		const struct lpi *l = &lpis[i];
		if (l->kind != kind)
			continue;
		u64 d = ld(&l->delivered);
		t.issued += l->issued;
		t.delivered += d;
		t.wrong_pe += ld(&l->wrong_pe);
		if (d != l->issued)
			t.mismatched++;
	}
	return t;
}

void lpi_print_status(void)
{
	struct tally t = tally(KIND_TRAFFIC);
	u64 wrong = t.wrong_pe + tally(KIND_PENDING).wrong_pe + tally(KIND_UNMAPPED).wrong_pe;
	record("lpi-status issued=%d delivered=%d wrong-pe=%d", t.issued, t.delivered, wrong);
}

/* Waits (bounded) until every LPI of `kind` got as many deliveries as issues. */
static void settle(enum lpi_kind kind, u64 timeout_us)
{
	u64 end = now_ticks() + us_to_ticks(timeout_us);
	while (tally(kind).mismatched && now_ticks() < end)
		udelay(1000);
	/* Short grace period so duplicates (delivered > issued) show up too. */
	udelay(20000);
}

bool lpi_kut_lines;
u64 lpi_checks_passed, lpi_checks_failed;

static bool report(const char *name, enum lpi_kind kind, bool with_wrong_pe)
{
	struct tally t = tally(kind);
	bool pass = t.issued > 0 && t.mismatched == 0 && t.wrong_pe == 0;
	if (pass)
		lpi_checks_passed++;
	else
		lpi_checks_failed++;
	if (lpi_kut_lines)   /* kvm-unit-tests' report() format */
		say("%s: its-migration: %s: expected=%d got=%d wrong-pe=%d",
		    pass ? "PASS" : "FAIL", name, t.issued, t.delivered, t.wrong_pe);
	else if (with_wrong_pe)
		record("its-check name=%s result=%s expected=%d got=%d wrong-pe=%d", name,
		       pass ? "PASS" : "FAIL", t.issued, t.delivered, t.wrong_pe);
	else
		record("its-check name=%s result=%s expected=%d got=%d", name,
		       pass ? "PASS" : "FAIL", t.issued, t.delivered);
	return pass;
}

void lpi_verify(void)
{
	bool ok = true;

	/* 1. mapped: the issuer is stopped (we are it); SYNC makes every INT
	 *    issued so far visible at the redistributors. */
	sync_all();
	ok &= its_wait(1000000);
	settle(KIND_TRAFFIC, 2000000);
	ok &= report("mapped", KIND_TRAFFIC, true);

	/* 2. pending: enable them in the property table, INV so the
	 *    redistributors notice; the pending bits set before migration must
	 *    now deliver each LPI exactly once. */
	for (int i = 0; i < N_LPI; i++)
		if (lpis[i].kind == KIND_PENDING)
			env->prop[i] = LPI_PROP_ENABLED;
	dsb_sy();
	for (int i = 0; i < N_LPI; i++)
		if (lpis[i].kind == KIND_PENDING)
			its_inv(lpis[i].dev, lpis[i].event);
	sync_all();
	ok &= its_wait(1000000);
	settle(KIND_PENDING, 2000000);
	ok &= report("pending", KIND_PENDING, false);

	/* 3. unmapped collection: map it now (to the last CPU), then INT. */
	int target = env->ncpus - 1;
	for (int i = 0; i < N_LPI; i++)
		if (lpis[i].kind == KIND_UNMAPPED)
			lpis[i].expected_cpu = target;
	dsb_sy();
	its_mapc((u16)env->ncpus, rdbase(target));
	its_sync(rdbase(target));
	for (int i = 0; i < N_LPI; i++) {
		if (lpis[i].kind == KIND_UNMAPPED) {
			lpis[i].issued++;
			its_int(lpis[i].dev, lpis[i].event);
		}
	}
	sync_all();
	ok &= its_wait(1000000);
	settle(KIND_UNMAPPED, 2000000);
	ok &= report("unmapped-collection", KIND_UNMAPPED, false);

	ok &= unknown_intids == 0;
	record("its-verify result=%s", ok ? "PASS" : "FAIL");
}

void irq_handler(void)
{
	unsigned cpu = cpu_id();

	for (;;) {
		u32 intid = gic_ack();
		if (intid >= 1020 && intid <= INTID_SPURIOUS)
			break;
		u32 idx = intid - LPI_BASE_INTID;
		if (intid >= LPI_BASE_INTID && idx < N_LPI) {
			struct lpi *l = &lpis[idx];
			if (__atomic_load_n(&l->expected_cpu, __ATOMIC_ACQUIRE) != (int)cpu)
				inc(&l->wrong_pe);
			inc(&l->delivered);
			if (cpu < MAX_CPUS)
				inc(&per_cpu_delivered[cpu]);
		} else {
			inc(&unknown_intids);
		}
		gic_eoi(intid);
	}
}
