/* The LPI workload: which LPIs exist, the issuer, the handler, the checks. */
#ifndef GUEST_LPI_H
#define GUEST_LPI_H
#include "lib.h"
#include "gic.h"
#include "its.h"

/*
 * Devices (DeviceID = index):
 *   0..3  traffic: 8 events each, spread round-robin over the collections
 *   4     pending: 8 events whose LPIs are disabled in the property table
 *         and made pending with INT before migration
 *   5     unmapped: 1 event mapped (MAPTI) to a collection with no MAPC
 */
#define N_TRAFFIC_DEV   4
#define EVENT_BITS      3               /* every ITT sized for 8 events */
#define EVENTS_PER_DEV  (1 << EVENT_BITS)
#define DEV_PENDING     4
#define DEV_UNMAPPED    5
#define N_DEV           6
#define N_TRAFFIC       (N_TRAFFIC_DEV * EVENTS_PER_DEV)
#define N_PENDING       EVENTS_PER_DEV
#define N_UNMAPPED      1
#define N_LPI           (N_TRAFFIC + N_PENDING + N_UNMAPPED)

/* INTIDs 8192.. up to (1 << LPI_ID_BITS) - 1 are covered by the tables. */
#define LPI_ID_BITS     14
#define LPI_PROP_BYTES  ((1u << LPI_ID_BITS) - LPI_BASE_INTID)
#define LPI_PEND_BYTES  ((1u << LPI_ID_BITS) / 8)

struct lpi_env {
	int ncpus;
	const struct redist *rd[MAX_CPUS];   /* redistributor of CPU index i */
	const struct its_info *its;
	u8 *prop;                            /* LPI property table */
	u64 itt[N_DEV];                      /* ITT address per device */
};

/* Maps collections/devices/events and parks the pending set.  CPU0. */
bool lpi_setup(const struct lpi_env *env, const char **why);
/* Issues one round of INT commands for traffic LPIs that are not in flight. */
void lpi_issue_round(void);
/* Waits (bounded) until every CPU has received at least one traffic LPI. */
bool lpi_wait_traffic_flowing(u64 timeout_us);
/* Pending LPIs that were delivered although they must not be (yet). */
u64 lpi_pending_delivered(void);
void lpi_print_status(void);
/* Post-migration checks, one record each plus the verdict. */
void lpi_verify(void);
/* Report the checks as kvm-unit-tests lines ("PASS: ...") instead of records. */
extern bool lpi_kut_lines;
extern u64 lpi_checks_passed, lpi_checks_failed;
/* Called from the IRQ vector. */
void irq_handler(void);
#endif
