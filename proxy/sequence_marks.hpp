#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace switchyard::proxy {

//! How far row images took the secondary's sequences. An INSERT's row image writes the ids
//! the primary's sequence gave (serial and identity columns) without drawing them from the
//! secondary's sequence, which then lags: a statement the secondary runs itself (a writing
//! CTE, EXPLAIN ANALYZE, CALL, a COPY) would draw ids the images already wrote. Sessions
//! note the highest id each image wrote per sequence (keyed by the secondary database and
//! the sequence's qualified name); before the secondary runs a statement of its own, the
//! sequences of its database that images took further are advanced. Thread-safe.
class SequenceMarks {
public:
  static constexpr size_t kMaxSequences = 65536;

  //! A row image wrote `value` to a column drawing from `sequence` in database `database`.
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

  //! The sequences of `database` that images took beyond where they were last advanced, with
  //! the value to advance each to. They count as advanced from now on: setval is not undone
  //! by a rollback, and one that failed is not worth failing every later statement for.
  std::vector<std::pair<std::string, int64_t>> take_lagging(const std::string& database) {
    std::vector<std::pair<std::string, int64_t>> lagging;
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
