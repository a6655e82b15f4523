// LD_PRELOAD fault layer for the reliability suite. Preloaded into keg-server, it
//
//  1. journals what a power cut would keep (KEG_FAULT_JOURNAL, KEG_FAULT_DIR, KEG_FAULT_STASH):
//     every file created, renamed or unlinked in the data directory, every fsync / fdatasync of a
//     file there (with the size it made durable) and of the directory itself. Unlinked files and
//     files a rename replaces are hard-linked into the stash first, so a power cut can bring them
//     back. tests/reliability/powerloss.py turns the journal into the directory a power cut at the
//     moment of a SIGKILL would leave. Each record is one write(2) to an O_APPEND file, made after
//     the call it describes returned: it survives the SIGKILL, and a sync that had not returned is
//     treated as not done.
//  2. injects errors (KEG_FAULT_CONTROL): while the control file exists and holds "OP ERRNO" (OP is
//     pwrite or fdatasync), that call fails with that errno on files of the data directory;
//     "fdatasync-delay-ms N" makes every fdatasync / fsync there take N ms longer (a slow disk).
//
// keg writes its files with pwrite and makes them durable with fdatasync / fsync (it never writes
// through its read-only mappings), so these calls see every byte that reaches the data directory.
// Thread-safe: keg calls these from its writer, compaction and I/O threads.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_FDS 65536

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static char* names[MAX_FDS];  // fd -> name inside the data directory ("." for the directory)
static int journal_fd = -1;
static char dir[PATH_MAX];
static size_t dir_len;
static const char* stash;
static const char* control;
static unsigned long stash_seq;

static int (*real_open)(const char*, int, ...);
static int (*real_open64)(const char*, int, ...);
static int (*real_close)(int);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_rename)(const char*, const char*);
static int (*real_unlink)(const char*);
static int (*real_ftruncate)(int, off_t);
static ssize_t (*real_pwrite)(int, const void*, size_t, off_t);
static ssize_t (*real_pwrite64)(int, const void*, size_t, off_t);

__attribute__((constructor)) static void init(void) {
  real_open = dlsym(RTLD_NEXT, "open");
  real_open64 = dlsym(RTLD_NEXT, "open64");
  real_close = dlsym(RTLD_NEXT, "close");
  real_fsync = dlsym(RTLD_NEXT, "fsync");
  real_fdatasync = dlsym(RTLD_NEXT, "fdatasync");
  real_rename = dlsym(RTLD_NEXT, "rename");
  real_unlink = dlsym(RTLD_NEXT, "unlink");
  real_ftruncate = dlsym(RTLD_NEXT, "ftruncate");
  real_pwrite = dlsym(RTLD_NEXT, "pwrite");
  real_pwrite64 = dlsym(RTLD_NEXT, "pwrite64");
  const char* d = getenv("KEG_FAULT_DIR");
  const char* j = getenv("KEG_FAULT_JOURNAL");
  stash = getenv("KEG_FAULT_STASH");
  control = getenv("KEG_FAULT_CONTROL");
  if (d != NULL && realpath(d, dir) == NULL) {  // the directory may not exist yet
    snprintf(dir, sizeof dir, "%s", d);
  }
  dir_len = strlen(dir);
  while (dir_len > 1 && dir[dir_len - 1] == '/') dir[--dir_len] = '\0';
  if (j != NULL) journal_fd = real_open(j, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
}

// The name of `path` inside the data directory, or NULL when it is elsewhere.
static const char* inside(const char* path, char* buf) {
  if (dir_len == 0 || path == NULL) return NULL;
  char abs[PATH_MAX];
  if (path[0] != '/') {
    if (getcwd(abs, sizeof abs) == NULL) return NULL;
    size_t n = strlen(abs);
    snprintf(abs + n, sizeof abs - n, "/%s", path);
  } else {
    snprintf(abs, sizeof abs, "%s", path);
  }
  // Resolve the parent (the file itself may not exist yet).
  char* slash = strrchr(abs, '/');
  char parent[PATH_MAX];
  const char* base;
  if (slash == abs) {
    snprintf(parent, sizeof parent, "/");
  } else {
    *slash = '\0';
    if (realpath(abs, parent) == NULL) return NULL;
  }
  base = slash + 1;
  if (strcmp(parent, dir) == 0) {
    if (*base == '\0' || strcmp(base, ".") == 0) return ".";
    snprintf(buf, PATH_MAX, "%s", base);
    return buf;
  }
  char whole[PATH_MAX];
  snprintf(whole, sizeof whole, "%s/%s", parent, base);
  if (strcmp(whole, dir) == 0) return ".";
  return NULL;
}

static void journal(const char* fmt, ...) {
  if (journal_fd < 0) return;
  char line[PATH_MAX * 3];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (n > 0) (void)!write(journal_fd, line, (size_t)n);
}

// Errno to inject for `op` on a data-directory file, or 0.
static int injected(const char* op) {
  if (control == NULL) return 0;
  int fd = real_open(control, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char buf[64] = {0};
  ssize_t n = read(fd, buf, sizeof buf - 1);
  real_close(fd);
  if (n <= 0) return 0;
  char what[32];
  int err = 0;
  if (sscanf(buf, "%31s %d", what, &err) == 2 && strcmp(what, op) == 0) return err;
  return 0;
}

static const char* tracked(int fd) { return fd >= 0 && fd < MAX_FDS ? names[fd] : NULL; }

// Hard-links `name` into the stash (so a power cut can restore it); returns the stash name's
// number, or 0 when it does not exist.
static unsigned long keep(const char* name) {
  if (stash == NULL) return 0;
  char from[PATH_MAX], to[PATH_MAX];
  snprintf(from, sizeof from, "%s/%s", dir, name);
  unsigned long id = __atomic_add_fetch(&stash_seq, 1, __ATOMIC_RELAXED);
  snprintf(to, sizeof to, "%s/%d-%lu", stash, (int)getpid(), id);
  return link(from, to) == 0 ? id : 0;
}

static int opened(const char* path, int flags, int fd, int existed) {
  char buf[PATH_MAX];
  const char* name = inside(path, buf);
  if (fd < 0 || name == NULL) return fd;
  pthread_mutex_lock(&mu);
  if (fd < MAX_FDS) {
    free(names[fd]);
    names[fd] = strdup(name);
  }
  if ((flags & O_CREAT) && !existed) journal("C %s\n", name);
  pthread_mutex_unlock(&mu);
  return fd;
}

static int do_open(int (*real)(const char*, int, ...), const char* path, int flags, mode_t mode) {
  struct stat st;
  int existed = (flags & O_CREAT) ? stat(path, &st) == 0 : 1;
  int fd = real(path, flags, mode);
  int saved = errno;
  opened(path, flags, fd, existed);
  errno = saved;
  return fd;
}

// open's optional third argument, present when the flags create a file.
#define MODE_ARG(flags, mode)              \
  do {                                     \
    if ((flags) & (O_CREAT | O_TMPFILE)) { \
      va_list ap;                          \
      va_start(ap, flags);                 \
      mode = va_arg(ap, mode_t);           \
      va_end(ap);                          \
    }                                      \
  } while (0)

int open(const char* path, int flags, ...) {
  mode_t mode = 0;
  MODE_ARG(flags, mode);
  return do_open(real_open, path, flags, mode);
}

int open64(const char* path, int flags, ...) {
  mode_t mode = 0;
  MODE_ARG(flags, mode);
  return do_open(real_open64 ? real_open64 : real_open, path, flags, mode);
}

int close(int fd) {
  if (fd >= 0 && fd < MAX_FDS && names[fd] != NULL) {
    pthread_mutex_lock(&mu);
    free(names[fd]);
    names[fd] = NULL;
    pthread_mutex_unlock(&mu);
  }
  return real_close(fd);
}

static int synced(int fd, int (*real)(int)) {
  const char* name = tracked(fd);
  if (name != NULL) {
    int err = injected("fdatasync");
    if (err != 0) {
      errno = err;
      return -1;
    }
    int delay_ms = injected("fdatasync-delay-ms");  // a slow disk
    if (delay_ms > 0) usleep((useconds_t)delay_ms * 1000);
  }
  int r = real(fd);
  int saved = errno;
  if (r == 0 && name != NULL) {
    pthread_mutex_lock(&mu);
    name = tracked(fd);
    if (name != NULL && strcmp(name, ".") == 0) {
      journal("D\n");
    } else if (name != NULL) {
      struct stat st;
      if (fstat(fd, &st) == 0) journal("S %s %lld\n", name, (long long)st.st_size);
    }
    pthread_mutex_unlock(&mu);
  }
  errno = saved;
  return r;
}

int fsync(int fd) { return synced(fd, real_fsync); }
int fdatasync(int fd) { return synced(fd, real_fdatasync); }

int rename(const char* from, const char* to) {
  char b1[PATH_MAX], b2[PATH_MAX];
  const char* a = inside(from, b1);
  const char* b = inside(to, b2);
  if (a == NULL || b == NULL) return real_rename(from, to);
  pthread_mutex_lock(&mu);
  unsigned long replaced = keep(b);
  // Journaled before the call: a SIGKILL between the call and a record written after it would
  // hide a rename that happened. powerloss.py checks the disk when this is the last record, and
  // "X" cancels it when the call failed.
  journal("R %s %s %lu\n", a, b, replaced);
  int r = real_rename(from, to);
  int saved = errno;
  if (r != 0) journal("X\n");
  pthread_mutex_unlock(&mu);
  errno = saved;
  return r;
}

int unlink(const char* path) {
  char buf[PATH_MAX];
  const char* name = inside(path, buf);
  if (name == NULL) return real_unlink(path);
  pthread_mutex_lock(&mu);
  unsigned long kept = keep(name);
  journal("U %s %lu\n", name, kept);  // before the call, as for rename
  int r = real_unlink(path);
  int saved = errno;
  if (r != 0) journal("X\n");
  pthread_mutex_unlock(&mu);
  errno = saved;
  return r;
}

int ftruncate(int fd, off_t length) {
  int r = real_ftruncate(fd, length);
  int saved = errno;
  const char* name = tracked(fd);
  if (r == 0 && name != NULL) {
    pthread_mutex_lock(&mu);
    journal("T %s %lld\n", name, (long long)length);
    pthread_mutex_unlock(&mu);
  }
  errno = saved;
  return r;
}

static ssize_t written(ssize_t (*real)(int, const void*, size_t, off_t), int fd, const void* buf,
                       size_t n, off_t offset) {
  if (tracked(fd) != NULL) {
    int err = injected("pwrite");
    if (err != 0) {
      errno = err;
      return -1;
    }
  }
  return real(fd, buf, n, offset);
}

ssize_t pwrite(int fd, const void* buf, size_t n, off_t offset) {
  return written(real_pwrite, fd, buf, n, offset);
}
ssize_t pwrite64(int fd, const void* buf, size_t n, off_t offset) {
  return written(real_pwrite64 ? real_pwrite64 : real_pwrite, fd, buf, n, offset);
}
