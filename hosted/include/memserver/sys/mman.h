/* <sys/mman.h> for programs run against memserverd.
 *
 * Put this directory first on the include path (-I hosted/include/memserver) and link
 * libmemserver_hosted.a: the ms_* functions below talk to the server named by the
 * MEMSERVER_SOCKET environment variable. Define MEMSERVER_STANDARD_NAMES (before any
 * include, e.g. -DMEMSERVER_STANDARD_NAMES) to have mmap, munmap, ..., shm_open,
 * ftruncate, close and fstat mean the ms_* functions, so a program written against
 * <sys/mman.h> compiles unchanged. close, ftruncate and fstat pass fds that are not the
 * server's on to libc. Constants are Linux x86_64's, plus MAP_WC (0x400, write-combining
 * device windows). */
#ifndef MEMSERVER_SYS_MMAN_H
#define MEMSERVER_SYS_MMAN_H

#ifdef MEMSERVER_STANDARD_NAMES
#define mmap ms_mmap
#define munmap ms_munmap
#define mprotect ms_mprotect
#define mremap ms_mremap
#define madvise ms_madvise
#define msync ms_msync
#define mlock ms_mlock
#define munlock ms_munlock
#define mlockall ms_mlockall
#define munlockall ms_munlockall
#define shm_open ms_shm_open
#define shm_unlink ms_shm_unlink
#define ftruncate ms_ftruncate
#define close ms_close
#define fstat ms_fstat
#endif

#include <stddef.h>
#include <sys/types.h>
#include <sys/stat.h>

#define PROT_NONE 0x0
#define PROT_READ 0x1
#define PROT_WRITE 0x2
#define PROT_EXEC 0x4

#define MAP_SHARED 0x01
#define MAP_PRIVATE 0x02
#define MAP_FIXED 0x10
#define MAP_ANONYMOUS 0x20
#define MAP_ANON MAP_ANONYMOUS
#define MAP_FILE 0
#define MAP_32BIT 0x40
#define MAP_INHERIT 0x80
#define MAP_GROWSDOWN 0x0100
#define MAP_HASSEMAPHORE 0x0200
#define MAP_WC 0x0400
#define MAP_DENYWRITE 0x0800
#define MAP_EXECUTABLE 0x1000
#define MAP_LOCKED 0x2000
#define MAP_NORESERVE 0x4000
#define MAP_POPULATE 0x8000
#define MAP_NONBLOCK 0x10000
#define MAP_STACK 0x20000
#define MAP_FIXED_NOREPLACE 0x100000
#define MAP_FAILED ((void *)-1)

#define MS_ASYNC 1
#define MS_INVALIDATE 2
#define MS_SYNC 4

#define MREMAP_MAYMOVE 1
#define MREMAP_FIXED 2
#define MREMAP_DONTUNMAP 4

#define MADV_NORMAL 0
#define MADV_RANDOM 1
#define MADV_SEQUENTIAL 2
#define MADV_WILLNEED 3
#define MADV_DONTNEED 4
#define MADV_FREE 8
#define MADV_DONTFORK 10
#define MADV_DOFORK 11

#define MCL_CURRENT 1
#define MCL_FUTURE 2
#define MCL_ONFAULT 4

#ifdef __cplusplus
extern "C" {
#endif

void *ms_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
int ms_munmap(void *addr, size_t len);
int ms_mprotect(void *addr, size_t len, int prot);
void *ms_mremap(void *old_addr, size_t old_len, size_t new_len, int flags, ... /* void *new_addr */);
int ms_madvise(void *addr, size_t len, int advice);
int ms_msync(void *addr, size_t len, int flags);
int ms_mlock(const void *addr, size_t len);
int ms_munlock(const void *addr, size_t len);
int ms_mlockall(int flags);
int ms_munlockall(void);
int ms_shm_open(const char *name, int oflag, mode_t mode);
int ms_shm_unlink(const char *name);
/* Opens a file of the memory server's file server (its pager) for mapping: O_RDONLY or
   O_RDWR, optionally O_TRUNC. The fd takes ms_mmap, ms_ftruncate, ms_fstat, ms_close. */
int ms_open_file(const char *path, int oflag);
int ms_ftruncate(int fd, off_t len);
int ms_close(int fd);
int ms_fstat(int fd, struct stat *st);

#ifdef __cplusplus
}
#endif

#endif
