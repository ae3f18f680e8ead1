/*
 * qmpctl x86 wave guest: the QEMU migration-test memory workload.
 *
 * Forever: for p in [start, end) step stride, add delta to the byte at
 * p + offset, then send one 'B' to COM1. A migration verifier can therefore
 * check the destination's RAM: every touched byte holds v or v + delta
 * (mod 256), with at most one edge where the newer value stops.
 *
 * Runs in 32-bit protected mode without paging: the least demanding mode, so
 * it works under TCG and under this host's kvm_pvm (which hangs 64-bit Linux
 * guests and, in our tests, 32-bit paging with 4 MiB pages). Parameters come
 * from the fw_cfg file "opt/qmpctl/params", e.g.
 *   start=0x200000 end=0x6600000 stride=0x1000 delta=0x1 offset=0x0
 * Every serial record is a whole line starting with "QMPCTL ".
 *
 * Big guests: `pc` maps RAM above 3 GiB from 4 GiB, out of reach of 32-bit
 * addresses. Only when the wave ends above 4 GiB does the guest turn on PAE
 * paging (2 MiB pages): the low 3 GiB identity-mapped, the top GiB of
 * virtual space a window moved over physical memory (TLB flushed by a CR3
 * reload at each move). The optional hole_start/hole_end parameters leave a
 * stretch out of [start, end) (the PCI hole and the firmware's top of low
 * RAM); the wave runs over the two parts in address order.
 */
#include <stdint.h>

#define COM1        0x3f8
#define LSR_THRE    0x20

#define FW_CFG_SEL      0x510
#define FW_CFG_DATA     0x511
#define FW_CFG_SIGNATURE 0x00
#define FW_CFG_FILE_DIR 0x19
#define PARAMS_FILE     "opt/qmpctl/params"

#define MB_BOOT_MAGIC   0x2badb002
#define MBI_MEM         (1u << 0)
#define MBI_CMDLINE     (1u << 2)
#define MBI_MMAP        (1u << 6)
#define MBI_LOADER_NAME (1u << 9)
#define E820_RAM        1

/* Multiboot v1 info block, up to the fields we look at. */
struct mb_info {
    uint32_t flags, mem_lower, mem_upper, boot_device, cmdline;
    uint32_t mods_count, mods_addr, syms[4];
    uint32_t mmap_length, mmap_addr;
    uint32_t drives_length, drives_addr, config_table, boot_loader_name;
};

struct mb_mmap {
    uint32_t size;              /* of the rest of the entry */
    uint64_t addr, len;
    uint32_t type;
} __attribute__((packed));

struct params {
    uint64_t start, end, stride, delta, offset, hole_start, hole_end, cpus;
};

#define FOUR_GIB        0x100000000ull
#define DIRECT_LIMIT    0xc0000000u     /* identity-mapped below, with paging */
#define WINDOW_VA       0xc0000000u     /* the top GiB: the movable window */
#define WINDOW_SIZE     0x40000000u
#define PAGE_2M         0x200000u
#define MAX_PAGED_STRIDE 0x10000000u    /* 256 MiB: a window always makes progress */

#define PTE_P   1ull
#define PTE_RW  2ull
#define PTE_PS  0x80ull

/* PAE: 4 PDPT entries, one page directory of 512 2 MiB pages per GiB. */
static uint64_t pdpt[4] __attribute__((aligned(32)));
static uint64_t pdir[4][512] __attribute__((aligned(4096)));
static int paging;
static uint64_t window_base = ~0ull;

extern char __image_start[], __image_end[];

static inline void outb(uint16_t port, uint8_t v)
{
    __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline void outw(uint16_t port, uint16_t v)
{
    __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
    uint8_t v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

static __attribute__((noreturn)) void halt_forever(void)
{
    for (;;)
        __asm__ volatile("cli; hlt");
}

/* ---- COM1 ---------------------------------------------------------------- */

static void serial_init(void)
{
    /* Polled 115200 8N1. The BIOS may have left things configured, but we do
     * not rely on it (and we must not get an interrupt: there is no IDT). */
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x80);
    outb(COM1 + 0, 0x01);
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03);
    outb(COM1 + 2, 0x07);
}

static void putc(char c)
{
    while (!(inb(COM1 + 5) & LSR_THRE))
        ;
    outb(COM1, (uint8_t)c);
}

static void puts(const char *s)
{
    while (*s)
        putc(*s++);
}

static void puthex(uint64_t v)
{
    int shift = 60;

    puts("0x");
    while (shift > 0 && !(v >> shift))
        shift -= 4;
    for (; shift >= 0; shift -= 4)
        putc("0123456789abcdef"[(v >> shift) & 0xf]);
}

static void put_params(const struct params *p)
{
    puts(" start=");  puthex(p->start);
    puts(" end=");    puthex(p->end);
    puts(" stride="); puthex(p->stride);
    puts(" delta=");  puthex(p->delta);
    puts(" offset="); puthex(p->offset);
    if (p->hole_end > p->hole_start) {
        puts(" hole_start="); puthex(p->hole_start);
        puts(" hole_end="); puthex(p->hole_end);
    }
    if (p->cpus != 1) {
        puts(" cpus="); puthex(p->cpus);
    }
}

static __attribute__((noreturn)) void fail(const char *reason,
                                            const struct params *p)
{
    puts("QMPCTL error reason=");
    puts(reason);
    if (p)
        put_params(p);
    puts("\n");
    halt_forever();
}

/* ---- fw_cfg (legacy port interface, present on every QEMU x86 machine) ---- */

static void fwcfg_read(uint16_t key, void *buf, uint32_t len)
{
    uint8_t *b = buf;

    if (key != 0xffff)          /* 0xffff: keep reading the current item */
        outw(FW_CFG_SEL, key);
    while (len--)
        *b++ = inb(FW_CFG_DATA);
}

static uint32_t be32(const uint8_t *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | b[2] << 8 | b[3];
}

static int streq(const char *a, const char *b)
{
    while (*a && *a == *b)
        a++, b++;
    return *a == *b;
}

/* Returns the file's size and sets *key, or -1 if there is no such file. */
static int32_t fwcfg_find(const char *name, uint16_t *key)
{
    uint8_t sig[4], ent[64];
    uint32_t n;

    fwcfg_read(FW_CFG_SIGNATURE, sig, 4);
    if (sig[0] != 'Q' || sig[1] != 'E' || sig[2] != 'M' || sig[3] != 'U')
        return -1;
    fwcfg_read(FW_CFG_FILE_DIR, sig, 4);
    for (n = be32(sig); n; n--) {
        fwcfg_read(0xffff, ent, sizeof(ent));
        ent[63] = 0;
        if (streq((const char *)ent + 8, name)) {
            *key = (uint16_t)(ent[4] << 8 | ent[5]);
            return (int32_t)(be32(ent) & 0x7fffffff);
        }
    }
    return -1;
}

/* ---- parameters ---------------------------------------------------------- */

static int is_space(char c)
{
    /* NUL too: a file= source may carry a trailing NUL or newline. */
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == 0;
}

/* Parses a whole token [s, e) as hex (0x...) or decimal; 0 on any junk. */
static int parse_num(const char *s, const char *e, uint64_t *out)
{
    uint64_t v = 0, limit = 0x1999999999999999ull;   /* UINT64_MAX / 10 */
    uint32_t base = 10, d;

    if (e - s > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        limit = 0x0fffffffffffffffull;
        s += 2;
    }
    if (s == e)
        return 0;
    for (; s < e; s++) {
        char c = *s;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (base == 16 && c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else if (base == 16 && c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else
            return 0;
        if (d >= base || v > limit || v * base > ~0ull - d)
            return 0;           /* no 64-bit division here: no libgcc */
        v = v * base + d;
    }
    *out = v;
    return 1;
}

static int key_is(const char *s, const char *eq, const char *key)
{
    while (s < eq && *key && *s == *key)
        s++, key++;
    return s == eq && !*key;
}

static void parse_params(const char *s, const char *end, struct params *p)
{
    while (s < end) {
        const char *tok, *eq, *te;
        uint64_t *dst, v;

        while (s < end && is_space(*s))
            s++;
        if (s == end)
            break;
        tok = s;
        while (s < end && !is_space(*s))
            s++;
        te = s;
        for (eq = tok; eq < te && *eq != '='; eq++)
            ;
        if (key_is(tok, eq, "start"))
            dst = &p->start;
        else if (key_is(tok, eq, "end"))
            dst = &p->end;
        else if (key_is(tok, eq, "stride"))
            dst = &p->stride;
        else if (key_is(tok, eq, "delta"))
            dst = &p->delta;
        else if (key_is(tok, eq, "offset"))
            dst = &p->offset;
        else if (key_is(tok, eq, "hole_start"))
            dst = &p->hole_start;
        else if (key_is(tok, eq, "hole_end"))
            dst = &p->hole_end;
        else if (key_is(tok, eq, "cpus"))
            dst = &p->cpus;
        else
            fail("unknown-key", p);
        if (eq == te || !parse_num(eq + 1, te, &v))
            fail("bad-number", p);
        *dst = v;
    }
}

/* ---- memory layout ------------------------------------------------------- */

static uint32_t umax(uint32_t a, uint32_t b)
{
    return a > b ? a : b;
}

static uint32_t strend(uint32_t addr)
{
    const char *s = (const char *)addr;

    while (*s)
        s++;
    return (uint32_t)s + 1;
}

/*
 * End of everything above 1 MiB the guest must not overwrite. QEMU's
 * multiboot loader copies the command line (the -kernel path plus -append)
 * and its loader name just past the ELF image, so they extend our footprint:
 * they are not zero at boot and a wave over them would start non-uniform.
 * (The info block and memory map themselves sit below 1 MiB, at 0x9000.)
 */
static uint32_t footprint_end(const struct mb_info *mbi)
{
    uint32_t hi = (uint32_t)__image_end;

    if (!mbi)
        return hi;
    hi = umax(hi, (uint32_t)mbi + sizeof(*mbi));
    if (mbi->flags & MBI_CMDLINE)
        hi = umax(hi, strend(mbi->cmdline));
    if (mbi->flags & MBI_LOADER_NAME)
        hi = umax(hi, strend(mbi->boot_loader_name));
    if (mbi->flags & MBI_MMAP)
        hi = umax(hi, mbi->mmap_addr + mbi->mmap_length);
    return hi;
}

/*
 * Is [start, end) usable RAM? Prefer the firmware's E820 map (passed on by
 * the multiboot loader): unlike mem_upper it excludes what SeaBIOS reserved
 * at the top of RAM (ACPI tables, its own high data).
 */
static int range_in_ram(const struct mb_info *mbi, uint64_t start,
                        uint64_t end)
{
    if (mbi && (mbi->flags & MBI_MMAP)) {
        uint32_t a = mbi->mmap_addr, e = a + mbi->mmap_length;

        for (; a < e; a += ((const struct mb_mmap *)a)->size + 4) {
            const struct mb_mmap *m = (const struct mb_mmap *)a;
            if (m->type == E820_RAM && m->addr <= start &&
                end <= m->addr + m->len)
                return 1;
        }
        return 0;
    }
    if (mbi && (mbi->flags & MBI_MEM))
        return start >= 0x100000 && end - 0x100000 <= mbi->mem_upper * 1024ull;
    return 0;
}

/* a % b by long division: 32-bit code has no 64-bit divide without libgcc. */
static uint64_t mod64(uint64_t a, uint64_t b)
{
    uint64_t d = b;

    while (d <= a && !(d >> 63))
        d <<= 1;
    for (; d >= b; d >>= 1)
        if (a >= d)
            a -= d;
    return a;
}

/* ---- PAE paging: only for a wave above 4 GiB ------------------------------ */

static inline void write_cr3(uint32_t v)
{
    __asm__ volatile("mov %0, %%cr3" : : "r"(v) : "memory");
}

/* Point the top GiB of virtual space at physical [base, base + 1 GiB). */
static void map_window(uint64_t base)
{
    uint32_t j;

    for (j = 0; j < 512; j++)
        pdir[3][j] = (base + (uint64_t)j * PAGE_2M) | PTE_P | PTE_RW | PTE_PS;
    write_cr3((uint32_t)pdpt);  /* reloads the PDPTEs and flushes the TLB */
    window_base = base;
}

static void paging_on(void)
{
    uint32_t i, j, cr;

    for (i = 0; i < 3; i++) {
        for (j = 0; j < 512; j++)
            pdir[i][j] = ((uint64_t)(i * 512 + j) * PAGE_2M) | PTE_P | PTE_RW | PTE_PS;
    }
    for (i = 0; i < 4; i++)
        pdpt[i] = (uint32_t)pdir[i] | PTE_P;   /* PAE PDPTEs: no RW/US bits */
    map_window(FOUR_GIB);
    __asm__ volatile("mov %%cr4, %0" : "=r"(cr));
    cr |= 1u << 5;                              /* CR4.PAE */
    __asm__ volatile("mov %0, %%cr4" : : "r"(cr) : "memory");
    write_cr3((uint32_t)pdpt);
    __asm__ volatile("mov %%cr0, %0" : "=r"(cr));
    cr |= 1u << 31;                             /* CR0.PG */
    __asm__ volatile("mov %0, %%cr0" : : "r"(cr) : "memory");
    paging = 1;
}

/*
 * The virtual address of physical pa, and the physical address up to which
 * (exclusive) that mapping holds: below 4 GiB without paging, below 3 GiB
 * with it (identity); above, through the window, moved to pa's 2 MiB page
 * unless pa + room is in it already (so a pointer at pa can step `room`
 * without leaving the window, and so without wrapping past 2^32).
 */
static uint32_t reach(uint64_t pa, uint32_t room, uint64_t *limit)
{
    if (!paging || pa < DIRECT_LIMIT) {
        *limit = paging ? DIRECT_LIMIT : FOUR_GIB;
        return (uint32_t)pa;
    }
    if (pa < window_base || pa + room >= window_base + WINDOW_SIZE)
        map_window(pa & ~(uint64_t)(PAGE_2M - 1));
    *limit = window_base + WINDOW_SIZE;
    return WINDOW_VA + (uint32_t)(pa - window_base);
}

/*
 * Add delta to the counters c, c + stride, ... below c_end. One in-order,
 * single-instruction read-modify-write per byte, so a vCPU stopped at any
 * instruction boundary leaves exactly one newer/older edge. Hand-written
 * because kvm_pvm runs this guest through its instruction emulator: cost is
 * per instruction, and this 4-instruction loop is ~2x faster there than
 * gcc's 7. Each run of the loop stops a stride short of its mapping's end,
 * so the pointer never wraps past 4 GiB (stride <= MAX_STRIDE).
 */
static void wave_span(uint64_t c, uint64_t c_end, const struct params *p)
{
    uint32_t stride = (uint32_t)p->stride;

    while (c < c_end) {
        uint64_t limit, stop;
        uint32_t q0 = reach(c, stride, &limit), q = q0;

        stop = c_end < limit - stride ? c_end : limit - stride;
        if (stop <= c)
            stop = c + 1;       /* identity map only: c, then the next mapping */
        __asm__ volatile("1:\n\t"
                         "addb %b[d], (%[q])\n\t"
                         "add %[s], %[q]\n\t"
                         "cmp %[e], %[q]\n\t"
                         "jb 1b"
                         : [q] "+r"(q)
                         : [d] "q"((uint32_t)p->delta), [s] "r"(stride),
                           [e] "r"(q0 + (uint32_t)(stop - c))
                         : "memory", "cc");
        c += q - q0;
    }
}

/* The wave's parts: [start, end) less [hole_start, hole_end). */
static int wave_parts(const struct params *p, uint64_t part[2][2])
{
    if (p->hole_end <= p->hole_start) {
        part[0][0] = p->start, part[0][1] = p->end;
        return 1;
    }
    part[0][0] = p->start, part[0][1] = p->hole_start;
    part[1][0] = p->hole_end, part[1][1] = p->end;
    return 2;
}

/* ---- several writers ------------------------------------------------------ */

/*
 * With cpus = N > 1 every CPU runs the wave over its own slice: the wave's
 * B blocks split into N runs of whole blocks in address order, floor(B/N)
 * each, the last B mod N runs one block longer (qmpctl.verify.wave.wave_slices
 * computes the same). Each slice keeps the one-edge invariant on its own.
 * Only for a wave below 4 GiB without a hole: the PAE window is one per
 * guest, not per CPU.
 *
 * Serial: only the BSP prints. A 'B' is a round: it is printed when every
 * CPU has finished one more pass than the 'B's so far (the smallest pass
 * count went up), so the controller's pass counting means "every writer
 * moved". Sending 'S' makes the BSP print each CPU's own pass count.
 * The pass counters and the stacks are written every pass: they live in
 * the image, which the guest announces (wave-guest image=...).
 */
#define MAX_CPUS        8
#define TRAMPOLINE      0x7000u         /* 4 KiB aligned, below 1 MiB, free */
#define APIC_BASE       0xfee00000u
#define APIC_SVR        0xf0
#define APIC_ICR_LO     0x300
#define APIC_ICR_HI     0x310
#define ICR_BUSY        (1u << 12)
#define ICR_INIT        0x000c4500u     /* all but self, assert, INIT */
#define ICR_SIPI        0x000c4600u     /* all but self, start-up | vector */
#define AP_WAIT_SECONDS 5               /* RTC second ticks to wait for APs */

extern char ap_tramp_start[], ap_tramp_end[];
extern volatile uint32_t ap_arrived;

static struct params g_p;               /* read by every CPU once set */
static uint32_t slice_lo[MAX_CPUS], slice_hi[MAX_CPUS];    /* gpa of counters */
static volatile uint32_t cpu_passes[MAX_CPUS];

static void wave_span(uint64_t c, uint64_t c_end, const struct params *p);

static void compute_slices(const struct params *p)
{
    uint32_t n = (uint32_t)p->cpus, stride = (uint32_t)p->stride;
    uint32_t blocks = (uint32_t)(p->end - p->start) / stride;
    uint32_t q = blocks / n, r = blocks % n, i, first = 0;

    for (i = 0; i < n; i++) {
        uint32_t len = q + (i >= n - r ? 1 : 0);

        slice_lo[i] = (uint32_t)p->start + first * stride + (uint32_t)p->offset;
        slice_hi[i] = slice_lo[i] + len * stride;
        first += len;
    }
}

/* One pass over this CPU's slice, counted. */
static void slice_pass(uint32_t cpu)
{
    wave_span(slice_lo[cpu], slice_hi[cpu], &g_p);
    cpu_passes[cpu]++;
}

void ap_main(uint32_t cpu)
{
    if (cpu >= g_p.cpus)        /* a vCPU we were not told of: stays out */
        halt_forever();
    for (;;)
        slice_pass(cpu);
}

static inline void apic_write(uint32_t reg, uint32_t v)
{
    *(volatile uint32_t *)(APIC_BASE + reg) = v;
}

static inline uint32_t apic_read(uint32_t reg)
{
    return *(volatile uint32_t *)(APIC_BASE + reg);
}

static void io_delay(uint32_t n)
{
    while (n--)
        outb(0x80, 0);          /* ~1 us on hardware; QEMU needs no real wait */
}

static void send_ipi(uint32_t icr)
{
    apic_write(APIC_ICR_HI, 0);
    apic_write(APIC_ICR_LO, icr);
    while (apic_read(APIC_ICR_LO) & ICR_BUSY)
        ;
}

static uint8_t rtc_seconds(void)
{
    outb(0x70, 0x00);
    return inb(0x71);
}

/* Start every AP (broadcast: no APIC IDs needed); returns how many arrived. */
static uint32_t start_aps(uint32_t want)
{
    uint8_t *dst = (uint8_t *)TRAMPOLINE;
    const char *src;
    uint8_t sec;
    int ticks = 0;

    for (src = ap_tramp_start; src < ap_tramp_end; src++)
        *dst++ = (uint8_t)*src;
    apic_write(APIC_SVR, apic_read(APIC_SVR) | 0x1ff);  /* enabled, vector 0xff */
    send_ipi(ICR_INIT);
    io_delay(10000);
    send_ipi(ICR_SIPI | TRAMPOLINE >> 12);
    io_delay(200);
    send_ipi(ICR_SIPI | TRAMPOLINE >> 12);
    sec = rtc_seconds();
    while (ap_arrived < want && ticks < AP_WAIT_SECONDS) {
        uint8_t now = rtc_seconds();
        if (now != sec)
            sec = now, ticks++;
    }
    return ap_arrived;
}

static void print_status(void)
{
    uint32_t i;

    puts("QMPCTL wave-status cpus=");
    puthex(g_p.cpus);
    puts(" passes=");
    for (i = 0; i < g_p.cpus; i++) {
        if (i)
            putc(',');
        puthex(cpu_passes[i]);
    }
    puts("\n");
}

/* The BSP's loop: its own slice, a 'B' per round, 'S' answered. */
static __attribute__((noreturn)) void bsp_loop(void)
{
    uint32_t rounds = 0, i, least;

    for (;;) {
        slice_pass(0);
        least = cpu_passes[0];
        for (i = 1; i < g_p.cpus; i++)
            if (cpu_passes[i] < least)
                least = cpu_passes[i];
        for (; rounds < least; rounds++)
            putc('B');
        if ((inb(COM1 + 5) & 1) && inb(COM1) == 'S')
            print_status();
    }
}

/* ---- main ---------------------------------------------------------------- */

void wave_main(uint32_t magic, const struct mb_info *mbi)
{
    struct params p = { 0x200000, 0x6600000, 0x1000, 1, 0, 0, 0, 1 };
    static char buf[256];
    uint32_t img_lo = (uint32_t)__image_start, img_hi;
    uint64_t part[2][2], a, lim;
    uint8_t first;
    uint16_t key;
    int32_t size;
    uint32_t started;
    int i, parts;

    if (magic != MB_BOOT_MAGIC)
        mbi = 0;
    img_hi = footprint_end(mbi);

    serial_init();
    puts("QMPCTL wave-guest v1 arch=x86_64 mode=32bit image=");
    puthex(img_lo);
    puts("-");
    puthex(img_hi);
    puts("\n");

    size = fwcfg_find(PARAMS_FILE, &key);
    if (size >= (int32_t)sizeof(buf))
        fail("params-too-long", 0);
    if (size >= 0) {
        fwcfg_read(key, buf, (uint32_t)size);
        parse_params(buf, buf + size, &p);
    }

    if (!p.stride || p.stride > MAX_PAGED_STRIDE)
        fail("bad-stride", &p);
    if (mod64(p.start, p.stride) || mod64(p.end, p.stride))
        fail("unaligned", &p);
    if (p.start >= p.end)
        fail("empty-range", &p);
    if (p.offset >= p.stride)
        fail("bad-offset", &p);
    if (p.delta < 1 || p.delta > 255)
        fail("bad-delta", &p);
    if ((p.hole_start || p.hole_end) &&
        (!(p.start < p.hole_start && p.hole_start < p.hole_end && p.hole_end < p.end) ||
         mod64(p.hole_start, p.stride) || mod64(p.hole_end, p.stride)))
        fail("bad-hole", &p);
    if (p.cpus < 1 || p.cpus > MAX_CPUS)
        fail("bad-cpus", &p);
    if (p.cpus > 1 && (p.end > FOUR_GIB || p.hole_end > p.hole_start))
        fail("cpus-need-wave-below-4g-without-hole", &p);
    if (p.cpus > 1 && (p.end - p.start) < p.cpus * p.stride)
        fail("fewer-blocks-than-cpus", &p);
    parts = wave_parts(&p, part);
    /* Low memory holds the IVT, BIOS data, the multiboot info, option ROMs
     * and the VGA hole: never a meaningful place for the wave. */
    if (p.start < 0x100000)
        fail("low-memory", &p);
    for (i = 0; i < parts; i++) {
        if (part[i][0] < img_hi && img_lo < part[i][1])
            fail("overlaps-image", &p);
        if (!range_in_ram(mbi, part[i][0], part[i][1]))
            fail("outside-ram", &p);
    }
    if (p.end > FOUR_GIB)
        paging_on();
    /* The verifier assumes every wave byte starts from the same value; catch
     * a range the firmware wrote before we began. E820 does not cover all of
     * that: SeaBIOS leaves its freed POST-time heap (just below RAM - 16 MiB
     * with -m 160M) dirty yet reports it as RAM. */
    first = *(volatile uint8_t *)reach(p.start + p.offset, 1, &lim);
    for (i = 0; i < parts; i++)
        for (a = part[i][0] + p.offset; a < part[i][1] + p.offset; a += p.stride)
            if (*(volatile uint8_t *)reach(a, 1, &lim) != first)
                fail("nonuniform-ram", &p);

    puts("QMPCTL wave");
    put_params(&p);
    if (paging)
        puts(" paging=pae");
    puts("\n");

    if (p.cpus == 1) {
        /* As ever: parts, hole and paging allowed, and nothing written per
         * pass outside the wave (no counters, no status), so a lost page
         * is a wave page the verifier can explain. */
        for (;;) {
            for (i = 0; i < parts; i++)
                wave_span(part[i][0] + p.offset, part[i][1] + p.offset, &p);
            putc('B');
        }
    }
    g_p = p;
    compute_slices(&g_p);
    started = start_aps((uint32_t)p.cpus - 1) + 1;
    puts("QMPCTL writers cpus=");
    puthex(p.cpus);
    puts(" started=");
    puthex(started);
    puts("\n");
    if (started < p.cpus)
        fail("aps-did-not-start", &p);
    bsp_loop();
}
