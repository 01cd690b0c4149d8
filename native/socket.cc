// UNIX stream sockets that carry file descriptors (SCM_RIGHTS), which Node's net module cannot.
// Sockets are non-blocking and close-on-exec; received fds are close-on-exec too
// (MSG_CMSG_CLOEXEC). Framing (8-byte messages, one fd each) is the TypeScript side's job: these
// calls move bytes and fds.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "common.h"

namespace ivshmem {
namespace {

constexpr int kMaxFdsPerRecv = 16;

bool FillAddress(const std::string& path, sockaddr_un* addr) {
  std::memset(addr, 0, sizeof *addr);
  addr->sun_family = AF_UNIX;
  if (path.size() >= sizeof addr->sun_path) return false;
  std::memcpy(addr->sun_path, path.c_str(), path.size() + 1);
  return true;
}

int NewSocket(Napi::Env env) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) ThrowErrno(env, errno, "socket");
  return fd;
}

// Is someone accepting connections at this socket path? The kernel's socket table answers first,
// without disturbing the listener. Only when it finds nobody (or cannot be asked) does a connect
// confirm it: that reaches a listener the table cannot show (one in another network namespace)
// and otherwise just gets ECONNREFUSED from the stale path, so a live ivshmem server in our
// namespace is never sent a probe that it would count as a client.
bool SocketIsLive(const std::string& path, const sockaddr_un& addr) {
  if (ListenerAt(path.c_str()) == 1) return true;
  // Non-blocking: a live listener with a full backlog answers EAGAIN instead of stalling us.
  int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (probe < 0) return true;  // cannot tell: do not remove it
  int r = connect(probe, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  int err = errno;
  close(probe);
  return r == 0 || (err != ECONNREFUSED && err != ENOENT);
}

// listening(path): true while someone listens at the path; asks only the kernel's socket table,
// so nothing connects. null when that table cannot be read here (the caller decides).
Napi::Value Listening(const Napi::CallbackInfo& info) {
  std::string path = ArgString(info, 0, "path");
  int r = ListenerAt(path.c_str());
  if (r < 0) return info.Env().Null();
  return Napi::Boolean::New(info.Env(), r == 1);
}

Napi::Value Listen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgString(info, 0, "path");
  int backlog = ArgInt32(info, 1, "backlog");
  sockaddr_un addr;
  if (!FillAddress(path, &addr)) ThrowErrno(env, ENAMETOOLONG, "bind", path.c_str());
  struct stat st;
  if (lstat(path.c_str(), &st) == 0) {
    // Never clobber a file that is not a socket; remove a socket only when nobody listens on it.
    if (!S_ISSOCK(st.st_mode)) ThrowErrno(env, EEXIST, "bind", path.c_str());
    if (SocketIsLive(path, addr)) ThrowErrno(env, EADDRINUSE, "bind", path.c_str());
    if (unlink(path.c_str()) < 0 && errno != ENOENT) ThrowErrno(env, errno, "unlink", path.c_str());
  }
  int fd = NewSocket(env);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0 || listen(fd, backlog) < 0) {
    int err = errno;
    close(fd);
    ThrowErrno(env, err, "listen", path.c_str());
  }
  RegisterFd(env, fd);
  return Napi::Number::New(env, fd);
}

// Returns the accepted connection's fd, or -1 when no connection is waiting.
Napi::Value Accept(const Napi::CallbackInfo& info) {
  int fd = ArgInt32(info, 0, "fd");
  int conn;
  do {
    conn = accept4(fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
  } while (conn < 0 && errno == EINTR);
  if (conn < 0) {
    if (errno == EAGAIN || errno == ECONNABORTED) return Napi::Number::New(info.Env(), -1);
    ThrowErrno(info.Env(), errno, "accept");
  }
  RegisterFd(info.Env(), conn);
  return Napi::Number::New(info.Env(), conn);
}

// Never blocks: a listener whose backlog is full answers EAGAIN (retry later), which matters
// when the server runs on the same event loop as the client.
Napi::Value Connect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgString(info, 0, "path");
  sockaddr_un addr;
  if (!FillAddress(path, &addr)) ThrowErrno(env, ENAMETOOLONG, "connect", path.c_str());
  int fd = NewSocket(env);
  int r;
  do {
    r = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  } while (r < 0 && errno == EINTR);
  if (r < 0) {
    int err = errno;
    close(fd);
    ThrowErrno(env, err, "connect", path.c_str());
  }
  RegisterFd(env, fd);
  return Napi::Number::New(env, fd);
}

Napi::Value SocketPair(const Napi::CallbackInfo& info) {
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, fds) < 0) ThrowErrno(info.Env(), errno, "socketpair");
  RegisterFd(info.Env(), fds[0]);
  RegisterFd(info.Env(), fds[1]);
  Napi::Array out = Napi::Array::New(info.Env(), 2);
  out.Set(0u, Napi::Number::New(info.Env(), fds[0]));
  out.Set(1u, Napi::Number::New(info.Env(), fds[1]));
  return out;
}

// send(fd, bytes, fds): writes the bytes with the fds attached to them (none if fds is empty).
// Returns the number of bytes sent, or -1 when the socket buffer is full.
Napi::Value Send(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt32(info, 0, "fd");
  if (info.Length() < 3 || !info[1].IsTypedArray() || !info[2].IsArray()) ThrowType(env, "send(fd, Uint8Array, fds[])");
  Napi::Uint8Array bytes = info[1].As<Napi::Uint8Array>();
  Napi::Array list = info[2].As<Napi::Array>();
  std::vector<int> fds;
  for (uint32_t i = 0; i < list.Length(); i++) {
    Napi::Value v = list.Get(i);
    if (!v.IsNumber()) ThrowType(env, "fds must be numbers");
    fds.push_back(v.As<Napi::Number>().Int32Value());
  }
  if (fds.size() > kMaxFdsPerRecv) ThrowErrno(env, EINVAL, "sendmsg");

  iovec iov{bytes.Data(), bytes.ByteLength()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  std::vector<char> control;
  if (!fds.empty()) {
    control.assign(CMSG_SPACE(sizeof(int) * fds.size()), 0);
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(cmsg), fds.data(), sizeof(int) * fds.size());
  }
  ssize_t n;
  do {
    n = sendmsg(fd, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN) return Napi::Number::New(env, -1);
    ThrowErrno(env, errno, "sendmsg");
  }
  return Napi::Number::New(env, static_cast<double>(n));
}

// recv(fd, buffer, offset, length) → { bytes, fds }: bytes is 0 at end of stream and -1 when
// nothing is waiting. Every fd that arrived is returned (and owned by the caller from then on).
Napi::Value Recv(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt32(info, 0, "fd");
  if (info.Length() < 4 || !info[1].IsTypedArray()) ThrowType(env, "recv(fd, Uint8Array, offset, length)");
  Napi::Uint8Array buffer = info[1].As<Napi::Uint8Array>();
  int32_t offset = ArgInt32(info, 2, "offset");
  int32_t length = ArgInt32(info, 3, "length");
  if (offset < 0 || length < 0 || static_cast<size_t>(offset) + length > buffer.ByteLength()) ThrowErrno(env, EINVAL, "recvmsg");

  iovec iov{buffer.Data() + offset, static_cast<size_t>(length)};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFdsPerRecv)];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n;
  do {
    n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0 && errno != EAGAIN) ThrowErrno(env, errno, "recvmsg");

  Napi::Array fds = Napi::Array::New(env);
  if (n >= 0) {
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; i++) {
        int received;
        std::memcpy(&received, CMSG_DATA(c) + i * sizeof(int), sizeof received);
        RegisterFd(env, received);
        fds.Set(fds.Length(), Napi::Number::New(env, received));
      }
    }
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("bytes", Napi::Number::New(env, n < 0 ? -1 : static_cast<double>(n)));
  out.Set("fds", fds);
  return out;
}

// shutdown(fd, how = SHUT_RDWR): tests shut one direction to make a peer fail in a chosen way
// (a reader that stopped reading makes the server's next send fail with EPIPE).
Napi::Value Shutdown(const Napi::CallbackInfo& info) {
  int fd = ArgInt32(info, 0, "fd");
  int how = info.Length() > 1 && !info[1].IsUndefined() ? ArgInt32(info, 1, "how") : SHUT_RDWR;
  if (how != SHUT_RD && how != SHUT_WR && how != SHUT_RDWR) ThrowErrno(info.Env(), EINVAL, "shutdown");
  if (shutdown(fd, how) < 0 && errno != ENOTCONN) ThrowErrno(info.Env(), errno, "shutdown");
  return info.Env().Undefined();
}

}  // namespace

void InitSocket(Napi::Env env, Napi::Object exports) {
  exports.Set("listen", Napi::Function::New(env, Listen));
  exports.Set("listening", Napi::Function::New(env, Listening));
  exports.Set("accept", Napi::Function::New(env, Accept));
  exports.Set("connect", Napi::Function::New(env, Connect));
  exports.Set("socketPair", Napi::Function::New(env, SocketPair));
  exports.Set("send", Napi::Function::New(env, Send));
  exports.Set("recv", Napi::Function::New(env, Recv));
  exports.Set("shutdown", Napi::Function::New(env, Shutdown));
}

}  // namespace ivshmem
