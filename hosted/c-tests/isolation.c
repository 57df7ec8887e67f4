/* Isolation between clients, tested the way an attacker would try it.
 *
 * Run with no arguments (the coordinator, which maps nothing itself), or with
 * "--attacker-uid UID" (as root) to run the attacker as another user. It starts two
 * fresh processes of this program (fork + exec, so neither inherits anything of the
 * other's memory runtime):
 *   - the owner maps private anonymous memory and a 0600 shm object, writes a random
 *     32-byte secret in each, writes a third secret in a page it then unmaps (a freed
 *     frame while the owner lives), and waits;
 *   - the attacker maps a little memory of its own (so it holds whatever a client holds),
 *     then scans every fd in /proc/self/fd: it fstat()s each and maps it with the RAW
 *     system call (syscall(SYS_mmap), which no runtime intercepts), MAP_SHARED then
 *     MAP_PRIVATE, read-only, sized from fstat or probed up to a bound, and searches
 *     every readable byte for the secrets.
 * Then the owner exits (its shm object unlinked) and the attacker scans again, allocates
 * and touches 128 MiB of fresh memory (which must read zero and hold no secret) and scans
 * once more. Every scan must find 0 secrets.
 *
 * Portable Linux C: with -DMEMSERVER_STANDARD_NAMES and memserver's include directory the
 * <sys/mman.h> calls go to memserverd; without, it is a plain Linux program (and passes).
 * Prints "N passed, N failed"; exits non-zero on failure. alarm() watchdogs bound every
 * process. */
#define _GNU_SOURCE
#include <sys/mman.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <grp.h>
#include <limits.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "check.h"

#define PAGE 4096L
#define SECRET_LEN 32
#define NSECRETS 3
#define WATCHDOG_SECONDS 120
#define PROBE_BOUND (64L << 20)  /* size tried for an fd whose fstat size is 0 */
#define SEGMENT (1L << 30)       /* the most of a file mapped at once */
#define CHUNK (1L << 20)
#define ALLOC_TOTAL (128L << 20) /* fresh memory the attacker takes after the owner exits */
#define ALLOC_STEP (16L << 20)

static const char *secret_names[NSECRETS] = {"private anonymous", "0600 shm object",
                                             "unmapped (freed) page"};



/* ---- watchdog ---- */

static const char *volatile role = "coordinator";
static volatile pid_t kill_on_timeout[2];


static void on_alarm(int sig) {
    (void)sig;
    put("TIMEOUT: watchdog fired in the ");
    put(role);
    put("\n");
    for (int i = 0; i < 2; i++)
        if (kill_on_timeout[i] > 0)
            kill(kill_on_timeout[i], SIGKILL);
    _exit(124);
}

static void watchdog(const char *who) {
    role = who;
    signal(SIGALRM, on_alarm);
    alarm(WATCHDOG_SECONDS);
}

/* ---- small helpers ---- */

static void write_line(int fd, const char *s) {
    size_t n = strlen(s);
    while (n > 0) {
        ssize_t w = write(fd, s, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        s += w;
        n -= (size_t)w;
    }
}

/* Reads one line (without the newline); -1 at end of file. */
static int read_line(int fd, char *buf, size_t cap) {
    size_t n = 0;
    for (;;) {
        char c;
        ssize_t r = read(fd, &c, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return n > 0 ? (int)n : -1;
        if (c == '\n')
            break;
        if (n + 1 < cap)
            buf[n++] = c;
    }
    buf[n] = 0;
    return (int)n;
}

static void to_hex(const unsigned char *b, char *out) {
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < SECRET_LEN; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * SECRET_LEN] = 0;
}

static int from_hex(const char *s, unsigned char *b) {
    if (strlen(s) != 2 * SECRET_LEN)
        return -1;
    for (int i = 0; i < SECRET_LEN; i++) {
        unsigned v;
        if (sscanf(s + 2 * i, "%2x", &v) != 1)
            return -1;
        b[i] = (unsigned char)v;
    }
    return 0;
}

static void random_bytes(unsigned char *b, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = getrandom(b + got, n - got, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    if (got < n) { /* no getrandom: still unpredictable enough for a test */
        unsigned long long x = (unsigned long long)time(NULL) ^ ((unsigned long long)getpid() << 32);
        for (; got < n; got++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b[got] = (unsigned char)x;
        }
    }
}

/* ---- owner ---- */

static int owner(int in, int out) {
    watchdog("owner");
    unsigned char secret[NSECRETS][SECRET_LEN];
    random_bytes(&secret[0][0], sizeof secret);
    unsigned char where[3];
    random_bytes(where, sizeof where);

    char *priv = mmap(NULL, 16 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char name[64];
    snprintf(name, sizeof name, "/isolation-owner-%d", (int)getpid());
    shm_unlink(name);
    int fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR, 0600);
    char *shm = MAP_FAILED;
    if (fd >= 0 && ftruncate(fd, 4 * PAGE) == 0)
        shm = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    char *gone = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (priv == MAP_FAILED || shm == MAP_FAILED || gone == MAP_FAILED) {
        char msg[128];
        snprintf(msg, sizeof msg, "failed setup errno=%d\n", errno);
        write_line(out, msg);
        return 1;
    }
    /* Secrets at random 32-byte-aligned places, the rest of each page left zero. */
    char *at[NSECRETS] = {priv + 5 * PAGE + (where[0] % 128) * 32, shm + 2 * PAGE + (where[1] % 128) * 32,
                          gone + 1 * PAGE + (where[2] % 128) * 32};
    for (int i = 0; i < NSECRETS; i++)
        memcpy(at[i], secret[i], SECRET_LEN);
    int ok = memcmp(at[0], secret[0], SECRET_LEN) == 0 && memcmp(at[1], secret[1], SECRET_LEN) == 0 &&
             memcmp(at[2], secret[2], SECRET_LEN) == 0;
    if (munmap(gone, 4 * PAGE) != 0 || !ok) {
        write_line(out, "failed to write or free its secrets\n");
        return 1;
    }

    char line[256], hex[NSECRETS][2 * SECRET_LEN + 1];
    for (int i = 0; i < NSECRETS; i++)
        to_hex(secret[i], hex[i]);
    snprintf(line, sizeof line, "secrets %s %s %s\n", hex[0], hex[1], hex[2]);
    write_line(out, line);

    /* Wait for "exit" (or the coordinator's end). The secrets stay mapped meanwhile. */
    while (read_line(in, line, sizeof line) >= 0 && strcmp(line, "exit") != 0) {
    }
    /* Our own data is still ours. */
    ok = memcmp(at[0], secret[0], SECRET_LEN) == 0 && memcmp(at[1], secret[1], SECRET_LEN) == 0;
    munmap(shm, 4 * PAGE);
    close(fd);
    shm_unlink(name);
    return ok ? 0 : 1; /* the private mapping is freed by the exit */
}

/* ---- attacker ---- */

static unsigned char secrets[NSECRETS][SECRET_LEN];

struct scan {
    int fds, mapped;
    long long bytes;
    int found[NSECRETS];
};

static void count_matches(const char *buf, size_t len, int found[NSECRETS]) {
    for (int s = 0; s < NSECRETS; s++) {
        const char *p = buf;
        size_t left = len;
        for (;;) {
            const char *hit = memmem(p, left, secrets[s], SECRET_LEN);
            if (!hit)
                break;
            found[s]++;
            left -= (size_t)(hit + 1 - p);
            p = hit + 1;
        }
    }
}

/* Copies from our own address space without ever faulting: an unreadable page (past a
   file's end, say) makes process_vm_readv stop short instead of raising a signal. */
static ssize_t read_self(const char *from, char *to, size_t len) {
    struct iovec local = {to, len};
    struct iovec remote = {(void *)from, len};
    return process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
}

/* Searches every readable byte of [m, m + size) for the secrets; returns the bytes read. */
static long long search(const char *m, size_t size, int found[NSECRETS]) {
    static char buf[CHUNK + SECRET_LEN];
    size_t carry = 0, off = 0;
    long long total = 0;
    while (off < size) {
        size_t want = size - off < (size_t)CHUNK ? size - off : (size_t)CHUNK;
        ssize_t got = read_self(m + off, buf + carry, want);
        if (got <= 0) { /* an unreadable page: skip it */
            carry = 0;
            off += PAGE;
            continue;
        }
        total += got;
        size_t have = carry + (size_t)got;
        count_matches(buf, have, found);
        /* Keep the last SECRET_LEN - 1 bytes: a secret straddling two reads is still seen
           (and none is counted twice, as a match needs SECRET_LEN bytes). */
        carry = have < SECRET_LEN - 1 ? have : SECRET_LEN - 1;
        memmove(buf, buf + have - carry, carry);
        off += (size_t)got;
    }
    return total;
}

/* Maps [off, off + len) of `fd` read-only with the raw system call, `kind` being
   MAP_SHARED or MAP_PRIVATE, and searches it; -1 if it cannot be mapped. */
static long long map_and_search(int fd, int kind, off_t off, size_t len, int found[NSECRETS]) {
    long m = syscall(SYS_mmap, 0L, len, PROT_READ, kind, fd, (long)off);
    if (m == -1)
        return -1;
    long long n = search((const char *)m, len, found);
    syscall(SYS_munmap, m, len);
    return n;
}

/* Searches all of `fd` mapped as `kind`; whether it could be mapped at all. A regular file
   (a memfd is one) is read where it holds data only (SEEK_DATA / SEEK_HOLE), a segment at a
   time: a sparse object of any size is scanned in full without touching its holes, which
   would make the kernel allocate pages for them. Anything else is mapped from offset 0 for
   its fstat size, or PROBE_BOUND when that is 0, and read until it stops being readable. */
static int scan_fd(int fd, const struct stat *st, int kind, struct scan *r) {
    size_t size = st->st_size > 0 ? ((size_t)st->st_size + PAGE - 1) & ~(size_t)(PAGE - 1) : (size_t)PROBE_BOUND;
    if (!S_ISREG(st->st_mode) || lseek(fd, 0, SEEK_HOLE) < 0) {
        long long n = map_and_search(fd, kind, 0, size, r->found);
        if (n >= 0)
            r->bytes += n;
        return n >= 0;
    }
    /* Can it be mapped at all? */
    long probe = syscall(SYS_mmap, 0L, PAGE, PROT_READ, kind, fd, 0L);
    if (probe == -1)
        return 0;
    syscall(SYS_munmap, probe, PAGE);
    off_t pos = 0;
    while ((size_t)pos < size) {
        off_t data = lseek(fd, pos, SEEK_DATA);
        if (data < 0 || (size_t)data >= size)
            break; /* ENXIO: no data past pos */
        off_t hole = lseek(fd, data, SEEK_HOLE);
        if (hole <= data || (size_t)hole > size)
            hole = (off_t)size;
        for (off_t at = data; at < hole; at += SEGMENT) {
            size_t len = hole - at < SEGMENT ? (size_t)(hole - at) : (size_t)SEGMENT;
            long long n = map_and_search(fd, kind, at, len, r->found);
            if (n > 0)
                r->bytes += n;
        }
        pos = hole;
    }
    return 1;
}

static void scan_fds(struct scan *r) {
    memset(r, 0, sizeof *r);
    int fds[4096], n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return;
    int own = dirfd(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < 4096) {
        if (e->d_name[0] == '.')
            continue;
        int fd = atoi(e->d_name);
        if (fd != own)
            fds[n++] = fd;
    }
    closedir(d);
    for (int i = 0; i < n; i++) {
        struct stat st;
        if (syscall(SYS_fstat, fds[i], &st) != 0)
            continue;
        r->fds++;
        r->mapped += scan_fd(fds[i], &st, MAP_SHARED, r);
        r->mapped += scan_fd(fds[i], &st, MAP_PRIVATE, r);
    }
}

static void report_scan(int out, const char *what) {
    struct scan r;
    scan_fds(&r);
    char line[256];
    snprintf(line, sizeof line, "%s fds=%d mapped=%d bytes=%lld found=%d,%d,%d\n", what, r.fds, r.mapped,
             r.bytes, r.found[0], r.found[1], r.found[2]);
    write_line(out, line);
}

/* Takes fresh memory (as much as ALLOC_TOTAL, fewer if the server refuses), touches every
   page and checks it reads zero and holds no secret. */
static void report_alloc(int out) {
    long long bytes = 0;
    int nonzero = 0, found[NSECRETS] = {0, 0, 0};
    while (bytes < ALLOC_TOTAL) {
        char *p = mmap(NULL, ALLOC_STEP, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            break;
        for (long off = 0; off < ALLOC_STEP; off += PAGE) {
            p[off + PAGE - 1] = 0; /* a write: a frame of its own, contents unchanged */
            for (long i = 0; i < PAGE; i++)
                if (p[off + i] != 0) {
                    nonzero++;
                    break;
                }
        }
        count_matches(p, ALLOC_STEP, found);
        bytes += ALLOC_STEP; /* kept mapped, so later steps get other frames */
    }
    char line[256];
    snprintf(line, sizeof line, "alloc bytes=%lld nonzero_pages=%d found=%d,%d,%d\n", bytes, nonzero, found[0],
             found[1], found[2]);
    write_line(out, line);
}

static int attacker(int in, int out) {
    watchdog("attacker");
    /* Become a client like any other: some private memory and a shm object of our own. */
    char *mine = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char name[64];
    snprintf(name, sizeof name, "/isolation-attacker-%d", (int)getpid());
    shm_unlink(name);
    int fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR, 0600);
    char *obj = MAP_FAILED;
    if (fd >= 0 && ftruncate(fd, 2 * PAGE) == 0)
        obj = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (mine == MAP_FAILED || obj == MAP_FAILED) {
        char msg[128];
        snprintf(msg, sizeof msg, "ready failed: own memory errno=%d\n", errno);
        write_line(out, msg);
        return 1;
    }
    mine[0] = 1;
    obj[0] = 1;
    shm_unlink(name);
    write_line(out, "ready ok\n");

    char line[512], hex[NSECRETS][2 * SECRET_LEN + 8];
    while (read_line(in, line, sizeof line) >= 0) {
        if (sscanf(line, "secrets %70s %70s %70s", hex[0], hex[1], hex[2]) == 3) {
            int ok = 1;
            for (int i = 0; i < NSECRETS; i++)
                ok &= from_hex(hex[i], secrets[i]) == 0;
            write_line(out, ok ? "secrets ok\n" : "secrets bad\n");
        } else if (strcmp(line, "scan") == 0)
            report_scan(out, "scan");
        else if (strcmp(line, "alloc") == 0)
            report_alloc(out);
        else
            break;
    }
    return 0;
}

/* ---- coordinator ---- */

static char self_path[PATH_MAX];

/* Starts this program again with `argv`, as user `uid` if it is not -1. */
static pid_t spawn(char **argv, int keep_a, int keep_b, long uid) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        fcntl(keep_a, F_SETFD, 0); /* these two survive the exec; every other pipe end is */
        fcntl(keep_b, F_SETFD, 0); /* O_CLOEXEC */
        if (uid != -1 && (setgroups(0, NULL) != 0 || setgid((gid_t)uid) != 0 || setuid((uid_t)uid) != 0)) {
            perror("becoming the attacker's user");
            _exit(126);
        }
        execv(self_path, argv);
        _exit(127);
    }
    return pid;
}

static int exited_zero(pid_t pid, const char *who) {
    int status;
    if (waitpid(pid, &status, 0) != pid)
        return 0;
    if (WIFSIGNALED(status))
        printf("%s: killed by signal %d\n", who, WTERMSIG(status));
    else if (WEXITSTATUS(status) != 0)
        printf("%s: exit status %d\n", who, WEXITSTATUS(status));
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* Sends a command to the attacker and checks the scan it reports finds nothing. */
static void attack(int to, int from, const char *cmd, const char *when) {
    char line[256];
    write_line(to, cmd);
    if (read_line(from, line, sizeof line) < 0) {
        CHECK(0, "the attacker answers (%s)", when);
        return;
    }
    printf("attacker, %s: %s\n", when, line);
    int found[NSECRETS] = {-1, -1, -1}, nonzero = 0;
    const char *f = strstr(line, "found=");
    CHECK(f && sscanf(f, "found=%d,%d,%d", &found[0], &found[1], &found[2]) == 3, "a well-formed report: %s",
          line);
    for (int i = 0; i < NSECRETS; i++)
        CHECK(found[i] == 0, "%s: the %s secret was found %d times", when, secret_names[i], found[i]);
    const char *z = strstr(line, "nonzero_pages=");
    if (z) {
        sscanf(z, "nonzero_pages=%d", &nonzero);
        CHECK(nonzero == 0, "%s: %d freshly allocated pages were not zero", when, nonzero);
    }
}

static int coordinator(long attacker_uid) {
    watchdog("coordinator");
    setvbuf(stdout, NULL, _IOLBF, 0);
    ssize_t len = readlink("/proc/self/exe", self_path, sizeof self_path - 1);
    if (len <= 0) {
        perror("readlink /proc/self/exe");
        return 2;
    }
    self_path[len] = 0;
    if (attacker_uid != -1)
        printf("the attacker runs as uid %ld, the owner as uid %d\n", attacker_uid, (int)getuid());
    int to_owner[2], from_owner[2], to_attacker[2], from_attacker[2];
    if (pipe2(to_owner, O_CLOEXEC) || pipe2(from_owner, O_CLOEXEC) || pipe2(to_attacker, O_CLOEXEC) ||
        pipe2(from_attacker, O_CLOEXEC)) {
        perror("pipe2");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN); /* a dead peer shows as a failed check */

    /* The attacker first: it is a client already when the owner maps, writes and frees. */
    char a[16], b[16];
    snprintf(a, sizeof a, "%d", to_attacker[0]);
    snprintf(b, sizeof b, "%d", from_attacker[1]);
    char *attacker_argv[] = {"isolation", "attacker", a, b, NULL};
    pid_t attacker_pid = spawn(attacker_argv, to_attacker[0], from_attacker[1], attacker_uid);
    kill_on_timeout[1] = attacker_pid;
    close(to_attacker[0]);
    close(from_attacker[1]);
    char line[512];
    int got = read_line(from_attacker[0], line, sizeof line);
    int ready = got > 0 && strcmp(line, "ready ok") == 0;
    CHECK(ready, "the attacker set itself up (it said: %s)", got > 0 ? line : "nothing");

    pid_t owner_pid = 0;
    if (ready) {
        snprintf(a, sizeof a, "%d", to_owner[0]);
        snprintf(b, sizeof b, "%d", from_owner[1]);
        char *owner_argv[] = {"isolation", "owner", a, b, NULL};
        owner_pid = spawn(owner_argv, to_owner[0], from_owner[1], -1);
        kill_on_timeout[0] = owner_pid;
        close(to_owner[0]); /* the owner's ends: its death reads as end of file */
        close(from_owner[1]);
        to_owner[0] = from_owner[1] = -1;
        got = read_line(from_owner[0], line, sizeof line);
        char hex[NSECRETS][2 * SECRET_LEN + 8];
        int have_secrets = got > 0 && sscanf(line, "secrets %70s %70s %70s", hex[0], hex[1], hex[2]) == 3;
        CHECK(have_secrets, "the owner wrote its secrets (it said: %s)", got > 0 ? line : "nothing");
        if (have_secrets) {
            /* The secrets go to the attacker only so that it knows what to look for. */
            write_line(to_attacker[1], line);
            write_line(to_attacker[1], "\n");
            got = read_line(from_attacker[0], line, sizeof line);
            CHECK(got > 0 && strcmp(line, "secrets ok") == 0, "the attacker took the secrets (it said: %s)",
                  got > 0 ? line : "nothing");

            attack(to_attacker[1], from_attacker[0], "scan\n", "scanning its fds while the owner runs");
            write_line(to_owner[1], "exit\n");
            CHECK(exited_zero(owner_pid, "owner"), "the owner exits cleanly");
            owner_pid = 0;
            sleep(1); /* lets a server notice the exit and free the owner's frames */
            attack(to_attacker[1], from_attacker[0], "scan\n", "scanning its fds after the owner exited");
            attack(to_attacker[1], from_attacker[0], "alloc\n", "in fresh memory after the owner exited");
            attack(to_attacker[1], from_attacker[0], "scan\n", "scanning its fds after allocating");
        }
    }
    if (to_owner[0] >= 0) {
        close(to_owner[0]);
        close(from_owner[1]);
    }
    close(to_owner[1]);
    if (owner_pid > 0)
        exited_zero(owner_pid, "owner");
    close(to_attacker[1]);
    CHECK(exited_zero(attacker_pid, "attacker"), "the attacker exits cleanly");
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "owner") == 0)
        return owner(atoi(argv[2]), atoi(argv[3]));
    if (argc == 4 && strcmp(argv[1], "attacker") == 0)
        return attacker(atoi(argv[2]), atoi(argv[3]));
    if (argc == 3 && strcmp(argv[1], "--attacker-uid") == 0)
        return coordinator(atol(argv[2]));
    if (argc != 1) {
        fprintf(stderr, "usage: %s [--attacker-uid UID]\n", argv[0]);
        return 2;
    }
    return coordinator(-1);
}
