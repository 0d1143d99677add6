#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <iterator>
#include <map>
#include <mutex>
#include <optional>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "proxy/asio.hpp"

namespace switchyard::proxy {

//! Orders the async-mirrored transactions of all sessions as the primary committed them.
//! Each takes a ticket just before its COMMIT goes to the primary (while it still holds its
//! row locks), naming the rows it wrote (hashed keys); it may apply to the secondary once
//! every earlier transaction that wrote one of those rows is done, so conflicting writes
//! land in the primary's order while unrelated ones apply side by side. A barrier (DDL, a
//! statement without row keys) waits for every earlier one and every later one waits for it.
//! DDL run on its own takes its barrier as it is sent (take_ddl_barrier), before the primary
//! has run it: what commits after that may have seen it (see take). Thread-safe; every
//! ticket taken must be passed to done() exactly once, or its dependents wait forever.
class CommitOrder {
public:
  //! Where the order stands: a transaction notes it as it begins, for take's `began`.
  uint64_t position() const { return next_.load(); }

  //! The next ticket, for a transaction that wrote the rows `keys` (or a `barrier`). A
  //! transaction that `began` (position()) before DDL that the primary has not answered yet
  //! was sent may be what holds that DDL back there (the DDL waits for its locks): it goes
  //! before the DDL's barrier, unless it wrote a row after a transaction that goes after it.
  uint64_t take(const std::vector<uint64_t>& keys, bool barrier,
                std::optional<uint64_t> began = std::nullopt) {
    std::lock_guard lock(mutex_);
    uint64_t ticket = next_++;
    Entry entry;
    entry.barrier = barrier;
    for (uint64_t key : keys) {
      auto [at, inserted] = last_writer_.try_emplace(key, ticket);
      if (!inserted) {
        if (outstanding_.count(at->second) > 0) entry.depends.push_back(at->second);
        at->second = ticket;
      }
    }
    entry.rank = Rank{ticket, kOwnPlace};
    if (began) {
      // The first of the trailing barriers of running DDL sent after it began, and not
      // before a row's earlier writer: it goes just before that barrier.
      auto before = barriers_.end();
      while (before != barriers_.begin()) {
        auto previous = std::prev(before);
        if (!outstanding_.at(previous->second).running || previous->second < *began) break;
        before = previous;
      }
      for (uint64_t writer : entry.depends) {
        while (before != barriers_.end() && before->first < outstanding_.at(writer).rank)
          ++before;
      }
      if (before != barriers_.end()) entry.rank = Rank{before->first.place, next_ahead_++};
    }
    add(ticket, std::move(entry));
    return ticket;
  }

  //! A barrier for DDL about to go to the primary on its own (its own transaction): every
  //! transaction that takes a ticket later goes after it, but for those that began before it
  //! was sent while the primary has yet to answer the DDL (see take). `ddl_answered` ends that.
  uint64_t take_ddl_barrier() {
    std::lock_guard lock(mutex_);
    uint64_t ticket = next_++;
    Entry entry;
    entry.barrier = true;
    entry.running = true;
    entry.rank = Rank{ticket, kOwnPlace};
    add(ticket, std::move(entry));
    return ticket;
  }

  //! The primary answered the DDL of `barrier` (take_ddl_barrier): whatever held it back
  //! there has taken its ticket by now.
  void ddl_answered(uint64_t barrier) {
    std::lock_guard lock(mutex_);
    if (auto found = outstanding_.find(barrier); found != outstanding_.end())
      found->second.running = false;
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
    ranked_.erase(found->second.rank);
    barriers_.erase(found->second.rank);
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
  //! A ticket's place in the order: its own (the ticket, kOwnPlace), or just before a
  //! barrier's (that barrier's ticket, then the order such places were given in).
  struct Rank {
    uint64_t place = 0;
    uint64_t ahead = 0;
    bool operator<(const Rank& other) const {
      return std::tie(place, ahead) < std::tie(other.place, other.ahead);
    }
  };
  static constexpr uint64_t kOwnPlace = UINT64_MAX;

  struct Entry {
    Rank rank;
    bool barrier = false;
    bool running = false; // a DDL barrier the primary has not answered yet
    std::vector<uint64_t> keys;
    //! Tickets ranked before it that wrote one of the same rows, and the barrier before it.
    std::vector<uint64_t> depends;
  };
  struct Waiter {
    asio::any_io_executor executor;
    asio::steady_timer* timer = nullptr;
  };

  void add(uint64_t ticket, Entry entry) {
    if (!entry.barrier) {
      auto after = barriers_.lower_bound(entry.rank);
      if (after != barriers_.begin()) entry.depends.push_back(std::prev(after)->second);
    } else {
      barriers_.emplace(entry.rank, ticket);
    }
    ranked_.emplace(entry.rank, ticket);
    outstanding_.emplace(ticket, std::move(entry));
  }

  bool ready(uint64_t ticket) const {
    auto found = outstanding_.find(ticket);
    if (found == outstanding_.end()) return true;
    if (found->second.barrier) return ranked_.begin()->second == ticket; // all before done
    for (uint64_t earlier : found->second.depends) {
      if (outstanding_.count(earlier) > 0) return false;
    }
    return true;
  }

  mutable std::mutex mutex_;
  std::atomic<uint64_t> next_ = 0; // written under mutex_; position() reads it without
  uint64_t next_ahead_ = 0;
  std::map<uint64_t, Entry> outstanding_;              // by ticket
  std::map<Rank, uint64_t> ranked_;                    // the outstanding tickets in their order
  std::map<Rank, uint64_t> barriers_;                  // the outstanding barriers in their order
  std::unordered_map<uint64_t, uint64_t> last_writer_; // row key -> last ticket writing it
  std::map<uint64_t, Waiter> waiters_;
};

} // namespace switchyard::proxy
