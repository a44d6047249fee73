// In-process sock_diag for the identity stage: the kernel's exact 4-tuple lookup of a TCP
// socket (NETLINK_SOCK_DIAG without a dump), which Node cannot ask for itself. Answers in
// microseconds from the kernel's hash table, where /proc/net/tcp prints every socket of the
// namespace. Built by scripts/build-native.sh; without it the Python helper does the same.
// With it come the procfs reads of the owner search (below the sock_diag part): a whole fd
// table, or a process and its parents, in one call instead of a call per link or file.
//
//   open(nsPath: string | null) -> fd      a netlink socket in that network namespace
//   lookup(fd, family 4|6, src, sport, dst, dport) -> [state, inode] | null   (src = client)
//   close(fd)
//   fdLinks, chain, identify               see "procfs reads" below
#define _GNU_SOURCE
#define NAPI_VERSION 8
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <node_api.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

static napi_value throw_errno(napi_env env, const char *what, int err) {
  char message[512];
  snprintf(message, sizeof message, "%s: %s", what, strerror(err));
  char code[32];
  snprintf(code, sizeof code, "E%d", err);
  napi_throw_error(env, code, message);
  return NULL;
}

static int get_int(napi_env env, napi_value value, int *out) {
  return napi_get_value_int32(env, value, out) == napi_ok ? 0 : -1;
}

static int get_string(napi_env env, napi_value value, char *buf, size_t size) {
  size_t len;
  return napi_get_value_string_utf8(env, value, buf, size, &len) == napi_ok && len < size - 1 ? 0 : -1;
}

static int diag_socket(void) {
  return socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
}

// Opens the netlink socket inside another network namespace: the calling thread enters it,
// makes the socket (which stays bound to that namespace) and comes back.
static napi_value open_diag(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  napi_valuetype type = napi_null;
  if (argc >= 1) napi_typeof(env, argv[0], &type);
  int fd;
  if (type != napi_string) {
    fd = diag_socket();
    if (fd < 0) return throw_errno(env, "socket(NETLINK_SOCK_DIAG)", errno);
  } else {
    char path[256];
    if (get_string(env, argv[0], path, sizeof path) != 0) {
      napi_throw_type_error(env, NULL, "namespace path too long");
      return NULL;
    }
    int own = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (own < 0) return throw_errno(env, "open /proc/thread-self/ns/net", errno);
    int target = open(path, O_RDONLY | O_CLOEXEC);
    if (target < 0) {
      int err = errno;
      close(own);
      return throw_errno(env, path, err);
    }
    if (setns(target, CLONE_NEWNET) != 0) {
      int err = errno;
      close(own);
      close(target);
      return throw_errno(env, "setns", err);
    }
    fd = diag_socket();
    int err = errno;
    // A thread left in the sandbox's namespace would open every later socket there: never go on.
    if (setns(own, CLONE_NEWNET) != 0) abort();
    close(own);
    close(target);
    if (fd < 0) return throw_errno(env, "socket(NETLINK_SOCK_DIAG)", err);
  }
  napi_value result;
  napi_create_int32(env, fd, &result);
  return result;
}

static napi_value lookup(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int fd, family, sport, dport;
  char src[64], dst[64];
  if (argc < 6 || get_int(env, argv[0], &fd) || get_int(env, argv[1], &family) || get_string(env, argv[2], src, sizeof src) ||
      get_int(env, argv[3], &sport) || get_string(env, argv[4], dst, sizeof dst) || get_int(env, argv[5], &dport) ||
      (family != 4 && family != 6) || sport < 0 || sport > 65535 || dport < 0 || dport > 65535) {
    napi_throw_type_error(env, NULL, "lookup(fd, 4|6, src, sport, dst, dport)");
    return NULL;
  }
  struct {
    struct nlmsghdr header;
    struct inet_diag_req_v2 request;
  } message;
  memset(&message, 0, sizeof message);
  message.header.nlmsg_len = sizeof message;
  message.header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  message.header.nlmsg_flags = NLM_F_REQUEST;
  message.request.sdiag_family = family == 4 ? AF_INET : AF_INET6;
  message.request.sdiag_protocol = IPPROTO_TCP;
  message.request.idiag_states = 0xffffffff;
  message.request.id.idiag_sport = htons(sport);
  message.request.id.idiag_dport = htons(dport);
  message.request.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
  message.request.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
  int af = family == 4 ? AF_INET : AF_INET6;
  if (inet_pton(af, src, message.request.id.idiag_src) != 1 || inet_pton(af, dst, message.request.id.idiag_dst) != 1) {
    napi_throw_type_error(env, NULL, "not an address of that family");
    return NULL;
  }
  if (send(fd, &message, sizeof message, 0) < 0) return throw_errno(env, "sock_diag send", errno);
  // The kernel answers within the send: the reply is already queued, so never wait for it.
  union {
    struct nlmsghdr header;
    char bytes[8192];
  } reply;
  ssize_t got = recv(fd, &reply, sizeof reply, MSG_DONTWAIT);
  if (got < 0) return throw_errno(env, "sock_diag recv", errno);
  napi_value result;
  if ((size_t)got < sizeof(struct nlmsghdr) || !NLMSG_OK(&reply.header, (size_t)got)) {
    napi_throw_error(env, NULL, "sock_diag: short reply");
    return NULL;
  }
  if (reply.header.nlmsg_type == NLMSG_ERROR) {
    const struct nlmsgerr *error = NLMSG_DATA(&reply.header);
    if (error->error == -ENOENT) {
      napi_get_null(env, &result);
      return result;
    }
    return throw_errno(env, "sock_diag", -error->error);
  }
  if (reply.header.nlmsg_type != SOCK_DIAG_BY_FAMILY || reply.header.nlmsg_len < NLMSG_LENGTH(sizeof(struct inet_diag_msg))) {
    napi_throw_error(env, NULL, "sock_diag: unexpected reply");
    return NULL;
  }
  const struct inet_diag_msg *socket_info = NLMSG_DATA(&reply.header);
  if (ntohs(socket_info->id.idiag_sport) != sport || ntohs(socket_info->id.idiag_dport) != dport) {
    napi_get_null(env, &result);
    return result;
  }
  napi_value state, inode;
  napi_create_array_with_length(env, 2, &result);
  napi_create_uint32(env, socket_info->idiag_state, &state);
  napi_create_uint32(env, socket_info->idiag_inode, &inode);
  napi_set_element(env, result, 0, state);
  napi_set_element(env, result, 1, inode);
  return result;
}

static napi_value close_diag(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int fd;
  if (argc < 1 || get_int(env, argv[0], &fd) || fd < 0) {
    napi_throw_type_error(env, NULL, "close(fd)");
    return NULL;
  }
  close(fd);
  return NULL;
}


// ---- procfs reads ------------------------------------------------------------------------------
// The owner search's reads of /proc, each a loop of system calls that JavaScript would pay a
// round trip (a string, and an exception for every vanished file) per step of:
//
//   fdLinks(pid, inode, hints: Int32Array, last: Int32Array, stopAtSocket) -> Float64Array
//     [denied, listErrno, foundFd, complete, fd, inode, fd, inode, ...]: the links of
//     /proc/<pid>/fd, `hints` first (without listing the table; a hit there ends the read), then
//     the listed numbers, those in `last` last; with stopAtSocket the read ends at `inode`.
//     inode 0: another kind of file. A link that vanished is left out; denied: one was not ours
//     to read. listErrno: the table could not be listed (0 when it was).
//   chain(pid, levels, anchorPid) -> [pid, ppid, startTime, exePath, fingerprint, exeError, ...]
//     the process and its parents, nearest first: stops after `levels` entries, after the
//     anchor, before pid 1, at a loop, at a parent that is gone, and after a parent whose
//     executable cannot be read. Throws (code E<errno>) when `pid` itself cannot be read.
//     exePath is the kernel's link text (with " (deleted)"), fingerprint
//     "dev:ino:size:mtimeNs:ctimeNs" of the file it names (the link is read again after the
//     fingerprint, so an exec between the two is not mistaken for the file); exeError 0, an
//     errno, or -1 (a live process without an executable: a kernel thread or a zombie).
//   pin(pid) -> [dirfd, statfd, ppid, startTime]
//     /proc/<pid> and its main thread's stat file held open: reads through them see that process and no
//     other, even after its pid is reused (they fail once it has exited). close() lets go.
//   readPinned(dirfd, statfd) -> [ppid, exePath, fingerprint, exeError]
//     a pinned process as it is now: its parent (-errno once it exited) and its executable, link
//     and fingerprint read once each (the caller reads them again, as chain does, unless they
//     are what it read before).
//   identify(inode, dirfds: Int32Array, statfds: Int32Array, hints: Int32Array,
//            hintCounts: Int32Array, last: Int32Array, listMode)
//       -> [index, reads: Float64Array[], ppid, exePath, fingerprint, exeError]
//     the pinned processes in order, each at its hinted fd numbers (hintCounts[i] each), the
//     first also, past its hints, at its whole table (listMode 2) or up to the socket (1; `last`
//     as for fdLinks), until one holds `inode`: its index (-1: none), each one's links as fdLinks
//     gives them, and the holder as readPinned reads it.

#define MAX_CHAIN 65 /* the process and 64 ancestors */
#define NO_EXECUTABLE (-1)

typedef struct {
  double *items;
  size_t length, capacity;
} Numbers;

static int numbers_push(Numbers *numbers, double value) {
  if (numbers->length == numbers->capacity) {
    size_t capacity = numbers->capacity ? numbers->capacity * 2 : 64;
    double *items = realloc(numbers->items, capacity * sizeof *items);
    if (!items) return -1;
    numbers->items = items;
    numbers->capacity = capacity;
  }
  numbers->items[numbers->length++] = value;
  return 0;
}

/** The inode of a `socket:[N]` link text, 0 for anything else. */
static double socket_inode_of(const char *link, ssize_t length) {
  static const char prefix[] = "socket:[";
  const ssize_t prefix_length = sizeof prefix - 1;
  if (length <= prefix_length + 1 || memcmp(link, prefix, prefix_length) != 0 || link[length - 1] != ']') return 0;
  double inode = 0;
  for (ssize_t i = prefix_length; i < length - 1; i++) {
    if (link[i] < '0' || link[i] > '9') return 0;
    inode = inode * 10 + (link[i] - '0');
  }
  return inode;
}

/** A link's socket inode (0: another file), or -errno. */
static double read_link_at(int dirfd, const char *name) {
  char link[64];
  ssize_t length = readlinkat(dirfd, name, link, sizeof link);
  if (length < 0) return -errno;
  return socket_inode_of(link, length);
}

static int is_denial(int err) {
  return err == EACCES || err == EPERM;
}

typedef struct {
  int denied, list_errno, found, complete;
  Numbers reads; /* fd, inode pairs */
} FdRead;

/** Reads one link into `out`; 1 when it holds the inode. */
static int read_one(FdRead *out, int dirfd, const char *name, int fd, double inode) {
  double found = read_link_at(dirfd, name);
  if (found < 0) {
    if (is_denial((int)-found)) out->denied = 1;
    return 0;
  }
  if (numbers_push(&out->reads, fd) || numbers_push(&out->reads, found)) out->list_errno = ENOMEM;
  if (found == inode && out->found < 0) out->found = fd;
  return found == inode;
}

struct linux_dirent64_header {
  uint64_t d_ino;
  int64_t d_off;
  unsigned short d_reclen;
  unsigned char d_type;
  char d_name[];
};

/** The fd numbers open in a /proc/<pid>/fd directory; -errno on failure. */
static int list_fds(int dirfd, int **fds, size_t *count) {
  char buffer[16384];
  size_t capacity = 0;
  *fds = NULL;
  *count = 0;
  for (;;) {
    long got = syscall(SYS_getdents64, dirfd, buffer, sizeof buffer);
    if (got < 0) return -errno;
    if (got == 0) return 0;
    for (long at = 0; at < got;) {
      struct linux_dirent64_header *entry = (struct linux_dirent64_header *)(buffer + at);
      at += entry->d_reclen;
      if (entry->d_name[0] < '0' || entry->d_name[0] > '9') continue;
      if (*count == capacity) {
        capacity = capacity ? capacity * 2 : 256;
        int *grown = realloc(*fds, capacity * sizeof **fds);
        if (!grown) return -ENOMEM;
        *fds = grown;
      }
      (*fds)[(*count)++] = atoi(entry->d_name);
    }
  }
}

/**
 * Reads the fd table `fd_dir` (relative to `base`): the `hints` first (a hit ends the read), then
 * unless `list` is 0 the listed numbers not read yet, those in `last` last, up to the socket when
 * `stop_at_socket`.
 */
static void read_fd_table(int base, const char *fd_dir, double inode, const int32_t *hints, size_t hint_count, int list,
                          const int32_t *last, size_t last_count, int stop_at_socket, FdRead *out) {
  memset(out, 0, sizeof *out);
  out->found = -1;
  char path[64];
  for (size_t i = 0; i < hint_count; i++) {
    snprintf(path, sizeof path, "%s/%d", fd_dir, hints[i]);
    if (read_one(out, base, path, hints[i], inode)) return;
  }
  if (!list) return;
  int dirfd = openat(base, fd_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dirfd < 0) {
    out->list_errno = errno;
    if (is_denial(errno)) out->denied = 1;
    return;
  }
  int *fds = NULL;
  size_t count;
  unsigned char *late = NULL; /* fd number -> 1: hinted (read already), 2: in `last` */
  int listed = list_fds(dirfd, &fds, &count);
  int max = 0;
  for (size_t i = 0; listed >= 0 && i < count; i++)
    if (fds[i] > max) max = fds[i];
  if (listed >= 0 && !(late = calloc((size_t)max + 1, 1))) listed = -ENOMEM;
  if (listed < 0) {
    out->list_errno = -listed;
    if (is_denial(-listed)) out->denied = 1;
    goto done;
  }
  for (size_t i = 0; i < last_count; i++)
    if (last[i] >= 0 && last[i] <= max) late[last[i]] = 2;
  for (size_t i = 0; i < hint_count; i++)
    if (hints[i] >= 0 && hints[i] <= max) late[hints[i]] = 1;
  // Numbers known to hold other kinds of files last: a new socket is rarely there.
  for (int pass = 0; pass < 2; pass++) {
    for (size_t i = 0; i < count; i++) {
      if (late[fds[i]] == 1 || (late[fds[i]] == 2) != pass) continue;
      char name[16];
      snprintf(name, sizeof name, "%d", fds[i]);
      if (read_one(out, dirfd, name, fds[i], inode) && stop_at_socket) goto done;
    }
  }
  out->complete = out->list_errno == 0;
done:
  free(late);
  free(fds);
  close(dirfd);
}

static int get_int32_array(napi_env env, napi_value value, const int32_t **items, size_t *count) {
  napi_typedarray_type type;
  void *data;
  if (napi_get_typedarray_info(env, value, &type, count, &data, NULL, NULL) != napi_ok || type != napi_int32_array) return -1;
  *items = data;
  return 0;
}

static napi_value numbers_to_js(napi_env env, const double *header, size_t header_length, const Numbers *numbers) {
  napi_value buffer, result;
  void *data;
  size_t length = header_length + numbers->length;
  if (napi_create_arraybuffer(env, length * sizeof(double), &data, &buffer) != napi_ok) return NULL;
  memcpy(data, header, header_length * sizeof(double));
  if (numbers->length) memcpy((double *)data + header_length, numbers->items, numbers->length * sizeof(double));
  napi_create_typedarray(env, napi_float64_array, length, buffer, 0, &result);
  return result;
}

static napi_value fd_links(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int pid;
  double inode;
  const int32_t *hints, *last;
  size_t hint_count, last_count;
  bool stop_at_socket;
  if (argc < 5 || get_int(env, argv[0], &pid) || pid <= 0 || napi_get_value_double(env, argv[1], &inode) != napi_ok ||
      get_int32_array(env, argv[2], &hints, &hint_count) || get_int32_array(env, argv[3], &last, &last_count) ||
      napi_get_value_bool(env, argv[4], &stop_at_socket) != napi_ok) {
    napi_throw_type_error(env, NULL, "fdLinks(pid, inode, hints: Int32Array, last: Int32Array, stopAtSocket)");
    return NULL;
  }
  FdRead read;
  char fd_dir[32];
  snprintf(fd_dir, sizeof fd_dir, "/proc/%d/fd", pid);
  read_fd_table(AT_FDCWD, fd_dir, inode, hints, hint_count, 1, last, last_count, stop_at_socket, &read);
  double header[4] = {read.denied, read.list_errno, read.found, read.complete};
  napi_value result = read.list_errno == ENOMEM ? NULL : numbers_to_js(env, header, 4, &read.reads);
  free(read.reads.items);
  if (!result) return throw_errno(env, "fdLinks", ENOMEM);
  return result;
}

/** ppid and start time (clock ticks after boot) from the text of a stat file; 0 or an errno. */
static int parse_stat(char *text, ssize_t length, int *ppid, double *start) {
  if (length <= 0) return ESRCH;
  text[length] = 0;
  // The command name, in parentheses, may itself hold ") ": the fields start after the last one.
  char *fields = strrchr(text, ')');
  if (!fields || fields[1] != ' ') return EINVAL;
  // Field 3 is the state, 4 the ppid, 22 the start time.
  char *cursor = fields + 2;
  for (int field = 3; field < 22; field++) {
    if (field == 4) *ppid = (int)strtol(cursor, NULL, 10);
    cursor = strchr(cursor, ' ');
    if (!cursor) return EINVAL;
    cursor++;
  }
  *start = strtod(cursor, NULL);
  return 0;
}

/** The same from an open stat file (read from its start: a kept file reads the process anew). */
static int pread_stat(int fd, int *ppid, double *start) {
  char text[1024];
  ssize_t length = pread(fd, text, sizeof text - 1, 0);
  return length < 0 ? errno : parse_stat(text, length, ppid, start);
}

static int read_stat(int pid, int *ppid, double *start) {
  char path[32];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  int err = pread_stat(fd, ppid, start);
  close(fd);
  return err;
}

/**
 * Reads the executable link `name` (relative to `dirfd`) and fingerprints the file it names.
 * `guarded`: the link is read again after the fingerprint, so an exec in between shows as another
 * link, and then both are read anew, once (unguarded, the caller compares with what it read
 * before). 0 or an errno (EAGAIN: the executable kept changing).
 */
static int read_exe_at(int dirfd, const char *name, int guarded, char *exe_path, size_t path_size, char *fingerprint, size_t fingerprint_size) {
  for (int attempt = 0; attempt < 2; attempt++) {
    ssize_t length = readlinkat(dirfd, name, exe_path, path_size - 1);
    if (length < 0) return errno;
    struct statx stats;
    if (statx(dirfd, name, 0, STATX_BASIC_STATS, &stats) != 0) return errno;
    char again[PATH_MAX];
    ssize_t again_length = guarded ? readlinkat(dirfd, name, again, sizeof again) : length;
    if (again_length < 0) return errno;
    if (guarded && (again_length != length || memcmp(again, exe_path, (size_t)length) != 0)) continue;
    exe_path[length] = 0;
    // As Node's bigint stats print them (dev as glibc's makedev of the statx numbers).
    snprintf(fingerprint, fingerprint_size, "%llu:%llu:%llu:%lld:%lld", (unsigned long long)makedev(stats.stx_dev_major, stats.stx_dev_minor),
             (unsigned long long)stats.stx_ino, (unsigned long long)stats.stx_size,
             (long long)stats.stx_mtime.tv_sec * 1000000000LL + stats.stx_mtime.tv_nsec,
             (long long)stats.stx_ctime.tv_sec * 1000000000LL + stats.stx_ctime.tv_nsec);
    return 0;
  }
  return EAGAIN;
}

/** The executable of `pid`: 0, an errno, or NO_EXECUTABLE. */
static int read_exe(int pid, char *exe_path, size_t path_size, char *fingerprint, size_t fingerprint_size) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/exe", pid);
  int err = read_exe_at(AT_FDCWD, path, 1, exe_path, path_size, fingerprint, fingerprint_size);
  if (err != ENOENT) return err;
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  // Still there without an executable: a kernel thread or a zombie.
  return access(path, F_OK) == 0 ? NO_EXECUTABLE : err;
}

static void set_number(napi_env env, napi_value array, uint32_t index, double value) {
  napi_value number;
  napi_create_double(env, value, &number);
  napi_set_element(env, array, index, number);
}

static void set_string_or_null(napi_env env, napi_value array, uint32_t index, const char *text) {
  napi_value value;
  if (text) napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &value);
  else napi_get_null(env, &value);
  napi_set_element(env, array, index, value);
}

/** The chain as a JS array (see the top of this part), or an errno when `pid` cannot be read. */
static int read_chain(napi_env env, int pid, int levels, int anchor, napi_value *result) {
  int pids[MAX_CHAIN];
  int count = 0, ppid = 0;
  double start = 0;
  int err = read_stat(pid, &ppid, &start);
  if (err) return err;
  napi_create_array(env, result);
  for (int current = pid;;) {
    char exe_path[PATH_MAX], fingerprint[128];
    int exe_error = read_exe(current, exe_path, sizeof exe_path, fingerprint, sizeof fingerprint);
    uint32_t at = (uint32_t)count * 6;
    set_number(env, *result, at, current);
    set_number(env, *result, at + 1, ppid);
    set_number(env, *result, at + 2, start);
    set_string_or_null(env, *result, at + 3, exe_error ? NULL : exe_path);
    set_string_or_null(env, *result, at + 4, exe_error ? NULL : fingerprint);
    set_number(env, *result, at + 5, exe_error);
    pids[count++] = current;
    // The chain is only as long as it is readable.
    if ((count > 1 && exe_error) || count >= levels || count >= MAX_CHAIN || current == anchor || ppid <= 1) return 0;
    for (int i = 0; i < count; i++)
      if (pids[i] == ppid) return 0;
    current = ppid;
    if (read_stat(current, &ppid, &start)) return 0; // the parent exited while we looked
  }
}

static napi_value chain(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int pid, levels, anchor;
  if (argc < 3 || get_int(env, argv[0], &pid) || get_int(env, argv[1], &levels) || get_int(env, argv[2], &anchor) || pid <= 0) {
    napi_throw_type_error(env, NULL, "chain(pid, levels, anchorPid)");
    return NULL;
  }
  napi_value result;
  int err = read_chain(env, pid, levels, anchor, &result);
  if (err) return throw_errno(env, "reading the process", err);
  return result;
}

static napi_value pin(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int pid;
  if (argc < 1 || get_int(env, argv[0], &pid) || pid <= 0) {
    napi_throw_type_error(env, NULL, "pin(pid)");
    return NULL;
  }
  char path[32];
  snprintf(path, sizeof path, "/proc/%d", pid);
  int dirfd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (dirfd < 0) return throw_errno(env, path, errno);
  // The main thread's stat: the same parent and start as the process's, without the sums over
  // every thread that the process's own stat file makes at each read.
  snprintf(path, sizeof path, "task/%d/stat", pid);
  int statfd = openat(dirfd, path, O_RDONLY | O_CLOEXEC);
  int ppid = 0, err = statfd < 0 ? errno : 0;
  double start = 0;
  if (!err) err = pread_stat(statfd, &ppid, &start);
  if (err) {
    if (statfd >= 0) close(statfd);
    close(dirfd);
    snprintf(path, sizeof path, "/proc/%d", pid);
    return throw_errno(env, path, err);
  }
  napi_value result;
  napi_create_array_with_length(env, 4, &result);
  set_number(env, result, 0, dirfd);
  set_number(env, result, 1, statfd);
  set_number(env, result, 2, ppid);
  set_number(env, result, 3, start);
  return result;
}

/** A pinned process as it is now, at result[at..at+3]: ppid (-errno once it exited), exePath, fingerprint, exeError. */
static void set_pinned_read(napi_env env, napi_value result, uint32_t at, int dirfd, int statfd) {
  int ppid = 0;
  double start = 0;
  int err = pread_stat(statfd, &ppid, &start);
  char exe_path[PATH_MAX], fingerprint[128];
  int exe_error = err ? err : read_exe_at(dirfd, "exe", 0, exe_path, sizeof exe_path, fingerprint, sizeof fingerprint);
  set_number(env, result, at, err ? -err : ppid);
  set_string_or_null(env, result, at + 1, exe_error ? NULL : exe_path);
  set_string_or_null(env, result, at + 2, exe_error ? NULL : fingerprint);
  set_number(env, result, at + 3, exe_error);
}

static napi_value read_pinned(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int dirfd, statfd;
  if (argc < 2 || get_int(env, argv[0], &dirfd) || get_int(env, argv[1], &statfd)) {
    napi_throw_type_error(env, NULL, "readPinned(dirfd, statfd)");
    return NULL;
  }
  napi_value result;
  napi_create_array_with_length(env, 4, &result);
  set_pinned_read(env, result, 0, dirfd, statfd);
  return result;
}

static napi_value identify(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  double inode;
  const int32_t *dirfds, *statfds, *hints, *hint_counts, *last;
  size_t count, statfd_count, hint_total, count_count, last_count;
  int list_mode;
  if (argc < 7 || napi_get_value_double(env, argv[0], &inode) != napi_ok || get_int32_array(env, argv[1], &dirfds, &count) ||
      get_int32_array(env, argv[2], &statfds, &statfd_count) || get_int32_array(env, argv[3], &hints, &hint_total) ||
      get_int32_array(env, argv[4], &hint_counts, &count_count) || get_int32_array(env, argv[5], &last, &last_count) ||
      get_int(env, argv[6], &list_mode) || statfd_count != count || count_count != count) {
    napi_throw_type_error(env, NULL, "identify(inode, dirfds, statfds, hints, hintCounts, last, listMode)");
    return NULL;
  }
  napi_value result, reads;
  napi_create_array_with_length(env, 6, &result);
  napi_create_array(env, &reads);
  napi_set_element(env, result, 1, reads);
  set_number(env, result, 0, -1);
  size_t offset = 0;
  for (size_t i = 0; i < count; i++) {
    size_t hinted = hint_counts[i] < 0 ? 0 : (size_t)hint_counts[i];
    if (offset + hinted > hint_total) break;
    FdRead read;
    // The first candidate is read on past its hints (as far as list_mode says), the others at their hints only.
    int list = i == 0 && list_mode > 0;
    read_fd_table(dirfds[i], "fd", inode, hints + offset, hinted, list, last, i == 0 ? last_count : 0, list_mode == 1, &read);
    offset += hinted;
    double header[4] = {read.denied, read.list_errno, read.found, read.complete};
    napi_value numbers = read.list_errno == ENOMEM ? NULL : numbers_to_js(env, header, 4, &read.reads);
    free(read.reads.items);
    if (!numbers) return throw_errno(env, "identify", ENOMEM);
    napi_set_element(env, reads, (uint32_t)i, numbers);
    if (read.found < 0) continue;
    set_number(env, result, 0, (double)i);
    set_pinned_read(env, result, 2, dirfds[i], statfds[i]);
    break;
  }
  return result;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor methods[] = {
      {"open", NULL, open_diag, NULL, NULL, NULL, napi_default, NULL},
      {"lookup", NULL, lookup, NULL, NULL, NULL, napi_default, NULL},
      {"close", NULL, close_diag, NULL, NULL, NULL, napi_default, NULL},
      {"fdLinks", NULL, fd_links, NULL, NULL, NULL, napi_default, NULL},
      {"chain", NULL, chain, NULL, NULL, NULL, napi_default, NULL},
      {"pin", NULL, pin, NULL, NULL, NULL, napi_default, NULL},
      {"identify", NULL, identify, NULL, NULL, NULL, napi_default, NULL},
      {"readPinned", NULL, read_pinned, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof methods / sizeof methods[0], methods);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
