#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace switchyard::proxy {

//! Idle backend connections that the sessions of one key (a backend and a login) take turns
//! on, always the first-ranked idle one (ranks are given in the order connections are first
//! given back): the first does most of the work and the later ones only what overlaps, so
//! few backend processes stay busy with warm caches, where one connection per session would
//! wake a cold process each time (on PostgreSQL, two to three times the CPU for the same
//! writes). There are never more idle connections of a key than sessions sharing it, and
//! one left idle longer than the caller's limit goes (checked whenever one is given back),
//! so a burst leaves no more backends behind than the load goes on needing. Not thread-safe: one
//! per network thread, as the connections belong to that thread's io_context. `Connection`
//! has a `uint64_t shared_rank` member, 0 until the pool ranks it.
template <class Connection> class SharedConnections {
public:
  using Owned = std::unique_ptr<Connection>;
  using Clock = std::chrono::steady_clock;

  //! A session starts sharing the connections of `key`.
  void join(const std::string& key) { ++entries_[key].sessions; }

  //! The first-ranked idle connection of `key`; null when none is idle.
  Owned take(const std::string& key) {
    auto found = entries_.find(key);
    if (found == entries_.end() || found->second.idle.empty()) return nullptr;
    Owned connection = std::move(found->second.idle.back().connection);
    found->second.idle.pop_back();
    return connection;
  }

  //! Gives back a connection any session of `key` may use as it is, at `now`. Returns what
  //! the caller closes: this one or another when `key` already has an idle connection per
  //! session (the last-ranked goes), and any idle for longer than `idle_limit`.
  std::vector<Owned> give_back(const std::string& key, Owned connection, Clock::duration idle_limit,
                               Clock::time_point now = Clock::now()) {
    Entry& entry = entries_[key];
    if (connection->shared_rank == 0) connection->shared_rank = ++ranked_;
    auto at = std::upper_bound(
        entry.idle.begin(), entry.idle.end(), connection->shared_rank,
        [](uint64_t rank, const Idle& idle) { return rank > idle.connection->shared_rank; });
    entry.idle.insert(at, Idle{std::move(connection), now});
    std::vector<Owned> surplus;
    if (entry.idle.size() > entry.sessions) {
      surplus.push_back(std::move(entry.idle.front().connection));
      entry.idle.erase(entry.idle.begin());
    }
    std::erase_if(entry.idle, [&](Idle& idle) {
      if (now - idle.since <= idle_limit) return false;
      surplus.push_back(std::move(idle.connection));
      return true;
    });
    return surplus;
  }

  //! A session of `key` stops sharing: the idle connections beyond one per session left,
  //! the last-ranked, for the caller to close.
  std::vector<Owned> leave(const std::string& key) {
    std::vector<Owned> surplus;
    auto found = entries_.find(key);
    if (found == entries_.end()) return surplus;
    Entry& entry = found->second;
    if (entry.sessions > 0) --entry.sessions;
    size_t extra = entry.idle.size() > entry.sessions ? entry.idle.size() - entry.sessions : 0;
    for (size_t i = 0; i < extra; ++i)
      surplus.push_back(std::move(entry.idle[i].connection));
    entry.idle.erase(entry.idle.begin(), entry.idle.begin() + static_cast<std::ptrdiff_t>(extra));
    if (entry.sessions == 0) entries_.erase(found);
    return surplus;
  }

  size_t idle(const std::string& key) const {
    auto found = entries_.find(key);
    return found == entries_.end() ? 0 : found->second.idle.size();
  }

  //! Drops every idle connection (the io_context is shutting down).
  void clear() { entries_.clear(); }

private:
  struct Idle {
    Owned connection;
    Clock::time_point since;
  };
  struct Entry {
    size_t sessions = 0;
    std::vector<Idle> idle; // by rank, the first-ranked at the back
  };
  std::map<std::string, Entry> entries_;
  uint64_t ranked_ = 0;
};

} // namespace switchyard::proxy
