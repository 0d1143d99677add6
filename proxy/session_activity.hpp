#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>

namespace switchyard::proxy {

//! What a session's idle watchdog and latency metric need to know about its traffic: the
//! transaction status, when it last moved, and when each pending Sync/Query was sent.
class SessionActivity {
public:
  using Clock = std::chrono::steady_clock;

  char transaction_status = 'I';
  Clock::time_point last_activity{};
  uint32_t syncs_in_flight = 0;

  //! A Query or Sync went to the primary at `now`.
  void sync_sent(Clock::time_point now) {
    ++syncs_in_flight;
    // Deeper pipelines than the ring are counted but not timed.
    if (timed_count_ < sync_times_.size()) {
      sync_times_[(timed_head_ + timed_count_) % sync_times_.size()] = now;
      ++timed_count_;
    }
  }

  //! A ReadyForQuery arrived; returns the seconds since its Sync/Query when it was timed.
  std::optional<double> ready_received(Clock::time_point now) {
    last_activity = now;
    if (syncs_in_flight > 0) --syncs_in_flight;
    if (timed_count_ == 0) return std::nullopt;
    std::chrono::duration<double> elapsed = now - sync_times_[timed_head_];
    timed_head_ = static_cast<uint8_t>((timed_head_ + 1) % sync_times_.size());
    --timed_count_;
    return elapsed.count();
  }

private:
  std::array<Clock::time_point, 16> sync_times_{};
  uint8_t timed_head_ = 0;
  uint8_t timed_count_ = 0;
};

} // namespace switchyard::proxy
