#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>

namespace switchyard::proxy {

//! Keeps writes in the two role orders apart when the cutover swaps which database is the
//! primary of record (promote, or a revert after it). Sync mirroring keeps the primary's
//! order and cannot deadlock only while every session writes to the same database first.
//! So each session carries the role generation it started with, and while a session of an
//! earlier generation is alive, writes of the current one wait; the earlier sessions are
//! closed at their next idle point. Then the new primary's sequences are caught up (they
//! did not move while it was mirrored to with explicit ids), and only then, once the
//! generation is settled, do writes go on. Thread-safe.
class RoleFence {
public:
  using Clock = std::chrono::steady_clock;

  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }
  //! Starts the next generation at `now`: every session alive becomes stale.
  uint64_t advance(Clock::time_point now) {
    std::lock_guard lock(mutex_);
    advanced_at_ = now;
    generation_.fetch_add(1, std::memory_order_acq_rel);
    refresh_locked();
    return generation_.load(std::memory_order_acquire);
  }
  //! When the current generation began (the time point of its swap).
  Clock::time_point advanced_at() const {
    std::lock_guard lock(mutex_);
    return advanced_at_;
  }

  //! A session of `generation` began; pair with leave().
  void join(uint64_t generation) {
    std::lock_guard lock(mutex_);
    ++live_[generation];
    refresh_locked();
  }
  void leave(uint64_t generation) {
    std::lock_guard lock(mutex_);
    auto found = live_.find(generation);
    if (found == live_.end()) return;
    if (--found->second == 0) live_.erase(found);
    refresh_locked();
  }

  //! Whether writes of the current generation must wait: sessions of an earlier one are
  //! still alive, or the swap is not settled yet. One atomic load, for the write path.
  bool draining() const { return draining_.load(std::memory_order_acquire); }
  //! The swap to `generation` is complete (its sequences caught up); writes may go on.
  void settle(uint64_t generation) {
    std::lock_guard lock(mutex_);
    settled_ = std::max(settled_, generation);
    refresh_locked();
  }
  //! Whether the current generation is settled.
  bool settled() const {
    std::lock_guard lock(mutex_);
    return settled_ >= generation_.load();
  }
  //! Sessions alive with roles from before the last swap.
  size_t stale_sessions() const {
    std::lock_guard lock(mutex_);
    size_t stale = 0;
    for (const auto& [generation, count] : live_) {
      if (generation < generation_.load(std::memory_order_acquire)) stale += count;
    }
    return stale;
  }

private:
  void refresh_locked() {
    bool stale = !live_.empty() && live_.begin()->first < generation_.load();
    draining_.store(stale || settled_ < generation_.load(), std::memory_order_release);
  }

  mutable std::mutex mutex_;
  std::map<uint64_t, size_t> live_; // sessions alive, by generation
  std::atomic<uint64_t> generation_{0};
  std::atomic<bool> draining_{false};
  uint64_t settled_ = 0; // the last generation whose swap completed
  Clock::time_point advanced_at_{};
};

} // namespace switchyard::proxy
