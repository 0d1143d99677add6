#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace switchyard::proxy {

//! How far switchyard's own writes took the secondary's sequences. An INSERT's row image (as
//! well as a COPY's filled defaults and a journal replay) writes the ids the primary's
//! sequence gave (serial and identity columns) without drawing them from the secondary's
//! sequence, which then lags: a statement the secondary runs itself (a writing CTE, EXPLAIN
//! ANALYZE, CALL, a COPY) would draw ids already written. The highest id written is noted per
//! sequence (keyed by the secondary database and the sequence's qualified name); before the
//! secondary runs a statement of its own, the sequences of its database that were written
//! further are advanced. Thread-safe.
class SequenceMarks {
public:
  static constexpr size_t kMaxSequences = 65536;
  //! Sequences with the value to advance each to.
  using Advances = std::vector<std::pair<std::string, int64_t>>;

  //! What marks of the secondary's database `database` are kept by: a role swap or another
  //! secondary starts afresh.
  static std::string database_key(std::string_view secondary_uri, uint64_t role_generation,
                                  std::string_view database) {
    std::string key(secondary_uri);
    key += '\0';
    key += std::to_string(role_generation);
    key += '\0';
    key += database;
    return key;
  }

  //! `value` was written to a column drawing from `sequence` in database `database`.
  void note(const std::string& database, const std::string& sequence, int64_t value) {
    std::lock_guard lock(mutex_);
    Database& marks = databases_[database];
    auto found = marks.marks.find(sequence);
    if (found == marks.marks.end()) {
      if (marks.marks.size() >= kMaxSequences) return;
      found = marks.marks.emplace(sequence, Mark{}).first;
    }
    if (value <= found->second.written) return;
    found->second.written = value;
    if (value > found->second.advanced) marks.lagging.insert(sequence);
  }

  //! The sequences of `database` written beyond where they were last advanced, with the value
  //! to advance each to. They count as advanced from now on (setval is not undone by a
  //! rollback) unless the batch that sends them fails and puts them back.
  Advances take_lagging(const std::string& database) {
    Advances lagging;
    std::lock_guard lock(mutex_);
    auto found = databases_.find(database);
    if (found == databases_.end()) return lagging;
    Database& marks = found->second;
    for (const std::string& sequence : marks.lagging) {
      Mark& mark = marks.marks[sequence];
      mark.advanced = mark.written;
      lagging.emplace_back(sequence, mark.written);
    }
    marks.lagging.clear();
    return lagging;
  }

  //! Advances taken that may not have run (their batch failed on the secondary): lagging
  //! again unless advanced further since. Sending one twice is harmless, it only moves on.
  void put_back(const std::string& database, const Advances& advances) {
    if (advances.empty()) return;
    std::lock_guard lock(mutex_);
    auto noted = databases_.find(database);
    if (noted == databases_.end()) return;
    Database& marks = noted->second;
    for (const auto& [sequence, value] : advances) {
      auto found = marks.marks.find(sequence);
      if (found == marks.marks.end() || found->second.advanced > value) continue;
      found->second.advanced = 0;
      marks.lagging.insert(sequence);
    }
  }

private:
  struct Mark {
    int64_t written = 0;  // the highest id an image wrote
    int64_t advanced = 0; // the value the sequence was last advanced to
  };
  struct Database {
    std::map<std::string, Mark> marks;
    std::set<std::string> lagging; // written beyond advanced
  };
  std::mutex mutex_;
  std::map<std::string, Database> databases_;
};

} // namespace switchyard::proxy
