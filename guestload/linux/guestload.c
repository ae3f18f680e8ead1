/*
 * guestload - memory-dirtying workload and lost-write detector for qmpctl
 * Linux guests (x86_64 and arm64, built static, runs as /init's payload).
 *
 * Usage: guestload [--workload wave|random|hotset|rate|readmostly]
 *                  [--size 64M|1G|25%] [--threads N] [--interval-ms 200]
 *                  [--hot X,Y] [--rate MIB_PER_S] [--write-pct P]
 *                  [--net-interval-s S] [--iface eth0] [--seed N]
 *
 * Workloads (each writer thread owns one contiguous slice of the buffer, so
 * the per-page shadow needs no locking):
 *   wave        pass after pass over the slice, every page rewritten; the
 *               first byte of each page is the low byte of its sequence
 *               number, so it is incremented each pass (QEMU migration-test).
 *   random      a random page of the slice per write (guestperf "stress").
 *   hotset      X % of the pages take Y % of the writes (--hot X,Y; 10,90).
 *   rate        sequential writes paced to --rate MiB/s in total (default 32).
 *   readmostly  random pages, each op a read (verified against the shadow)
 *               except --write-pct P % of them (default 2) which write.
 *
 * Every page carries: word 0 = sequence number of its last write, word 1 =
 * page index ^ MAGIC_IDX, last word = check(page, seq).  shadow[page] holds
 * the sequence the guest last wrote there.  The self-check compares both:
 * content older than the shadow = a lost write ("went back in time").
 *
 * Records on stdout (whole lines starting with "QMPCTL "):
 *   QMPCTL info page_size=<b> pages=<n> mlock=ok|failed cpus=<n>
 *   QMPCTL guestload v1 workload=<w> size_mib=<n> threads=<n> ready
 *   QMPCTL progress t_ms=<guest CLOCK_MONOTONIC ms> written_mib=<int> pages=<n>
 *   QMPCTL selfcheck result=PASS|FAIL pages=<n> bad=<n> first_bad=<idx|-1>
 *   QMPCTL selfcheck-detail page=<idx> expected_seq=<n> found_seq=<n>
 *          kind=older|newer|corrupt                (only after FAIL)
 *   QMPCTL net iface=<if> irqs=<sum of its /proc/interrupts lines>
 *   QMPCTL netinfo iface=<if> dev=<virtioN> lines=<n> chip=<irq chip>
 *          rx_packets=<n> tx_packets=<n>   (chip: PCI-MSI on x86, ITS-MSI
 *          on arm64 virt with an ITS; printed at start and on N)
 *   QMPCTL lostwrite page=<idx> expected_seq=<n> found_seq=<n>
 *          (once, as soon as a writer/reader finds a page that does not hold
 *          its last write; every writer verifies a page before rewriting it)
 * selfcheck's bad = pages failing the full scan + mismatches writers/readers
 * found since start (sticky: a lost write stays reported even if the page
 * has been rewritten since).
 * Commands on stdin (single bytes, the tty is put in raw no-echo mode):
 *   C  pause all writers, check every page, print selfcheck, resume
 *   N  print the net records now
 *   P  print a progress record now
 *   L  test only: simulate one lost write (rewind the content of the middle
 *      page to its previous sequence) so the next C must report FAIL
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sysinfo.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define MAGIC_IDX 0x51a9c7e1d00dfeedULL
#define MAGIC_TAIL 0x7a11c0ffee15beefULL

enum wl { WL_WAVE, WL_RANDOM, WL_HOTSET, WL_RATE, WL_READMOSTLY };
static const char *wl_names[] = {"wave", "random", "hotset", "rate", "readmostly"};

static struct {
    enum wl workload;
    uint64_t size_bytes;
    int threads;
    int interval_ms;
    int hot_pct, hot_writes;
    double rate_mib;
    int write_pct;
    int net_interval_s;
    const char *iface;
    uint64_t seed;
} opt = {WL_WAVE, 64ULL << 20, 0, 200, 10, 90, 32.0, 2, 5, "eth0", 1};

static uint8_t *buf;
static uint64_t *shadow;
static size_t page_size, npages;

/* Pause barrier. */
static volatile int pause_req;
static pthread_mutex_t pmu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pcond = PTHREAD_COND_INITIALIZER;   /* writers wait */
static pthread_cond_t mcond = PTHREAD_COND_INITIALIZER;   /* main waits */
static int npaused;

struct worker {
    pthread_t tid;
    int id;
    size_t first, count;      /* slice of pages */
    uint64_t rng;
    volatile uint64_t pages_written;
    volatile uint64_t reads;
    char pad[64];
};
static struct worker *workers;

static void out(const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (n > (int)sizeof(line) - 2)
        n = sizeof(line) - 2;
    line[n++] = '\n';
    /* One write per record so lines from other writers never interleave. */
    const char *p = line;
    while (n > 0) {
        ssize_t w = write(1, p, n);
        if (w < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            return;
        }
        p += w;
        n -= w;
    }
}

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "guestload: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    out("QMPCTL guestload error");
    exit(2);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

static inline uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static inline uint64_t tail_of(size_t page, uint64_t seq)
{
    return (seq * 0x9E3779B97F4A7C15ULL) ^ ((uint64_t)page * 0xC2B2AE3D27D4EB4FULL) ^ MAGIC_TAIL;
}

/* 0 = ok, else kind: 1 older, 2 newer, 3 corrupt */
static inline int check_page(size_t page, uint64_t *found)
{
    volatile uint64_t *w = (volatile uint64_t *)(buf + page * page_size);
    uint64_t seq = w[0], exp = shadow[page];
    *found = seq;
    if (seq < exp)
        return 1;
    if (seq > exp)
        return 2;
    if (w[1] != ((uint64_t)page ^ MAGIC_IDX) || w[page_size / 8 - 1] != tail_of(page, seq))
        return 3;
    return 0;
}

/* Mismatches seen by writers/readers (sticky, since start). */
static volatile uint64_t det_bad;
static volatile int det_first_set;
static int64_t det_first = -1;
static uint64_t det_exp, det_found;
static int det_kind;

static void note_bad(size_t page, int kind, uint64_t found)
{
    if (__atomic_fetch_add(&det_bad, 1, __ATOMIC_RELAXED) == 0) {
        det_first = (int64_t)page;
        det_exp = shadow[page];
        det_found = found;
        det_kind = kind;
        __atomic_store_n(&det_first_set, 1, __ATOMIC_RELEASE);
    }
}

/* Verify the page still holds the last write, then write the next one: a
 * lost write is caught even if the page is rewritten before the next C. */
static inline void write_page(size_t page)
{
    uint64_t found;
    int k = check_page(page, &found);
    if (__builtin_expect(k != 0, 0)) {
        note_bad(page, k, found);
        if (k == 2) /* content ahead of the shadow (shadow lost): resync */
            shadow[page] = found;
    }
    uint64_t seq = ++shadow[page];
    volatile uint64_t *w = (volatile uint64_t *)(buf + page * page_size);
    w[0] = seq;
    w[1] = (uint64_t)page ^ MAGIC_IDX;
    w[page_size / 8 - 1] = tail_of(page, seq);
}

/* Called by writers between operations. */
static inline void maybe_pause(void)
{
    if (!__atomic_load_n(&pause_req, __ATOMIC_ACQUIRE))
        return;
    pthread_mutex_lock(&pmu);
    npaused++;
    pthread_cond_broadcast(&mcond);
    while (pause_req)
        pthread_cond_wait(&pcond, &pmu);
    npaused--;
    pthread_mutex_unlock(&pmu);
}

static void *writer(void *arg)
{
    struct worker *wk = arg;
    size_t n = wk->count, base = wk->first;
    size_t hot_n = n * (size_t)opt.hot_pct / 100;
    if (hot_n == 0)
        hot_n = 1;
    if (hot_n > n)
        hot_n = n;
    size_t pos = 0;
    uint64_t batch = 0;
    /* rate pacing: pages this thread may write per second */
    double pps = opt.rate_mib * 1048576.0 / page_size / opt.threads;
    uint64_t t0 = now_ns(), done0 = 0;
    int was_paused;

    if (n == 0)
        return NULL;
    for (;;) {
        was_paused = __atomic_load_n(&pause_req, __ATOMIC_ACQUIRE);
        maybe_pause();
        if (was_paused) {
            t0 = now_ns();
            done0 = wk->pages_written;
        }
        switch (opt.workload) {
        case WL_WAVE:
            for (int i = 0; i < 64; i++) {
                write_page(base + pos);
                if (++pos == n)
                    pos = 0;
            }
            batch = 64;
            break;
        case WL_RANDOM:
            for (int i = 0; i < 64; i++)
                write_page(base + xorshift(&wk->rng) % n);
            batch = 64;
            break;
        case WL_HOTSET:
            for (int i = 0; i < 64; i++) {
                uint64_t r = xorshift(&wk->rng);
                size_t p;
                if ((r >> 40) % 100 < (uint64_t)opt.hot_writes || hot_n == n)
                    p = r % hot_n;
                else
                    p = hot_n + r % (n - hot_n);
                write_page(base + p);
            }
            batch = 64;
            break;
        case WL_RATE: {
            uint64_t el = now_ns() - t0;
            double allowed = pps * (double)el / 1e9;
            uint64_t done = wk->pages_written - done0;
            if ((double)done >= allowed) {
                struct timespec ts = {0, 1000000};
                nanosleep(&ts, NULL);
                batch = 0;
                break;
            }
            uint64_t todo = (uint64_t)(allowed - (double)done);
            if (todo > 256)
                todo = 256;
            for (uint64_t i = 0; i < todo; i++) {
                write_page(base + pos);
                if (++pos == n)
                    pos = 0;
            }
            batch = todo;
            break;
        }
        case WL_READMOSTLY: {
            uint64_t w = 0, rd = 0;
            for (int i = 0; i < 64; i++) {
                uint64_t r = xorshift(&wk->rng);
                size_t p = base + r % n;
                if ((r >> 40) % 1000 < (uint64_t)opt.write_pct * 10) {
                    write_page(p);
                    w++;
                } else {
                    uint64_t found;
                    rd++;
                    int k = check_page(p, &found);
                    if (k)
                        note_bad(p, k, found);
                }
            }
            wk->reads += rd;
            batch = w;
            break;
        }
        }
        __atomic_store_n(&wk->pages_written, wk->pages_written + batch, __ATOMIC_RELEASE);
    }
    return NULL;
}

static void pause_all(void)
{
    pthread_mutex_lock(&pmu);
    __atomic_store_n(&pause_req, 1, __ATOMIC_RELEASE);
    while (npaused < opt.threads)
        pthread_cond_wait(&mcond, &pmu);
    pthread_mutex_unlock(&pmu);
}

static void resume_all(void)
{
    pthread_mutex_lock(&pmu);
    __atomic_store_n(&pause_req, 0, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&pcond);
    pthread_mutex_unlock(&pmu);
}

static void selfcheck(void)
{
    static const char *kinds[] = {"ok", "older", "newer", "corrupt"};
    pause_all();
    uint64_t bad = 0, f_exp = 0, f_found = 0;
    int64_t first = -1;
    int f_kind = 0;
    for (size_t p = 0; p < npages; p++) {
        uint64_t found;
        int k = check_page(p, &found);
        if (k) {
            if (first < 0) {
                first = (int64_t)p;
                f_exp = shadow[p];
                f_found = found;
                f_kind = k;
            }
            bad++;
        }
    }
    uint64_t seen = __atomic_load_n(&det_bad, __ATOMIC_ACQUIRE);
    if (seen && __atomic_load_n(&det_first_set, __ATOMIC_ACQUIRE)) {
        /* The earliest evidence wins: a mismatch caught by a writer. */
        first = det_first;
        f_exp = det_exp;
        f_found = det_found;
        f_kind = det_kind;
    }
    out("QMPCTL selfcheck result=%s pages=%zu bad=%" PRIu64 " first_bad=%" PRId64,
        (bad + seen) ? "FAIL" : "PASS", npages, bad + seen, first);
    if (bad + seen)
        out("QMPCTL selfcheck-detail page=%" PRId64 " expected_seq=%" PRIu64 " found_seq=%" PRIu64
            " kind=%s scan_bad=%" PRIu64 " seen_bad=%" PRIu64, first, f_exp, f_found,
            kinds[f_kind], bad, seen);
    resume_all();
}

static void lose_write(void)
{
    size_t p = npages / 2;
    pause_all();
    volatile uint64_t *w = (volatile uint64_t *)(buf + p * page_size);
    if (shadow[p] == 0) { /* never written yet: make it look one write behind */
        write_page(p);
    }
    uint64_t seq = shadow[p] - 1;
    w[0] = seq;
    w[page_size / 8 - 1] = tail_of(p, seq);
    out("QMPCTL lose-write page=%zu seq=%" PRIu64, p, seq);
    resume_all();
}

static uint64_t total_pages(void)
{
    uint64_t s = 0;
    for (int i = 0; i < opt.threads; i++)
        s += __atomic_load_n(&workers[i].pages_written, __ATOMIC_ACQUIRE);
    return s;
}

static void progress(void)
{
    uint64_t pg = total_pages();
    out("QMPCTL progress t_ms=%" PRIu64 " written_mib=%" PRIu64 " pages=%" PRIu64,
        now_ns() / 1000000ULL, (uint64_t)((double)pg * page_size / 1048576.0), pg);
}

/* virtio device name behind the interface, e.g. "virtio0"; "" if none. */
static void iface_dev(char *dev, size_t len)
{
    char path[256], link[256];
    dev[0] = 0;
    snprintf(path, sizeof(path), "/sys/class/net/%s/device", opt.iface);
    ssize_t n = readlink(path, link, sizeof(link) - 1);
    if (n <= 0)
        return;
    link[n] = 0;
    const char *b = strrchr(link, '/');
    snprintf(dev, len, "%s", b ? b + 1 : link);
}

static uint64_t net_stat(const char *name)
{
    char path[256];
    unsigned long long v = 0;
    snprintf(path, sizeof(path), "/sys/class/net/%s/statistics/%s", opt.iface, name);
    FILE *f = fopen(path, "r");
    if (f) {
        if (fscanf(f, "%llu", &v) != 1)
            v = 0;
        fclose(f);
    }
    return v;
}

static void net_report(int with_info)
{
    char dev[256], prefix[272], line[1024], chip[64] = "none";
    uint64_t sum = 0;
    int lines = 0, ncpu = 0;
    iface_dev(dev, sizeof(dev));
    if (!dev[0]) {
        out("QMPCTL net iface=%s irqs=-1", opt.iface);
        return;
    }
    snprintf(prefix, sizeof(prefix), "%s-", dev);
    FILE *f = fopen("/proc/interrupts", "r");
    if (!f)
        return;
    if (fgets(line, sizeof(line), f))
        for (char *t = strtok(line, " \t\n"); t; t = strtok(NULL, " \t\n"))
            ncpu++;
    while (fgets(line, sizeof(line), f)) {
        /* last token is the action name (virtio0-input.0, ...) */
        char *toks[64];
        int nt = 0;
        for (char *t = strtok(line, " \t\n"); t && nt < 64; t = strtok(NULL, " \t\n"))
            toks[nt++] = t;
        if (nt < ncpu + 2 || strncmp(toks[nt - 1], prefix, strlen(prefix)) != 0)
            continue;
        for (int i = 1; i <= ncpu; i++)
            sum += strtoull(toks[i], NULL, 10);
        snprintf(chip, sizeof(chip), "%s", toks[ncpu + 1]);
        lines++;
    }
    fclose(f);
    out("QMPCTL net iface=%s irqs=%" PRIu64, opt.iface, sum);
    if (with_info)
        out("QMPCTL netinfo iface=%s dev=%s lines=%d chip=%s rx_packets=%" PRIu64
            " tx_packets=%" PRIu64, opt.iface, dev, lines, chip, net_stat("rx_packets"),
            net_stat("tx_packets"));
}

static uint64_t parse_size(const char *s)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || v <= 0)
        die("bad --size %s", s);
    if (*end == '%') {
        struct sysinfo si;
        sysinfo(&si);
        return (uint64_t)((double)si.totalram * si.mem_unit * v / 100.0);
    }
    switch (*end) {
    case 0: case 'M': case 'm': return (uint64_t)(v * 1048576.0);
    case 'G': case 'g': return (uint64_t)(v * 1073741824.0);
    case 'K': case 'k': return (uint64_t)(v * 1024.0);
    }
    die("bad --size %s", s);
    return 0;
}

static void parse_args(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        char key[64];
        const char *eq = strchr(a, '=');
        if (strncmp(a, "--", 2) != 0)
            die("unexpected argument %s", a);
        if (eq) {
            snprintf(key, sizeof(key), "%.*s", (int)(eq - a), a);
            v = eq + 1;
        } else {
            snprintf(key, sizeof(key), "%s", a);
            if (i + 1 < argc)
                v = argv[++i];
        }
        if (!v)
            die("missing value for %s", key);
        if (!strcmp(key, "--workload")) {
            int ok = 0;
            for (int w = 0; w < 5; w++)
                if (!strcmp(v, wl_names[w])) {
                    opt.workload = w;
                    ok = 1;
                }
            if (!ok)
                die("unknown workload %s", v);
        } else if (!strcmp(key, "--size")) {
            opt.size_bytes = parse_size(v);
        } else if (!strcmp(key, "--threads")) {
            opt.threads = atoi(v);
        } else if (!strcmp(key, "--interval-ms")) {
            opt.interval_ms = atoi(v);
        } else if (!strcmp(key, "--hot")) {
            if (sscanf(v, "%d,%d", &opt.hot_pct, &opt.hot_writes) != 2 || opt.hot_pct < 1 ||
                opt.hot_pct > 100 || opt.hot_writes < 0 || opt.hot_writes > 100)
                die("bad --hot %s (want X,Y percent)", v);
        } else if (!strcmp(key, "--rate")) {
            opt.rate_mib = strtod(v, NULL);
            if (opt.rate_mib <= 0)
                die("bad --rate %s", v);
        } else if (!strcmp(key, "--write-pct")) {
            opt.write_pct = atoi(v);
        } else if (!strcmp(key, "--net-interval-s")) {
            opt.net_interval_s = atoi(v);
        } else if (!strcmp(key, "--iface")) {
            opt.iface = v;
        } else if (!strcmp(key, "--seed")) {
            opt.seed = strtoull(v, NULL, 0);
        } else {
            die("unknown option %s", key);
        }
    }
    if (opt.interval_ms < 10)
        opt.interval_ms = 10;
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    int cpus = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus < 1)
        cpus = 1;
    if (opt.threads <= 0)
        opt.threads = cpus;
    page_size = (size_t)sysconf(_SC_PAGESIZE);
    npages = (opt.size_bytes + page_size - 1) / page_size;
    if (npages < (size_t)opt.threads)
        npages = opt.threads;

    buf = mmap(NULL, npages * page_size, PROT_READ | PROT_WRITE,
               MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    shadow = mmap(NULL, npages * sizeof(uint64_t), PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (buf == MAP_FAILED || shadow == MAP_FAILED)
        die("cannot allocate %zu pages: %s", npages, strerror(errno));
    int locked = mlock(buf, npages * page_size) == 0 &&
                 mlock(shadow, npages * sizeof(uint64_t)) == 0;
    /* Touch every page: header, index word, tail (sequence 0). */
    for (size_t p = 0; p < npages; p++) {
        uint64_t *w = (uint64_t *)(buf + p * page_size);
        shadow[p] = 0;
        w[0] = 0;
        w[1] = (uint64_t)p ^ MAGIC_IDX;
        w[page_size / 8 - 1] = tail_of(p, 0);
    }

    if (isatty(0)) {
        struct termios t;
        if (tcgetattr(0, &t) == 0) {
            t.c_lflag &= ~(ICANON | ECHO | ECHONL);
            t.c_iflag &= ~(ICRNL | IXON);
            t.c_cc[VMIN] = 1;
            t.c_cc[VTIME] = 0;
            tcsetattr(0, TCSANOW, &t);
        }
    }

    out("QMPCTL info page_size=%zu pages=%zu mlock=%s cpus=%d", page_size, npages,
        locked ? "ok" : "failed", cpus);
    workers = calloc(opt.threads, sizeof(*workers));
    size_t per = npages / opt.threads, extra = npages % opt.threads, at = 0;
    for (int i = 0; i < opt.threads; i++) {
        workers[i].id = i;
        workers[i].first = at;
        workers[i].count = per + ((size_t)i < extra);
        at += workers[i].count;
        workers[i].rng = (opt.seed + 1) * 0x9E3779B97F4A7C15ULL + (uint64_t)(i + 1) * 0xBF58476D1CE4E5B9ULL;
        if (!workers[i].rng)
            workers[i].rng = 1;
        if (pthread_create(&workers[i].tid, NULL, writer, &workers[i]))
            die("pthread_create failed");
    }
    out("QMPCTL guestload v1 workload=%s size_mib=%" PRIu64 " threads=%d ready",
        wl_names[opt.workload], (uint64_t)npages * page_size >> 20, opt.threads);

    uint64_t next_prog = now_ns() + (uint64_t)opt.interval_ms * 1000000ULL;
    uint64_t net_ns = (uint64_t)opt.net_interval_s * 1000000000ULL;
    uint64_t next_net = net_ns ? now_ns() + net_ns : UINT64_MAX;
    int reported_bad = 0, stdin_open = 1;
    net_report(1);
    for (;;) {
        uint64_t t = now_ns();
        if (t >= next_prog) {
            progress();
            next_prog += (uint64_t)opt.interval_ms * 1000000ULL;
            if (next_prog <= t) /* fell behind (e.g. VM stopped): re-phase */
                next_prog = t + (uint64_t)opt.interval_ms * 1000000ULL;
        }
        if (t >= next_net) {
            net_report(0);
            next_net = t + net_ns;
        }
        if (!reported_bad && __atomic_load_n(&det_first_set, __ATOMIC_ACQUIRE)) {
            out("QMPCTL lostwrite page=%" PRId64 " expected_seq=%" PRIu64 " found_seq=%" PRIu64,
                det_first, det_exp, det_found);
            reported_bad = 1;
        }
        uint64_t wake = next_prog < next_net ? next_prog : next_net;
        t = now_ns();
        int to = wake > t ? (int)((wake - t + 999999) / 1000000) : 0;
        struct pollfd pfd = {0, POLLIN, 0};
        int r = poll(&pfd, stdin_open ? 1 : 0, to);
        if (r > 0 && (pfd.revents & (POLLIN | POLLHUP | POLLERR))) {
            char cmd[64];
            ssize_t n = read(0, cmd, sizeof(cmd));
            if (n <= 0) {
                stdin_open = 0; /* EOF: keep running, just stop reading */
                continue;
            }
            for (ssize_t i = 0; i < n; i++) {
                switch (cmd[i]) {
                case 'C': case 'c': selfcheck(); break;
                case 'N': case 'n': net_report(1); break;
                case 'P': case 'p': progress(); break;
                case 'L': lose_write(); break;
                default: break;
                }
            }
        }
    }
    return 0;
}
