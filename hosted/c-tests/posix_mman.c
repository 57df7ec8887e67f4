/* A POSIX conformance-style test of <sys/mman.h>, written against the standard names:
 * it compiles unchanged against memserverd (-DMEMSERVER_STANDARD_NAMES, our include
 * directory first, libmemserver_hosted.a on the link line). Prints "N passed, N failed"
 * and exits non-zero on any failure. */
#include <sys/mman.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "check.h"



#define EXPECT_ERRNO(call, err, what)                                                  \
    do {                                                                               \
        errno = 0;                                                                     \
        int r_ = (call);                                                               \
        CHECK(r_ == -1 && errno == (err), what);                                       \
    } while (0)

int main(void) {
    long page = 4096;

    /* Anonymous memory: zero-filled, writable, unmappable. */
    char *p = mmap(NULL, 3 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED, "mmap anonymous");
    CHECK(((unsigned long)p & (page - 1)) == 0, "page-aligned address");
    CHECK(p[0] == 0 && p[2 * page + 7] == 0, "zero-filled");
    strcpy(p + page, "hello");
    CHECK(strcmp(p + page, "hello") == 0, "data written and read back");
    CHECK(mprotect(p, page, PROT_READ) == 0, "mprotect read-only");
    CHECK(mlock(p + page, page) == 0, "mlock");
    CHECK(munlock(p + page, page) == 0, "munlock");
    CHECK(msync(p, page, MS_SYNC) == 0, "msync");
    CHECK(munmap(p, 3 * page) == 0, "munmap");

    /* Errors, with errno. */
    errno = 0;
    CHECK(mmap(NULL, 0, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) == MAP_FAILED && errno == EINVAL,
          "mmap length 0 is EINVAL");
    errno = 0;
    CHECK(mmap(NULL, page, PROT_READ, MAP_SHARED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) == MAP_FAILED &&
              errno == EINVAL,
          "MAP_SHARED|MAP_PRIVATE is EINVAL");
    errno = 0;
    CHECK(mmap(NULL, page, PROT_READ, MAP_SHARED, -1, 0) == MAP_FAILED && errno == EBADF,
          "file mapping without an fd is EBADF");
    EXPECT_ERRNO(munmap((void *)0x200000000001UL, page), EINVAL, "munmap unaligned is EINVAL");
    EXPECT_ERRNO(msync(p, page, MS_SYNC | MS_ASYNC), EINVAL, "MS_SYNC|MS_ASYNC is EINVAL");
    EXPECT_ERRNO(mprotect(p, page, PROT_READ), ENOMEM, "mprotect of unmapped memory is ENOMEM");
    EXPECT_ERRNO(mlockall(0), EINVAL, "mlockall(0) is EINVAL");

    /* Shared memory objects. */
    shm_unlink("/posix-mman-test");
    int fd = shm_open("/posix-mman-test", O_CREAT | O_EXCL | O_RDWR, 0600);
    CHECK(fd >= 0, "shm_open O_CREAT|O_EXCL");
    EXPECT_ERRNO(shm_open("/posix-mman-test", O_CREAT | O_EXCL | O_RDWR, 0600), EEXIST, "O_EXCL again is EEXIST");
    EXPECT_ERRNO(shm_open("/no-such-object", O_RDWR, 0), ENOENT, "missing object is ENOENT");
    CHECK(ftruncate(fd, 2 * page) == 0, "ftruncate");
    struct stat st;
    CHECK(fstat(fd, &st) == 0 && st.st_size == 2 * page, "fstat size");
    char *a = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    char *b = mmap(NULL, 2 * page, PROT_READ, MAP_SHARED, fd, 0);
    CHECK(a != MAP_FAILED && b != MAP_FAILED && a != b, "two shared mappings");
    a[page + 3] = 'x';
    CHECK(b[page + 3] == 'x', "a write through one is seen through the other");
    CHECK(shm_unlink("/posix-mman-test") == 0, "shm_unlink");
    CHECK(a[page + 3] == 'x', "data survives the unlink while mapped");
    CHECK(close(fd) == 0, "close");
    EXPECT_ERRNO(close(fd), EBADF, "close twice is EBADF");
    EXPECT_ERRNO(shm_unlink("/posix-mman-test"), ENOENT, "unlink twice is ENOENT");
    CHECK(munmap(a, 2 * page) == 0 && munmap(b, 2 * page) == 0, "munmap shared");

    /* A file of the server's file server: the conformance fixture's /conf/text, 10000
       bytes, byte i = (i * 7) ^ ((i >> 12) * 29) ^ 1. */
    int tf = ms_open_file("/conf/text", O_RDONLY);
    CHECK(tf >= 0, "ms_open_file");
    CHECK(fstat(tf, &st) == 0 && st.st_size == 10000 && S_ISREG(st.st_mode), "fstat of a file");
    unsigned char *t = mmap(NULL, 3 * page, PROT_READ, MAP_PRIVATE, tf, 0);
    CHECK(t != MAP_FAILED, "mmap of a file");
    int same = 1;
    for (long i = 0; i < 10000; i += 37)
        same &= t[i] == (unsigned char)((i * 7) ^ ((i >> 12) * 29) ^ 1);
    CHECK(same, "the file's contents");
    CHECK(t[10000] == 0 && t[3 * page - 1] == 0, "the last page's tail is zero");
    EXPECT_ERRNO(ms_open_file("/conf/text", O_RDWR), EACCES, "a read-only file for writing is EACCES");
    EXPECT_ERRNO(ms_open_file("/conf/nothing", O_RDONLY), ENOENT, "a missing file is ENOENT");
    CHECK(munmap(t, 3 * page) == 0 && close(tf) == 0, "munmap and close the file");

    /* close/fstat of the program's own fds still reach libc. */
    int devnull = open("/dev/null", O_RDONLY);
    CHECK(devnull >= 0 && fstat(devnull, &st) == 0 && S_ISCHR(st.st_mode), "fstat of a real fd");
    CHECK(close(devnull) == 0, "close of a real fd");

    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
