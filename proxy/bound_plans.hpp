#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace switchyard::proxy {

//! Keeps rewritten statements (a write prepared with its row image `t.*`) from meeting DDL
//! between their Parse and a Bind. DDL that changes a table's columns changes what the
//! image returns, and PostgreSQL refuses to bind such a statement then ("cached plan must
//! not change result type", 0A000); a statement prepared again in the Bind's own
//! transaction cannot fail so (the Parse's locks hold the DDL off until the Bind ran). So:
//! - a statement is prepared again before its Bind when its epoch (plan_epoch(), taken as
//!   its Parse was sent) is not the schema epoch: DDL was sent since;
//! - one prepared while DDL is under way (sent, not answered) has no epoch: its Parse may
//!   have run before the DDL and its Bind after it;
//! - a Bind sent without preparing again holds its plan (hold()) until the primary answers
//!   it, and DDL on that table waits for the Binds held before it was sent: such a Bind may
//!   still reach PostgreSQL after the DDL (queued behind a lock, or behind its session's
//!   earlier messages).
//! Thread-safe.
class BoundPlans {
public:
  //! A Bind in flight, until destroyed. Move-only.
  class Hold {
  public:
    Hold() = default;
    Hold(Hold&& other) noexcept
        : plans_(std::exchange(other.plans_, nullptr)), table_(std::move(other.table_)),
          epoch_(other.epoch_) {}
    Hold& operator=(Hold&& other) noexcept {
      if (this != &other) {
        release();
        plans_ = std::exchange(other.plans_, nullptr);
        table_ = std::move(other.table_);
        epoch_ = other.epoch_;
      }
      return *this;
    }
    Hold(const Hold&) = delete;
    Hold& operator=(const Hold&) = delete;
    ~Hold() { release(); }

    //! The schema epoch the Bind goes with: a statement prepared at another must be prepared
    //! again first.
    uint64_t epoch() const { return epoch_; }

  private:
    friend class BoundPlans;
    Hold(BoundPlans* plans, std::string table, uint64_t epoch)
        : plans_(plans), table_(std::move(table)), epoch_(epoch) {}
    void release() {
      if (plans_ != nullptr) std::exchange(plans_, nullptr)->release(table_, epoch_);
    }

    BoundPlans* plans_ = nullptr;
    std::string table_;
    uint64_t epoch_ = 0;
  };

  //! DDL on its way to the primary, until destroyed (its answer is in, or never comes).
  struct EndDdl {
    void operator()(BoundPlans* plans) const {
      std::lock_guard lock(plans->mutex_);
      --plans->ddl_under_way_;
    }
  };
  using DdlUnderWay = std::unique_ptr<BoundPlans, EndDdl>;
  struct DdlSending {
    uint64_t epoch = 0; //!< the schema epoch the DDL moved to
    DdlUnderWay under_way;
  };

  explicit BoundPlans(std::atomic<uint64_t>& schema_epoch) : schema_epoch_(schema_epoch) {}

  //! The epoch to note for a statement whose Parse is being sent: none while DDL is under way.
  std::optional<uint64_t> plan_epoch() const {
    std::lock_guard lock(mutex_);
    if (ddl_under_way_ > 0) return std::nullopt;
    return schema_epoch_.load();
  }

  //! Holds a Bind of a statement writing `table` (its name, without schema), at the schema
  //! epoch as it is now.
  Hold hold(std::string_view table) {
    std::lock_guard lock(mutex_);
    uint64_t epoch = schema_epoch_.load();
    auto found = std::find_if(entries_.begin(), entries_.end(),
                              [&](const Entry& e) { return e.epoch == epoch && e.table == table; });
    if (found == entries_.end()) {
      entries_.push_back(Entry{std::string(table), epoch, 1});
    } else {
      ++found->count;
    }
    return Hold(this, std::string(table), epoch);
  }

  //! Moves the schema epoch for DDL about to be sent: Binds held from now on go with the new
  //! epoch, so those held before it are the ones held at an earlier one. The DDL is under
  //! way until `under_way` is destroyed.
  DdlSending ddl_sending() {
    std::lock_guard lock(mutex_);
    ++ddl_under_way_;
    return DdlSending{++schema_epoch_, DdlUnderWay(this)};
  }

  //! Whether a Bind held at an epoch before `epoch` on `table` is unanswered (on any table,
  //! when `table` is empty).
  bool held_before(uint64_t epoch, std::string_view table) const {
    std::lock_guard lock(mutex_);
    return std::any_of(entries_.begin(), entries_.end(), [&](const Entry& e) {
      return e.epoch < epoch && (table.empty() || e.table == table);
    });
  }

private:
  struct Entry {
    std::string table;
    uint64_t epoch = 0;
    size_t count = 0;
  };

  void release(const std::string& table, uint64_t epoch) {
    std::lock_guard lock(mutex_);
    auto found = std::find_if(entries_.begin(), entries_.end(),
                              [&](const Entry& e) { return e.epoch == epoch && e.table == table; });
    if (found != entries_.end() && --found->count == 0) entries_.erase(found);
  }

  std::atomic<uint64_t>& schema_epoch_;
  mutable std::mutex mutex_;
  std::vector<Entry> entries_; // few: one per table and epoch with Binds unanswered
  size_t ddl_under_way_ = 0;
};

} // namespace switchyard::proxy
