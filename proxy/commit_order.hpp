#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <vector>

#include "proxy/asio.hpp"

namespace switchyard::proxy {

//! Orders the async-mirrored transactions of all sessions as the primary committed them.
//! Each takes a ticket when the primary confirms its commit, naming the rows it wrote
//! (hashed keys); it may apply to the secondary once every earlier transaction that wrote
//! one of those rows is done, so conflicting writes land in the primary's order while
//! unrelated ones apply side by side. A barrier (DDL, a statement without row keys) waits
//! for every earlier one and every later one waits for it. Thread-safe; every ticket taken
//! must be passed to done() exactly once, or its dependents wait forever.
class CommitOrder {
public:
  //! The next ticket, for a transaction that wrote the rows `keys` (or a `barrier`).
  uint64_t take(const std::vector<uint64_t>& keys, bool barrier) {
    std::lock_guard lock(mutex_);
    uint64_t ticket = next_++;
    Entry entry;
    entry.barrier = barrier;
    if (last_barrier_ && outstanding_.count(*last_barrier_) > 0) {
      entry.depends.push_back(*last_barrier_);
    }
    if (barrier) {
      last_barrier_ = ticket;
    } else {
      for (uint64_t key : keys) {
        auto [at, inserted] = last_writer_.try_emplace(key, ticket);
        if (!inserted) {
          if (outstanding_.count(at->second) > 0) entry.depends.push_back(at->second);
          at->second = ticket;
        }
      }
      entry.keys = keys;
    }
    outstanding_.emplace(ticket, std::move(entry));
    return ticket;
  }

  //! Waits until `ticket` may apply.
  asio::awaitable<void> wait_ready(uint64_t ticket) {
    auto executor = co_await asio::this_coro::executor;
    asio::steady_timer timer(executor, asio::steady_timer::time_point::max());
    while (true) {
      {
        std::lock_guard lock(mutex_);
        if (ready(ticket)) {
          waiters_.erase(ticket);
          co_return;
        }
        waiters_[ticket] = Waiter{executor, &timer};
      }
      co_await timer.async_wait(use_tuple);
      timer.expires_at(asio::steady_timer::time_point::max());
    }
  }

  //! Whether `ticket` may apply in one secondary transaction with `applying`, earlier
  //! tickets that may apply now: everything else it waits for is done. Never for a barrier.
  bool ready_with(uint64_t ticket, const std::vector<uint64_t>& applying) const {
    std::lock_guard lock(mutex_);
    auto found = outstanding_.find(ticket);
    if (found == outstanding_.end() || found->second.barrier) return false;
    for (uint64_t earlier : found->second.depends) {
      if (outstanding_.count(earlier) > 0 &&
          std::find(applying.begin(), applying.end(), earlier) == applying.end()) {
        return false;
      }
    }
    return true;
  }

  //! `ticket`'s transaction was applied or journaled (or its session is gone): its
  //! dependents may go.
  void done(uint64_t ticket) {
    std::lock_guard lock(mutex_);
    auto found = outstanding_.find(ticket);
    if (found == outstanding_.end()) return;
    for (uint64_t key : found->second.keys) {
      auto writer = last_writer_.find(key);
      if (writer != last_writer_.end() && writer->second == ticket) last_writer_.erase(writer);
    }
    outstanding_.erase(found);
    waiters_.erase(ticket);
    for (auto it = waiters_.begin(); it != waiters_.end();) {
      if (!ready(it->first)) {
        ++it;
        continue;
      }
      asio::steady_timer* timer = it->second.timer;
      // The timer belongs to the waiter's thread: wake it there.
      asio::post(it->second.executor, [timer] { timer->cancel(); });
      it = waiters_.erase(it);
    }
  }

  //! Transactions taken and not done yet (the async queue's length).
  size_t pending() const {
    std::lock_guard lock(mutex_);
    return outstanding_.size();
  }

private:
  struct Entry {
    bool barrier = false;
    std::vector<uint64_t> keys;
    std::vector<uint64_t> depends; // earlier tickets writing one of the same rows
  };
  struct Waiter {
    asio::any_io_executor executor;
    asio::steady_timer* timer = nullptr;
  };

  bool ready(uint64_t ticket) const {
    auto found = outstanding_.find(ticket);
    if (found == outstanding_.end()) return true;
    if (found->second.barrier) return outstanding_.begin()->first == ticket; // all before done
    for (uint64_t earlier : found->second.depends) {
      if (outstanding_.count(earlier) > 0) return false;
    }
    return true;
  }

  mutable std::mutex mutex_;
  uint64_t next_ = 0;
  std::map<uint64_t, Entry> outstanding_;
  std::unordered_map<uint64_t, uint64_t> last_writer_; // row key -> last ticket writing it
  std::optional<uint64_t> last_barrier_;
  std::map<uint64_t, Waiter> waiters_;
};

} // namespace switchyard::proxy
