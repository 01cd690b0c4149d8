// Who owns which fd. The registry is process-wide (fds are), keyed by fd, remembering the env that
// created each one, so a worker's exit closes only that worker's leftovers, and an fd closed
// anywhere through the addon is forgotten everywhere.
#include <unistd.h>

#include <mutex>
#include <unordered_map>
#include <vector>

#include "common.h"

namespace ivshmem {
namespace {

std::mutex registry_mutex;
std::unordered_map<int, napi_env>& Registry() {
  static auto* registry = new std::unordered_map<int, napi_env>();  // never destroyed: used at exit
  return *registry;
}

void CloseLeftovers(void* arg) {
  napi_env env = static_cast<napi_env>(arg);
  std::vector<int> mine;
  {
    std::lock_guard<std::mutex> lock(registry_mutex);
    for (auto it = Registry().begin(); it != Registry().end();) {
      if (it->second == env) {
        mine.push_back(it->first);
        it = Registry().erase(it);
      } else {
        ++it;
      }
    }
  }
  for (int fd : mine) close(fd);
}

}  // namespace

void InitRegistry(Napi::Env env) {
  napi_add_env_cleanup_hook(env, CloseLeftovers, static_cast<napi_env>(env));
}

void RegisterFd(Napi::Env env, int fd) {
  std::lock_guard<std::mutex> lock(registry_mutex);
  Registry()[fd] = env;
}

void ForgetFd(int fd) {
  std::lock_guard<std::mutex> lock(registry_mutex);
  Registry().erase(fd);
}

bool IsRegisteredFd(int fd) {
  std::lock_guard<std::mutex> lock(registry_mutex);
  return Registry().count(fd) != 0;
}

}  // namespace ivshmem
