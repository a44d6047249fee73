// In-process sock_diag for the identity stage: the kernel's exact 4-tuple lookup of a TCP
// socket (NETLINK_SOCK_DIAG without a dump), which Node cannot ask for itself. Answers in
// microseconds from the kernel's hash table, where /proc/net/tcp prints every socket of the
// namespace. Built by scripts/build-native.sh; without it the Python helper does the same.
//
//   open(nsPath: string | null) -> fd      a netlink socket in that network namespace
//   lookup(fd, family 4|6, src, sport, dst, dport) -> [state, inode] | null   (src = client)
//   close(fd)
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
#include <sys/socket.h>
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

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor methods[] = {
      {"open", NULL, open_diag, NULL, NULL, NULL, napi_default, NULL},
      {"lookup", NULL, lookup, NULL, NULL, NULL, napi_default, NULL},
      {"close", NULL, close_diag, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof methods / sizeof methods[0], methods);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
