// Is anyone listening on a UNIX socket path? Asked of the kernel's socket table (sock_diag over
// netlink: every listening UNIX socket with the inode and device of the file it is bound to), so
// the answer costs the listener nothing: connecting to find out would make a running ivshmem
// server accept the probe as a client, spend a peer id on it and log a leave.
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common.h"

namespace ivshmem {
namespace {

constexpr int kTcpListen = 10;  // the socket state a listener is in, as the diag interface names it

// The kernel reports a device number in its own encoding (major << 20 | minor).
uint32_t KernelDev(dev_t dev) {
  return static_cast<uint32_t>((major(dev) << 20) | minor(dev));
}

// Scans one batch of replies; returns 1 on a match, 0 when the dump is complete without one,
// -1 on an error reply, 2 when more batches follow.
int ScanReplies(const char* buf, ssize_t len, uint32_t ino, uint32_t dev) {
  for (auto* h = reinterpret_cast<const nlmsghdr*>(buf); NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
    if (h->nlmsg_type == NLMSG_DONE) return 0;
    if (h->nlmsg_type == NLMSG_ERROR) return -1;
    if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY) continue;
    auto* msg = static_cast<const unix_diag_msg*>(NLMSG_DATA(h));
    int rest = static_cast<int>(h->nlmsg_len - NLMSG_LENGTH(sizeof *msg));
    for (auto* a = reinterpret_cast<const rtattr*>(msg + 1); RTA_OK(a, rest); a = RTA_NEXT(a, rest)) {
      if (a->rta_type != UNIX_DIAG_VFS || RTA_PAYLOAD(a) < sizeof(unix_diag_vfs)) continue;
      unix_diag_vfs vfs;
      std::memcpy(&vfs, RTA_DATA(a), sizeof vfs);
      if (vfs.udiag_vfs_ino == ino && vfs.udiag_vfs_dev == dev) return 1;
    }
  }
  return 2;
}

}  // namespace

int ListenerAt(const char* path) {
  struct stat st;
  if (stat(path, &st) < 0) return 0;
  if (!S_ISSOCK(st.st_mode)) return -1;
  int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (fd < 0) return -1;
  struct {
    nlmsghdr header;
    unix_diag_req request;
  } query{};
  query.header.nlmsg_len = sizeof query;
  query.header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  query.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  query.request.sdiag_family = AF_UNIX;
  query.request.udiag_states = 1u << kTcpListen;
  query.request.udiag_show = UDIAG_SHOW_VFS;
  int result = -1;
  if (send(fd, &query, sizeof query, 0) == static_cast<ssize_t>(sizeof query)) {
    alignas(nlmsghdr) char buf[16384];
    for (;;) {
      ssize_t n;
      do {
        n = recv(fd, buf, sizeof buf, 0);
      } while (n < 0 && errno == EINTR);
      if (n <= 0) break;
      int r = ScanReplies(buf, n, static_cast<uint32_t>(st.st_ino), KernelDev(st.st_dev));
      if (r != 2) {
        result = r;
        break;
      }
    }
  }
  close(fd);
  return result;
}

}  // namespace ivshmem
