#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "proxy/text_hash.hpp"

namespace switchyard::proxy {

//! What sessions learned of a database's schema and share: an entry holds while the schema
//! epoch it was learned at is current (no DDL through switchyard since) and for its ttl at
//! most (kTtl unless given), so what DDL that bypassed switchyard changed is learned again
//! soon. Bounded: full, it starts over. Thread-safe.
template <typename Value> class EpochCache {
public:
  using Clock = std::chrono::steady_clock;
  static constexpr Clock::duration kTtl = std::chrono::seconds(30);
  static constexpr size_t kMaxEntries = 4096;

  explicit EpochCache(Clock::duration ttl = kTtl) : ttl_(ttl) {}

  std::optional<Value> find(std::string_view key, uint64_t epoch, Clock::time_point now) const {
    std::lock_guard lock(mutex_);
    auto found = entries_.find(key);
    if (found == entries_.end() || found->second.epoch != epoch ||
        now - found->second.learned > ttl_) {
      return std::nullopt;
    }
    return found->second.value;
  }

  void remember(std::string key, Value value, uint64_t epoch, Clock::time_point now) {
    std::lock_guard lock(mutex_);
    if (entries_.size() >= kMaxEntries && !entries_.contains(key)) entries_.clear();
    entries_.insert_or_assign(std::move(key), Entry{std::move(value), epoch, now});
  }

  void clear() {
    std::lock_guard lock(mutex_);
    entries_.clear();
  }

private:
  struct Entry {
    Value value;
    uint64_t epoch = 0;
    Clock::time_point learned;
  };
  Clock::duration ttl_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, Entry, TextHash, std::equal_to<>> entries_;
};

} // namespace switchyard::proxy
