#pragma once

#include <cstddef>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "backfill/journal.hpp"

namespace switchyard::proxy {

//! What the secondary committed for a transaction the client prepared (PREPARE TRANSACTION)
//! and the primary still holds prepared: the journal entries that would make its rows the
//! primary's again, and its DDL, which no replay undoes.
struct PreparedWrites {
  std::vector<backfill::JournalEntry> entries;
  std::vector<std::string> ddl;
};

//! The writes of prepared transactions, by database pair and transaction name, from the
//! PREPARE TRANSACTION whose writes the secondary committed first until a COMMIT PREPARED
//! (they stay) or ROLLBACK PREPARED (they are journaled) through switchyard. Any session may
//! finish a prepared transaction, so it is shared. Bounded: past kMaxTransactions names or
//! kMaxBytes of row images the oldest is forgotten (finished outside switchyard, most
//! likely), and a ROLLBACK PREPARED of it then leaves its writes on the secondary. Thread-safe.
class PreparedTransactions {
public:
  static constexpr size_t kMaxTransactions = 1024;
  static constexpr size_t kMaxBytes = size_t{256} << 20;

  //! Keeps `writes` under `key`; returns the names forgotten to make room.
  std::vector<std::string> keep(const std::string& key, PreparedWrites writes) {
    size_t bytes = footprint(writes);
    std::vector<std::string> forgotten;
    std::lock_guard lock(mutex_);
    if (auto known = by_key_.find(key); known != by_key_.end()) forget_locked(known);
    while (!order_.empty() && (by_key_.size() >= kMaxTransactions || bytes_ + bytes > kMaxBytes)) {
      forgotten.push_back(order_.front());
      forget_locked(by_key_.find(order_.front()));
    }
    bytes_ += bytes;
    by_key_.emplace(key, Kept{std::move(writes), bytes});
    order_.push_back(key);
    return forgotten;
  }

  //! The writes kept under `key`, which are no longer kept; none if none were.
  std::optional<PreparedWrites> take(const std::string& key) {
    std::lock_guard lock(mutex_);
    auto known = by_key_.find(key);
    if (known == by_key_.end()) return std::nullopt;
    PreparedWrites writes = std::move(known->second.writes);
    forget_locked(known);
    return writes;
  }

private:
  struct Kept {
    PreparedWrites writes;
    size_t bytes = 0;
  };

  static size_t footprint(const PreparedWrites& writes) {
    size_t bytes = 0;
    for (const auto& entry : writes.entries) {
      bytes += entry.sql.size() + entry.table.size();
      for (const auto& value : entry.values)
        bytes += value ? value->size() + 8 : 8;
    }
    for (const auto& sql : writes.ddl)
      bytes += sql.size();
    return bytes;
  }

  void forget_locked(std::map<std::string, Kept>::iterator known) {
    bytes_ -= known->second.bytes;
    std::erase(order_, known->first);
    by_key_.erase(known);
  }

  std::mutex mutex_;
  std::map<std::string, Kept> by_key_;
  std::deque<std::string> order_; // oldest first
  size_t bytes_ = 0;
};

} // namespace switchyard::proxy
