#pragma once

#include <cstddef>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace switchyard::proxy {

//! What ApplyGroups knows of a commit waiting to go to the secondary with others.
struct GroupEntry {
  GroupEntry(const void* thread_context, size_t write_count)
      : thread(thread_context), writes(write_count) {}
  GroupEntry(const GroupEntry&) = delete;
  GroupEntry& operator=(const GroupEntry&) = delete;
  GroupEntry(GroupEntry&&) = delete;
  GroupEntry& operator=(GroupEntry&&) = delete;
  virtual ~GroupEntry() = default;

  const void* thread; //!< the network thread (its io_context) the committing session runs on
  size_t writes;      //!< how many writes it brings
};

//! The commits of plain writes that sessions of one login, on any network thread, are ready
//! to apply while an apply of that login is under way wait here and go to the secondary
//! together as the next group: one transaction under one Sync, one round trip, one commit
//! and one backend wake-up for many. One group of a login is applied at a time, so the
//! commits that arrive meanwhile gather into the next: two appliers would halve the groups
//! and the secondary would pay for twice the commits. No two members wrote the same row, so
//! their order in the group does not matter: in sync mode every member's primary holds its
//! row locks until then, in async mode each is ready in Services::commit_order, which no
//! commit is while an earlier one that wrote one of its rows is not done. The applier runs on
//! the network thread of one of its group's members and applies on that member's link, whose
//! connection belongs to that thread; the first member of each group is that one.
//! Thread-safe.
class ApplyGroups {
public:
  //! Queues `entry` for login `key`. True when no applier serves `key`: the caller starts one
  //! on its own thread.
  bool join(const std::string& key, std::shared_ptr<GroupEntry> entry) {
    std::lock_guard lock(mutex_);
    auto [queue, started] = queues_.try_emplace(key);
    queue->second.push_back(std::move(entry));
    return started;
  }

  struct Turn {
    //! The group to apply now: first a commit of the applier's thread, then the others in the
    //! order they came, up to the limits of next().
    std::vector<std::shared_ptr<GroupEntry>> group;
    //! Set when commits wait but none of the applier's thread: the applier ends and one starts
    //! on this commit's thread.
    std::shared_ptr<GroupEntry> elsewhere;
  };

  //! The next turn of the applier of `key`, which runs on `thread`: a group of at most
  //! `max_members` commits, taking no further commit once it holds `max_writes` writes. Both
  //! empty: no commit waits and the applier ends; the next join starts one.
  Turn next(const std::string& key, const void* thread, size_t max_members, size_t max_writes) {
    std::lock_guard lock(mutex_);
    Turn turn;
    auto found = queues_.find(key);
    if (found == queues_.end()) return turn;
    std::deque<std::shared_ptr<GroupEntry>>& waiting = found->second;
    if (waiting.empty()) {
      queues_.erase(found);
      return turn;
    }
    auto own = waiting.begin();
    while (own != waiting.end() && (*own)->thread != thread)
      ++own;
    if (own == waiting.end()) {
      turn.elsewhere = waiting.front();
      return turn;
    }
    size_t writes = (*own)->writes;
    turn.group.push_back(std::move(*own));
    waiting.erase(own);
    auto at = waiting.begin();
    while (at != waiting.end() && turn.group.size() < max_members && writes < max_writes) {
      writes += (*at)->writes;
      turn.group.push_back(std::move(*at));
      at = waiting.erase(at);
    }
    return turn;
  }

private:
  std::mutex mutex_;
  //! The commits waiting, by login key. A login is here exactly while an applier serves it:
  //! the join that adds it starts one, and the applier ends at the next() that removes it.
  std::map<std::string, std::deque<std::shared_ptr<GroupEntry>>> queues_;
};

} // namespace switchyard::proxy
