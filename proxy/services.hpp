#pragma once

#include <atomic>
#include <memory>
#include <mutex>

#include "backfill/journal.hpp"
#include "monitoring/metrics.hpp"
#include "proxy/cancel_registry.hpp"
#include "proxy/commit_order.hpp"
#include "proxy/runtime.hpp"

namespace switchyard::proxy {

//! What every session shares: the current runtime (swapped by reloads), metrics, the cancel
//! registry and the client count. Thread-safe.
class Services {
public:
  Services(std::shared_ptr<const Runtime> runtime, monitoring::Metrics& metrics)
      : runtime_(std::move(runtime)), metrics_(metrics) {
    read_share_ = runtime_->config->read_routing.percent;
    overrides_apply_ = true;
    refresh_read_policy();
  }

  std::shared_ptr<const Runtime> runtime() const {
    std::lock_guard lock(mutex_);
    return runtime_;
  }
  void set_runtime(std::shared_ptr<const Runtime> runtime) {
    std::lock_guard lock(mutex_);
    runtime_ = std::move(runtime);
    refresh_read_policy();
  }
  //! The read routing in force: the config's, with the share the cutover state allows.
  std::shared_ptr<const config::ReadRouting> read_policy() const {
    std::lock_guard lock(mutex_);
    return read_policy_;
  }
  //! The cutover moved: `percent` of safe reads go to the new database; the config's
  //! per-user and per-application overrides apply only while `overrides_apply` (ramping).
  void set_read_share(double percent, bool overrides_apply) {
    std::lock_guard lock(mutex_);
    read_share_ = percent;
    overrides_apply_ = overrides_apply;
    refresh_read_policy();
  }
  monitoring::Metrics& metrics() { return metrics_; }
  CancelRegistry& cancels() { return cancels_; }
  std::atomic<uint32_t>& active_clients() { return active_clients_; }

  //! The divergence journal; null until a config with a secondary opened it.
  backfill::DivergenceJournal* journal() { return journal_.load(); }
  //! Opens the journal at `path` unless one is open already (it is opened once per process).
  Status open_journal(const std::string& path) {
    std::lock_guard lock(mutex_);
    if (journal_owner_) return Ok{};
    auto journal = backfill::DivergenceJournal::open(path);
    if (!journal) return Error{"mirror.journal: " + journal.error()};
    journal_owner_ = std::move(*journal);
    journal_.store(journal_owner_.get());
    metrics_.journal_backlog().Set(static_cast<double>(journal_owner_->backlog()));
    return Ok{};
  }
  //! Until when (steady-clock ticks) sessions skip the secondary after it failed, so a dead
  //! secondary costs one timeout per back-off period rather than one per write.
  std::atomic<int64_t>& secondary_down_until() { return secondary_down_until_; }
  //! The order async-mirrored transactions reach the secondary in: the primary's.
  CommitOrder& commit_order() { return commit_order_; }
  //! Bumped by every mirrored DDL so sessions drop their cached table shapes.
  std::atomic<uint64_t>& schema_epoch() { return schema_epoch_; }

private:
  void refresh_read_policy() {
    auto policy = std::make_shared<config::ReadRouting>(runtime_->config->read_routing);
    policy->percent = read_share_;
    if (!overrides_apply_) {
      policy->user_percent.clear();
      policy->application_percent.clear();
    }
    read_policy_ = std::move(policy);
  }

  mutable std::mutex mutex_;
  std::shared_ptr<const Runtime> runtime_;
  // Until the cutover controller says otherwise, the config decides alone.
  double read_share_ = 0;
  bool overrides_apply_ = false;
  std::shared_ptr<const config::ReadRouting> read_policy_;
  monitoring::Metrics& metrics_;
  CancelRegistry cancels_;
  std::atomic<uint32_t> active_clients_{0};
  std::unique_ptr<backfill::DivergenceJournal> journal_owner_;
  std::atomic<backfill::DivergenceJournal*> journal_{nullptr};
  std::atomic<int64_t> secondary_down_until_{0};
  std::atomic<uint64_t> schema_epoch_{0};
  CommitOrder commit_order_;
};

} // namespace switchyard::proxy
