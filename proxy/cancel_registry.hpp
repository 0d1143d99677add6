#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <unordered_map>

#include "config/backend_uri.hpp"

namespace switchyard::proxy {

//! Where a client's CancelRequest must go: the backend and the key that backend issued.
struct CancelTarget {
  config::BackendTarget backend;
  uint32_t backend_pid = 0;
  uint32_t backend_key = 0;
};

//! Maps the BackendKeyData switchyard hands to clients to the backend connection serving
//! them. Shared by all network threads; entries live as long as their session.
class CancelRegistry {
public:
  //! Issues a fresh (pid, key) pair for a session and remembers where it cancels.
  std::pair<uint32_t, uint32_t> add(CancelTarget target);
  void remove(uint32_t pid);
  //! The target for a CancelRequest, or nullopt if the pid is unknown or the key is wrong.
  std::optional<CancelTarget> find(uint32_t pid, uint32_t key) const;

private:
  struct Entry {
    uint32_t key;
    CancelTarget target;
  };
  mutable std::mutex mutex_;
  std::unordered_map<uint32_t, Entry> entries_;
};

} // namespace switchyard::proxy
