#pragma once

#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "protocol/row_image.hpp"

namespace switchyard::proxy {

//! The table shapes (primary key and generated columns) sessions' secondary links read from
//! the secondary, shared so that a new session knows them before its first write reaches the
//! secondary: its first async commits can then be ordered by row instead of waiting as
//! barriers, and it skips the catalog query. A shape holds for kTtl and until a DDL through
//! switchyard moves the schema epoch, so one changed behind switchyard's back is read again
//! soon. Keys name everything a table name resolves by (see SecondaryLink). Thread-safe.
class ShapeRegistry {
public:
  using Clock = std::chrono::steady_clock;
  static constexpr auto kTtl = std::chrono::seconds(30);
  static constexpr size_t kMaxShapes = 4096;

  std::optional<protocol::TableShape> find(const std::string& key, uint64_t epoch,
                                           Clock::time_point now) const {
    std::lock_guard lock(mutex_);
    auto found = shapes_.find(key);
    if (found == shapes_.end() || found->second.epoch != epoch ||
        now - found->second.read_at > kTtl) {
      return std::nullopt;
    }
    return found->second.shape;
  }

  void remember(const std::string& key, protocol::TableShape shape, uint64_t epoch,
                Clock::time_point now) {
    std::lock_guard lock(mutex_);
    if (shapes_.size() >= kMaxShapes && shapes_.count(key) == 0) shapes_.clear();
    shapes_[key] = Entry{std::move(shape), epoch, now};
  }

private:
  struct Entry {
    protocol::TableShape shape;
    uint64_t epoch = 0;
    Clock::time_point read_at;
  };
  mutable std::mutex mutex_;
  std::map<std::string, Entry> shapes_;
};

} // namespace switchyard::proxy
