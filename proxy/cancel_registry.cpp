#include "proxy/cancel_registry.hpp"

#include "protocol/auth.hpp"
#include "protocol/wire.hpp"

namespace switchyard::proxy {

std::pair<uint32_t, uint32_t> CancelRegistry::add(CancelTarget target) {
  std::string random = protocol::random_bytes(8);
  uint32_t key = protocol::read_u32(random.data() + 4);
  std::lock_guard lock(mutex_);
  // Random pids, so one client cannot guess another's; 0 is avoided as libpq treats it as unset.
  uint32_t pid = protocol::read_u32(random.data()) & 0x7fffffff;
  while (pid == 0 || entries_.contains(pid))
    pid = (pid + 1) & 0x7fffffff;
  entries_.emplace(pid, Entry{key, std::move(target)});
  return {pid, key};
}

void CancelRegistry::remove(uint32_t pid) {
  std::lock_guard lock(mutex_);
  entries_.erase(pid);
}

std::optional<CancelTarget> CancelRegistry::find(uint32_t pid, uint32_t key) const {
  std::lock_guard lock(mutex_);
  auto it = entries_.find(pid);
  if (it == entries_.end() || it->second.key != key) return std::nullopt;
  return it->second.target;
}

} // namespace switchyard::proxy
