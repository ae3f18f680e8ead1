/*
 * qmpctl arm64 ITS guest: CPU0 sets everything up and then is the LPI
 * issuer and the serial command handler; CPUs 1..writers (writers=1 by
 * default: CPU1) run the memory wave, each over its own slice; any further
 * CPUs only take LPIs.  See README.md for the serial protocol.
 */
#include "lib.h"
#include "uart.h"
#include "mmu.h"
#include "fw_cfg.h"
#include "fdt.h"
#include "params.h"
#include "gic.h"
#include "its.h"
#include "lpi.h"
#include "wave.h"

#define FIRST_WAVE_CPU 1   /* CPUs 1..writers run the wave */
#define PARAMS_FILE "opt/qmpctl/params"

extern char __image_start[], __image_end[];
extern void secondary_entry(void);

u8 cpu_stacks[MAX_CPUS][STACK_SIZE] __attribute__((aligned(16)));

/* Everything the GIC and the ITS read or write in guest memory. */
struct gic_tables {
	u8 prop[0x10000];                       /* PROPBASER needs 4 KiB alignment */
	u8 pend[MAX_CPUS][0x10000];             /* PENDBASER needs 64 KiB */
	u8 its_dev[ITS_TABLE_BYTES];            /* BASER: page (64 KiB) aligned */
	u8 its_coll[ITS_TABLE_BYTES];
	u8 its_cmdq[ITS_CMDQ_BYTES];
	u8 itt[N_DEV][0x1000];                  /* ITTs need 256 B alignment */
};
static struct gic_tables tables __attribute__((section(".gic_tables"), aligned(0x10000)));

static struct wave_params wave;
static struct redist rds[MAX_CPUS];
static struct its_info its;
static struct lpi_env env;
static volatile int cpu_online[MAX_CPUS];
static volatile int wave_go;

static void fatal(const char *reason)
{
	record("error reason=%s", reason);
	halt();
}

void exception_fatal(u64 kind, u64 esr, u64 elr, u64 far)
{
	record("error reason=exception cpu=%d vector=%d esr=%x elr=%x far=%x",
	       (u64)cpu_id(), kind, esr, elr, far);
	halt();
}

static long psci_cpu_on(u64 mpidr, u64 entry, u64 ctx)
{
	/* PSCI 0.2+ CPU_ON (SMC64 id).  QEMU's virt uses the HVC conduit when
	 * the guest starts at EL1 (no EL2/EL3 emulated), as under KVM. */
	register u64 x0 asm("x0") = 0xc4000003;
	register u64 x1 asm("x1") = mpidr;
	register u64 x2 asm("x2") = entry;
	register u64 x3 asm("x3") = ctx;
	asm volatile("hvc #0"
		     : "+r"(x0), "+r"(x1), "+r"(x2), "+r"(x3)
		     :
		     : "x4", "x5", "x6", "x7", "x8", "x9", "x10", "x11", "x12", "x13",
		       "x14", "x15", "x16", "x17", "memory");
	return (long)x0;
}

/* QEMU passes the DTB in x0 to Linux-style images and puts it at the start
 * of RAM otherwise. */
static u64 dtb_or_ram(u64 dtb)
{
	return dtb >= RAM_BASE && dtb < 0x100000000UL && !(dtb & 7) ? dtb : RAM_BASE;
}

static long psci_system_off(void)
{
	register u64 x0 asm("x0") = 0x84000008;   /* PSCI SYSTEM_OFF */
	asm volatile("hvc #0" : "+r"(x0) : : "x1", "x2", "x3", "memory");
	return (long)x0;
}

/* kvm-unit-tests' migration handshake (lib/migrate.c, scripts/arch-run.bash):
 * ask to be migrated, wait for a key with LPIs and the wave running, check
 * the LPIs after each migration, then SUMMARY, EXIT: STATUS and power off. */
static void kut_session(void)
{
	lpi_kut_lines = true;
	if (wave.skip) {   /* lib/migrate.c migrate_skip(): no migration, a SKIP */
		say("Skipped VM migration (quiet)");
		while (uart_getc() < 0)
			lpi_issue_round();
		say("SKIP: its-migration: migration skipped by request (skip=1)");
		say("SUMMARY: 1 tests, 0 unexpected failures, 1 skipped");
		say("EXIT: STATUS=%d", (77 << 1) | 1);   /* report_summary()'s 77: all skipped */
		psci_system_off();
		halt();
	}
	for (u64 m = 1; m <= wave.kut; m++) {
		say("Now migrate the VM, then press a key to continue...");
		while (uart_getc() < 0)
			lpi_issue_round();
		say("INFO: its-migration: Migration complete (%d of %d)", m, wave.kut);
		lpi_verify();
	}
	if (wave.fail) {
		say("FAIL: its-migration: requested failure (fail=1)");
		lpi_checks_failed++;
	}
	u64 failed = lpi_checks_failed;
	say("SUMMARY: %d tests, %d unexpected failures", lpi_checks_passed + failed, failed);
	say("EXIT: STATUS=%d", ((u64)(failed ? 1 : 0) << 1) | 1);
	psci_system_off();
	halt();
}

static void load_params(u64 dtb)
{
	static char buf[256];
	const char *why = "", *what = "";
	u64 ram_size = 0;
	long n = -1;

	if (fw_cfg_present()) {
		ram_size = fw_cfg_ram_size();
		n = fw_cfg_read_file(PARAMS_FILE, buf, sizeof(buf));
	}
	if (n >= (long)sizeof(buf))
		fatal("bad-params detail=too-long");
	/* No fw_cfg file: booted as a foreign kernel, parameters on -append. */
	const char *args = n >= 0 ? buf : fdt_bootargs(dtb_or_ram(dtb));
	if (!params_parse(args ? args : "", &wave, &why, &what)) {
		record("error reason=bad-params detail=%s key=%s", why, what);
		halt();
	}
	/* fw_cfg has no RAM-size item on arm; the DTB does. */
	if (!ram_size)
		ram_size = fdt_ram_size(dtb_or_ram(dtb), RAM_BASE);
	if (!ram_size)
		ram_size = fdt_ram_size(RAM_BASE, RAM_BASE);
	if (!ram_size)
		fatal("no-ram-size");
	mmu_map_ram(RAM_BASE + ram_size);

	/* Reserved: from the start of RAM (DTB) to the end of the image, which
	 * includes stacks and the GIC/ITS tables. */
	struct mem_range ram = { RAM_BASE, RAM_BASE + ram_size };
	struct mem_range reserved = { RAM_BASE, (u64)__image_end };
	if (!params_validate(&wave, ram, reserved, &why)) {
		record("error reason=bad-params detail=%s start=%x end=%x stride=%x delta=%x offset=%x",
		       why, wave.start, wave.end, wave.stride, wave.delta, wave.offset);
		halt();
	}
}

/* Finds the redistributors, puts the boot CPU's first, enables LPIs on all
 * of them (they share the property table, each has its own pending table). */
static int setup_redists(void)
{
	struct redist found[MAX_CPUS];
	const char *why = "";
	int n = gic_find_redists(found, MAX_CPUS), m = 0;
	u64 me = mpidr_aff();

	for (int i = 0; i < n; i++)
		if (found[i].mpidr == me)
			rds[m++] = found[i];
	if (m != 1)
		fatal("boot-cpu-redist-not-found");
	for (int i = 0; i < n; i++)
		if (found[i].mpidr != me)
			rds[m++] = found[i];

	for (int i = 0; i < n; i++)
		if (!gic_redist_enable_lpis(&rds[i], (u64)tables.prop, LPI_ID_BITS,
					    (u64)tables.pend[i], &why))
			fatal(why);
	return n;
}

/* PSCI-starts every other CPU that has a redistributor; CPU indices are
 * assigned in start order so they stay dense if one fails to come up. */
static int start_secondaries(int nrd)
{
	int ncpus = 1;

	for (int i = 1; i < nrd; i++) {
		struct redist r = rds[i];
		long ret = psci_cpu_on(r.mpidr, (u64)secondary_entry, (u64)ncpus);
		if (ret != 0)
			continue;
		u64 end = now_ticks() + us_to_ticks(2000000);
		while (!cpu_online[ncpus] && now_ticks() < end)
			cpu_relax();
		if (!cpu_online[ncpus])
			fatal("secondary-cpu-timeout");
		rds[ncpus++] = r;   /* index ncpus <= i, so no entry is lost */
	}
	return ncpus;
}

static void print_tables(int ncpus)
{
	record("table name=lpi-prop base=%x size=%x", (u64)tables.prop, (u64)LPI_PROP_BYTES);
	for (int c = 0; c < ncpus; c++)
		record("table name=lpi-pend-cpu%d base=%x size=%x", (u64)c,
		       (u64)tables.pend[c], (u64)LPI_PEND_BYTES);
	record("table name=its-device base=%x size=%x", its.dev_base, its.dev_size);
	record("table name=its-collection base=%x size=%x", its.coll_base, its.coll_size);
	record("table name=its-cmdq base=%x size=%x", its.cmdq_base, its.cmdq_size);
	for (int d = 0; d < N_DEV; d++)
		record("table name=itt-dev%d base=%x size=%x", (u64)d, (u64)tables.itt[d],
		       (u64)((EVENTS_PER_DEV * its.itt_entry_size + 255) & ~255u));
}

void boot_main(u64 dtb)
{
	const char *why = "";

	mmu_build_tables();
	mmu_enable();
	uart_init();
	load_params(dtb);

	if (!gic_dist_init(&why))
		fatal(why);
	int nrd = setup_redists();
	gic_cpu_init();
	int ncpus = start_secondaries(nrd);

	record("its-guest v1 cpus=%d image=%x-%x", (u64)ncpus, (u64)__image_start,
	       (u64)__image_end);
	if (ncpus < 2)
		fatal("need-2-cpus");
	if (wave.writers > (u64)ncpus - 1)   /* CPU0 issues LPIs, it never writes */
		fatal("writers-above-cpus-minus-1");
	if (wave.writers > 1)
		record("wave start=%x end=%x stride=%x delta=%x offset=%x writers=%d", wave.start,
		       wave.end, wave.stride, wave.delta, wave.offset, wave.writers);
	else
		record("wave start=%x end=%x stride=%x delta=%x offset=%x", wave.start, wave.end,
		       wave.stride, wave.delta, wave.offset);
	wave_setup(&wave);

	if (!its_init(&its, (u64)tables.its_dev, (u64)tables.its_coll, (u64)tables.its_cmdq, &why))
		fatal(why);
	if (EVENTS_PER_DEV * its.itt_entry_size > sizeof(tables.itt[0]))
		fatal("itt-too-small");
	if (wave.tables)
		print_tables(ncpus);

	env.ncpus = ncpus;
	for (int c = 0; c < ncpus; c++)
		env.rd[c] = &rds[c];
	env.its = &its;
	env.prop = tables.prop;
	for (int d = 0; d < N_DEV; d++)
		env.itt[d] = (u64)tables.itt[d];
	if (!lpi_setup(&env, &why))
		fatal(why);

	irq_enable();
	__atomic_store_n(&wave_go, 1, __ATOMIC_RELEASE);   /* after wave_setup */
	if (!lpi_wait_traffic_flowing(5000000))
		fatal("no-lpi-delivery");
	/* The parked LPIs must still be pending, not delivered. */
	udelay(50000);
	if (lpi_pending_delivered())
		fatal("pending-lpi-delivered-early");
	record("ready lpis=%d pending=%d unmapped=%d", (u64)N_TRAFFIC, (u64)N_PENDING,
	       (u64)N_UNMAPPED);
	if (wave.kut)
		kut_session();

	for (;;) {
		switch (uart_getc()) {
		case 'S':
			lpi_print_status();
			if (wave.writers > 1)
				wave_print_status();
			break;
		case 'V':
			lpi_verify();   /* issuing pauses: we are the issuer */
			break;
		default:
			break;
		}
		lpi_issue_round();
	}
}

void secondary_main(u64 idx)
{
	mmu_enable();
	gic_cpu_init();
	cpu_online[idx] = 1;
	irq_enable();
	if (idx >= FIRST_WAVE_CPU && idx < FIRST_WAVE_CPU + wave.writers) {
		while (!__atomic_load_n(&wave_go, __ATOMIC_ACQUIRE))
			cpu_relax();
		wave_run(&wave, idx - FIRST_WAVE_CPU);
	}
	for (;;)
		wfi();
}
