#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "backfill/journal.hpp"
#include "monitoring/metrics.hpp"
#include "proxy/apply_groups.hpp"
#include "proxy/backend_pool.hpp"
#include "proxy/bound_plans.hpp"
#include "proxy/cancel_registry.hpp"
#include "proxy/commit_order.hpp"
#include "proxy/function_volatility.hpp"
#include "proxy/oid_translation.hpp"
#include "proxy/prepared_transactions.hpp"
#include "proxy/role_fence.hpp"
#include "proxy/runtime.hpp"
#include "proxy/sequence_marks.hpp"
#include "proxy/shape_registry.hpp"

namespace switchyard::proxy {

class RelayLoops;

//! What every session shares: the current runtime (swapped by reloads and by the cutover's
//! role swap), metrics, the cancel registry and the client count. Thread-safe.
class Services {
public:
  Services(std::shared_ptr<const Runtime> runtime, monitoring::Metrics& metrics)
      : loaded_runtime_(std::move(runtime)), metrics_(metrics) {
    runtime_ = orient_runtime(*loaded_runtime_, false, role_fence_.generation());
    read_share_ = runtime_->config->read_routing.percent;
    overrides_apply_ = true;
    refresh_read_policy();
  }

  //! The runtime new sessions get: the loaded config with the roles the cutover set.
  std::shared_ptr<const Runtime> runtime() const {
    std::lock_guard lock(mutex_);
    return runtime_;
  }
  //! The config as loaded (primary and secondary as the file names them).
  std::shared_ptr<const Runtime> loaded_runtime() const {
    std::lock_guard lock(mutex_);
    return loaded_runtime_;
  }
  void set_runtime(std::shared_ptr<const Runtime> loaded) {
    std::lock_guard lock(mutex_);
    loaded_runtime_ = std::move(loaded);
    runtime_ = orient_runtime(*loaded_runtime_, roles_swapped_, role_fence_.generation());
    refresh_read_policy();
  }
  //! The cutover made the new database (`swapped`) or the old one the primary of record.
  //! A change starts a new role generation (see RoleFence); false when nothing changed.
  bool set_roles_swapped(bool swapped) {
    std::lock_guard lock(mutex_);
    if (swapped == roles_swapped_) return false;
    roles_swapped_ = swapped;
    uint64_t generation = role_fence_.advance(RoleFence::Clock::now());
    runtime_ = orient_runtime(*loaded_runtime_, roles_swapped_, generation);
    metrics_.cutover_roles_swapped().Set(swapped ? 1 : 0);
    return true;
  }
  //! A session begins: its runtime, with its role generation registered until leave_session.
  std::shared_ptr<const Runtime> enter_session() {
    std::lock_guard lock(mutex_);
    role_fence_.join(runtime_->role_generation);
    return runtime_;
  }
  void leave_session(const Runtime& runtime) { role_fence_.leave(runtime.role_generation); }
  RoleFence& role_fence() { return role_fence_; }

  //! A (client user, database) sessions use: after a role swap, the sequences of each are
  //! caught up on the new primary before writes go on (see role_swap.hpp).
  struct SessionDatabase {
    std::string user;
    std::string database;
    bool operator<(const SessionDatabase& other) const {
      return user != other.user ? user < other.user : database < other.database;
    }
  };
  //! A session of generation `generation` logged in to `db`. True when the session must
  //! catch up that database's sequences itself: its swap is settled, but without `db`.
  bool note_session_database(const SessionDatabase& db, uint64_t generation) {
    std::lock_guard lock(mutex_);
    if (known_databases_.size() < kMaxKnownDatabases) known_databases_.insert(db);
    if (generation == 0 || generation != role_fence_.generation() || !role_fence_.settled()) {
      return false; // never swapped, stale, or the settling swap takes it along
    }
    restart_catch_up_locked(generation);
    return caught_up_.insert(db).second;
  }
  //! The databases the swap to `generation` has not tried to catch up yet; they count as
  //! tried (and, until catch_up_failed, as caught up).
  std::vector<SessionDatabase> databases_to_catch_up(uint64_t generation) {
    std::lock_guard lock(mutex_);
    if (generation != role_fence_.generation()) return {};
    restart_catch_up_locked(generation);
    std::vector<SessionDatabase> todo;
    for (const auto& db : known_databases_) {
      if (attempted_.insert(db).second) todo.push_back(db);
    }
    caught_up_.insert(todo.begin(), todo.end());
    return todo;
  }
  //! The catch-up of `db` failed: the next session of it tries again.
  void catch_up_failed(const SessionDatabase& db, uint64_t generation) {
    std::lock_guard lock(mutex_);
    if (generation == caught_up_generation_) caught_up_.erase(db);
  }
  //! Settles the swap to `generation` unless sessions found a database it has not tried to
  //! catch up yet (then false: take those first).
  bool settle_role_swap(uint64_t generation) {
    std::lock_guard lock(mutex_);
    if (generation != role_fence_.generation()) return false;
    restart_catch_up_locked(generation);
    for (const auto& db : known_databases_) {
      if (attempted_.count(db) == 0) return false;
    }
    role_fence_.settle(generation);
    return true;
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
  BackendPool& backend_pool() { return backend_pool_; }
  std::atomic<uint32_t>& active_clients() { return active_clients_; }

  //! The divergence journal; null until a config with a secondary opened it.
  backfill::DivergenceJournal* journal() { return journal_.load(); }
  //! Opens the journal at `path` unless one is open already (it is opened once per process).
  Status open_journal(const std::string& path) {
    std::lock_guard lock(mutex_);
    if (journal_owner_) return Ok{};
    auto journal = backfill::DivergenceJournal::open(
        path, [this](double seconds) { metrics_.journal_flush_seconds().Observe(seconds); });
    if (!journal) return Error{"mirror.journal: " + journal.error()};
    journal_owner_ = std::move(*journal);
    journal_.store(journal_owner_.get());
    metrics_.journal_backlog().Set(static_cast<double>(journal_owner_->backlog()));
    return Ok{};
  }
  //! Until when (steady-clock ticks) sessions skip the secondary after it failed, so a dead
  //! secondary costs one timeout per back-off period rather than one per write.
  std::atomic<int64_t>& secondary_down_until() { return secondary_down_until_; }
  //! Until when sessions route no reads to the secondary after a read there failed or was
  //! slower than read_routing.timeout (writes go on).
  std::atomic<int64_t>& secondary_reads_down_until() { return secondary_reads_down_until_; }
  //! The order async-mirrored transactions reach the secondary in: the primary's.
  CommitOrder& commit_order() { return commit_order_; }
  //! What the async queues of all sessions keep in memory (mirror.async_queue_bytes).
  std::atomic<uint64_t>& async_queue_bytes() { return async_queue_bytes_; }
  //! Commits of every network thread gathered per login to reach the secondary together.
  ApplyGroups& apply_groups() { return apply_groups_; }
  //! Bumped by every mirrored DDL so sessions drop their cached table shapes.
  std::atomic<uint64_t>& schema_epoch() { return schema_epoch_; }
  //! Rewritten statements' Binds on their way to the primary, which DDL waits for.
  BoundPlans& bound_plans() { return bound_plans_; }
  //! When (steady-clock ticks) a session last sent DDL to the primary, and how many DDL
  //! batches the secondary has applied: a write the secondary refused for a table or column
  //! it lacks may have come between the primary's DDL and the secondary's (see
  //! SecondaryLink::try_apply).
  std::atomic<int64_t>& ddl_sent_at() { return ddl_sent_at_; }
  std::atomic<uint64_t>& secondary_ddl_applied() { return secondary_ddl_applied_; }
  //! Table shapes the sessions learned from the secondary.
  ShapeRegistry& shapes() { return shapes_; }
  //! How far row images took the secondary's sequences.
  SequenceMarks& sequence_marks() { return sequence_marks_; }
  //! The writes of transactions clients prepared, until they are committed or rolled back.
  PreparedTransactions& prepared_transactions() { return prepared_transactions_; }

  //! How long an OID translation is trusted, for objects changed behind switchyard's back.
  static constexpr auto kOidTranslationTtl = std::chrono::minutes(10);
  //! The OID translation the sessions between one pair of databases (`databases` names the
  //! pair and the role generation) share; a new one once a DDL through switchyard moved the
  //! schema epoch or the last one is kOidTranslationTtl old.
  std::shared_ptr<OidTranslation> oid_translation(const std::string& databases) {
    auto now = std::chrono::steady_clock::now();
    uint64_t epoch = schema_epoch_.load();
    std::lock_guard lock(mutex_);
    if (oid_translations_.size() >= kMaxKnownDatabases && !oid_translations_.contains(databases))
      oid_translations_.clear();
    OidTranslationEntry& entry = oid_translations_[databases];
    if (!entry.translation || entry.epoch != epoch || now - entry.created > kOidTranslationTtl) {
      entry = OidTranslationEntry{std::make_shared<OidTranslation>(), epoch, now};
    }
    return entry.translation;
  }

  //! What the sessions between one pair of databases (named as for oid_translation) learned
  //! of the primary's functions.
  std::shared_ptr<FunctionVolatility> function_volatility(const std::string& databases) {
    std::lock_guard lock(mutex_);
    if (function_volatility_.size() >= kMaxKnownDatabases &&
        !function_volatility_.contains(databases)) {
      function_volatility_.clear();
    }
    auto& known = function_volatility_[databases];
    if (!known) known = std::make_shared<FunctionVolatility>();
    return known;
  }

  //! The loops primary-only sessions without TLS are relayed on; null where there are none
  //! (those sessions then relay on their own coroutines). Set before the first session.
  RelayLoops* relay_loops() const { return relay_loops_; }
  void set_relay_loops(RelayLoops* loops) { relay_loops_ = loops; }

private:
  static constexpr size_t kMaxKnownDatabases = 1024;

  void restart_catch_up_locked(uint64_t generation) {
    if (caught_up_generation_ == generation) return;
    caught_up_generation_ = generation;
    attempted_.clear();
    caught_up_.clear();
  }

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
  std::shared_ptr<const Runtime> loaded_runtime_;
  std::shared_ptr<const Runtime> runtime_; // loaded_runtime_ oriented by roles_swapped_
  bool roles_swapped_ = false;
  RoleFence role_fence_;
  std::set<SessionDatabase> known_databases_;
  std::set<SessionDatabase> attempted_; // by the swap to caught_up_generation_
  std::set<SessionDatabase> caught_up_; // the same, less those that failed
  uint64_t caught_up_generation_ = 0;
  // Until the cutover controller says otherwise, the config decides alone.
  double read_share_ = 0;
  bool overrides_apply_ = false;
  std::shared_ptr<const config::ReadRouting> read_policy_;
  monitoring::Metrics& metrics_;
  CancelRegistry cancels_;
  BackendPool backend_pool_;
  std::atomic<uint32_t> active_clients_{0};
  std::unique_ptr<backfill::DivergenceJournal> journal_owner_;
  std::atomic<backfill::DivergenceJournal*> journal_{nullptr};
  std::atomic<int64_t> secondary_down_until_{0};
  std::atomic<int64_t> secondary_reads_down_until_{0};
  std::atomic<uint64_t> schema_epoch_{0};
  BoundPlans bound_plans_{schema_epoch_};
  std::atomic<int64_t> ddl_sent_at_{0};
  std::atomic<uint64_t> secondary_ddl_applied_{0};
  RelayLoops* relay_loops_ = nullptr;
  CommitOrder commit_order_;
  std::atomic<uint64_t> async_queue_bytes_{0};
  ApplyGroups apply_groups_;
  ShapeRegistry shapes_;
  SequenceMarks sequence_marks_;
  PreparedTransactions prepared_transactions_;
  struct OidTranslationEntry {
    std::shared_ptr<OidTranslation> translation;
    uint64_t epoch = 0;
    std::chrono::steady_clock::time_point created;
  };
  std::map<std::string, OidTranslationEntry> oid_translations_;
  std::map<std::string, std::shared_ptr<FunctionVolatility>> function_volatility_;
};

} // namespace switchyard::proxy
