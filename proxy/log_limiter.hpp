#pragma once

#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>

namespace switchyard::proxy {

//! Lets one warning of a kind through per second for the whole process, so a failing
//! secondary cannot make the log cost more than the traffic; metrics count every event.
//! Thread-safe; keep one per kind of warning (a function-local static).
class LogLimiter {
public:
  //! Whether a warning may be logged now; if so, `note` says how many were held back.
  bool due(std::string& note) {
    using Clock = std::chrono::steady_clock;
    int64_t now = Clock::now().time_since_epoch().count();
    int64_t due = next_due_.load();
    int64_t next =
        now + std::chrono::duration_cast<Clock::duration>(std::chrono::seconds(1)).count();
    if (now < due || !next_due_.compare_exchange_strong(due, next)) {
      ++skipped_;
      return false;
    }
    uint64_t skipped = skipped_.exchange(0);
    note = skipped == 0
               ? std::string()
               : fmt::format(" ({} similar warnings in the last second not logged)", skipped);
    return true;
  }

private:
  std::atomic<int64_t> next_due_{0};
  std::atomic<uint64_t> skipped_{0};
};

} // namespace switchyard::proxy
