#include "proxy/cutover_controller.hpp"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cmath>

#include "protocol/json.hpp"

namespace switchyard::proxy {
namespace {

namespace json = boost::json;
using monitoring::BackendRole;
using routing::CutoverAction;
using routing::CutoverCommand;
using routing::CutoverPhase;
using routing::CutoverState;

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string iso_time(int64_t ms) {
  std::time_t seconds = ms / 1000;
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &utc);
  char millis[8];
  std::snprintf(millis, sizeof millis, ".%03dZ", static_cast<int>(ms % 1000));
  return std::string(text) + millis;
}

std::vector<double> cumulative_buckets(prometheus::Histogram& histogram) {
  std::vector<double> counts;
  for (const auto& bucket : histogram.Collect().histogram.bucket) {
    counts.push_back(static_cast<double>(bucket.cumulative_count));
  }
  return counts;
}

// Commands that may apply without the fleet's Redis: a revert (safety first) and the
// config's own set-up at start.
bool applies_offline(const CutoverCommand& command) {
  return command.action == CutoverAction::kRevert || command.actor == "config";
}

std::string format_gate(const routing::GateReading& reading, std::chrono::milliseconds window) {
  return fmt::format("{} {:.4g} over the limit {:.4g} in the last {}s ({} samples)", reading.name,
                     reading.value, reading.threshold, window.count() / 1000, reading.samples);
}

} // namespace

CutoverController::CutoverController(Services& services, std::string proxy_id)
    : services_(services), proxy_id_(std::move(proxy_id)) {}

CutoverController::~CutoverController() {
  fleet_.reset(); // stops the watcher before the rest goes
}

Status CutoverController::start(const config::Config& config) {
  std::string error;
  audit_ = monitoring::AuditLog::open(config.cutover.audit_log, error);
  if (!audit_) return Error{"cutover.audit_log: " + error};
  state_file_ = std::make_unique<StateFile>(config.cutover.state_file);
  auto saved = state_file_->load();
  if (!saved) return Error{"cutover.state_file: " + saved.error()};
  std::lock_guard lock(mutex_);
  if (*saved) {
    state_ = (*saved)->state;
    config_read_percent_ = (*saved)->config_read_percent;
  }
  if (!config.fleet.redis_url.empty()) {
    fleet_ = std::make_unique<RedisFleet>(config.fleet);
    auto stored = fleet_->load();
    fleet_connected_ = stored.ok();
    if (stored && *stored) {
      state_ = **stored;
      save_locked();
    } else if (!stored) {
      spdlog::warn("cutover: {}; starting from the last known state (version {}) and "
                   "following the fleet once it answers",
                   stored.error(), state_.version);
    }
  }
  bool fresh = state_.version == 0;
  std::string why = "set up from " + config.source;
  if (config.secondary && state_.phase == CutoverPhase::kPrimaryOnly) {
    auto applied = apply_locked({CutoverAction::kStartMirroring, 0, "config", why});
    if (!applied) return Error{"cutover: " + applied.error()};
  }
  // A read_percent set at first start, or edited while the proxy was down, is a ramp.
  double percent = config.read_routing.percent;
  bool edited = config_read_percent_ && *config_read_percent_ != percent;
  if (config.secondary && ((fresh && percent > 0) || edited)) {
    auto applied = apply_locked({CutoverAction::kRamp, percent, "config",
                                 fmt::format("read_percent {} in {}", percent, config.source)});
    if (!applied)
      spdlog::warn("cutover: read_percent {} not applied: {}", percent, applied.error());
  }
  config_read_percent_ = percent;
  save_locked();
  publish_locked();
  spdlog::info("cutover: {} (version {}, reads on the new database {} %), state in {}",
               routing::to_string(state_.phase), state_.version,
               routing::cutover_read_percent(state_),
               fleet_ ? "Redis " + config.fleet.host + ":" + std::to_string(config.fleet.port)
                      : state_file_->path());
  if (fleet_) {
    fleet_->watch([this](const std::optional<CutoverState>& stored) { on_fleet_state(stored); },
                  [this](bool connected) { on_fleet_health(connected); }, proxy_id_,
                  [this] {
                    std::lock_guard guard(mutex_);
                    json::object beat;
                    beat["proxy"] = proxy_id_;
                    beat["phase"] = routing::to_string(state_.phase);
                    beat["read_percent"] = json_number(routing::cutover_read_percent(state_));
                    beat["version"] = state_.version;
                    return json::serialize(beat);
                  },
                  [this](std::vector<std::string> members) {
                    std::lock_guard guard(mutex_);
                    fleet_members_ = std::move(members);
                  });
  }
  return Ok{};
}

Result<CutoverState> CutoverController::apply(const CutoverCommand& command) {
  std::lock_guard lock(mutex_);
  return apply_locked(command);
}

Result<CutoverState> CutoverController::apply_locked(const CutoverCommand& command) {
  int64_t now = now_ms();
  // The new database becomes the primary of record: it must not be missing any write.
  backfill::DivergenceJournal* journal = services_.journal();
  if (command.action == CutoverAction::kPromote && journal != nullptr && journal->backlog() > 0) {
    return Error{fmt::format("cannot promote while the divergence journal holds {} writes the new "
                             "database missed; promote once they are replayed "
                             "(switchyard_journal_backlog is 0)",
                             journal->backlog())};
  }
  // With a fleet another proxy may change the state first; then the command applies to its.
  for (int attempt = 0; attempt < 3; ++attempt) {
    auto next = routing::apply_cutover(state_, command, now);
    if (!next) return Error{next.error()};
    if (fleet_) {
      auto swap = fleet_->compare_and_set(*next, state_.version);
      if (!swap && !applies_offline(command)) {
        return Error{swap.error() + "; until it answers only revert is possible here"};
      }
      if (!swap) {
        spdlog::warn("cutover: {}; the {} applies here now and reaches the fleet once Redis "
                     "answers",
                     swap.error(), routing::to_string(command.action));
        unpublished_.push_back(command);
      } else if (!swap->written) {
        if (swap->current) install_locked(*swap->current, nullptr);
        continue;
      }
    }
    install_locked(*next, &command);
    return *next;
  }
  return Error{"the fleet's state kept changing under this command; try again"};
}

// Makes `next` the state here: saved, audited (when `command` was made here), and in force.
void CutoverController::install_locked(const CutoverState& next, const CutoverCommand* command) {
  CutoverState before = state_;
  state_ = next;
  save_locked();
  if (before.phase != state_.phase) window_.clear(); // each phase is judged on its own traffic
  auto& metrics = services_.metrics();
  if (command != nullptr) {
    json::object entry;
    entry["time"] = iso_time(state_.changed_at_ms);
    entry["proxy"] = proxy_id_;
    entry["actor"] = command->actor;
    entry["action"] = routing::to_string(command->action);
    if (command->action == CutoverAction::kRamp) entry["percent"] = json_number(command->percent);
    entry["from"] = routing::to_string(before.phase);
    entry["to"] = routing::to_string(state_.phase);
    entry["read_percent"] = json_number(routing::cutover_read_percent(state_));
    entry["version"] = state_.version;
    entry["reason"] = command->reason;
    if (command->actor.starts_with("gate:")) entry["gate_evaluation"] = evaluations_;
    if (std::string error; !audit_->append(json::serialize(entry), error)) {
      spdlog::error("cutover: {}", error);
    }
    metrics.cutover_transitions()
        .Add({{"action", routing::to_string(command->action)}})
        .Increment();
    if (command->action == CutoverAction::kRevert) {
      std::string reason =
          command->actor.starts_with("gate:") ? command->actor.substr(5) : "manual";
      metrics.cutover_reverts().Add({{"reason", reason}}).Increment();
    }
    spdlog::info("cutover: {} -> {} (reads on the new database {} %) by {}: {}",
                 routing::to_string(before.phase), routing::to_string(state_.phase),
                 routing::cutover_read_percent(state_), command->actor, command->reason);
  } else {
    spdlog::info("cutover: the fleet moved to {} (version {}, reads on the new database {} %) "
                 "by {}: {}",
                 routing::to_string(state_.phase), state_.version,
                 routing::cutover_read_percent(state_), state_.actor, state_.reason);
  }
  publish_locked();
}

void CutoverController::save_locked() {
  if (auto s = state_file_->save({state_, config_read_percent_}); !s) {
    spdlog::error("cutover: the state holds here but is not saved: {}", s.error());
  }
}

// Puts the state in force: the sessions' read share and the state's metrics.
void CutoverController::publish_locked() {
  double percent = routing::cutover_read_percent(state_);
  bool swapped = routing::roles_swapped(state_.phase);
  if (services_.set_roles_swapped(swapped)) {
    services_.secondary_down_until().store(0); // that was the other database
    services_.secondary_reads_down_until().store(0);
    spdlog::info("cutover: the {} database is now the primary of record (role generation {}); "
                 "sessions with the old roles end at their next idle point, and writes of new "
                 "sessions wait for them",
                 swapped ? "new" : "old", services_.role_fence().generation());
  }
  // With swapped roles every read goes to the primary, which is the new database.
  services_.set_read_share(swapped ? 0 : percent, state_.phase == CutoverPhase::kRamping);
  auto& metrics = services_.metrics();
  for (auto phase : {CutoverPhase::kPrimaryOnly, CutoverPhase::kMirroring, CutoverPhase::kRamping,
                     CutoverPhase::kPromoted, CutoverPhase::kFinalized, CutoverPhase::kReverted}) {
    metrics.cutover_phase()
        .Add({{"phase", routing::to_string(phase)}})
        .Set(phase == state_.phase ? 1 : 0);
  }
  metrics.cutover_read_percent().Set(percent);
  metrics.cutover_version().Set(static_cast<double>(state_.version));
}

void CutoverController::on_fleet_health(bool connected) {
  std::lock_guard lock(mutex_);
  if (connected != fleet_connected_) {
    if (connected) {
      spdlog::info("cutover: fleet Redis answers again");
    } else {
      spdlog::warn("cutover: fleet Redis is away; serving with the last known state "
                   "(version {}) until it returns",
                   state_.version);
    }
  }
  fleet_connected_ = connected;
  services_.metrics().fleet_connected().Set(connected ? 1 : 0);
}

// Converges with what Redis holds: newer states are adopted; commands applied here while
// Redis was away are re-applied on top of it; a Redis that lost the state gets ours back.
void CutoverController::on_fleet_state(const std::optional<CutoverState>& stored) {
  std::lock_guard lock(mutex_);
  if (!stored) {
    // Redis lost the state (restarted without persistence): it gets ours, changes made
    // while it was away included.
    auto swap = fleet_->compare_and_set(state_, 0);
    if (swap && swap->written) unpublished_.clear();
    return;
  }
  if (!unpublished_.empty()) {
    CutoverState base = *stored;
    uint64_t expected = stored->version;
    for (const CutoverCommand& command : unpublished_) {
      auto next = routing::apply_cutover(base, command, now_ms());
      if (!next) continue; // e.g. the fleet reverted too
      auto swap = fleet_->compare_and_set(*next, expected);
      if (!swap) return;          // away again: try on the next reconcile
      if (!swap->written) return; // moved meanwhile: the next reconcile tries on its state
      base = *next;
      expected = next->version;
    }
    unpublished_.clear();
    spdlog::info("cutover: changes made while Redis was away are now the fleet's (version {})",
                 base.version);
    if (base != state_) install_locked(base, nullptr);
    return;
  }
  if (stored->version < state_.version) {
    // Redis holds an older state than ours (it restarted from an old snapshot): it gets ours.
    (void)fleet_->compare_and_set(state_, stored->version);
    return;
  }
  if (*stored != state_) install_locked(*stored, nullptr);
}

void CutoverController::config_reloaded(const config::Config& before, const config::Config& after) {
  std::string why = "config reload of " + after.source;
  if (after.secondary && state().phase == CutoverPhase::kPrimaryOnly) {
    if (auto applied = apply({CutoverAction::kStartMirroring, 0, "config reload", why}); !applied) {
      spdlog::warn("cutover: the reload's secondary does not start mirroring: {}", applied.error());
    }
  }
  double percent = after.read_routing.percent;
  if (percent != before.read_routing.percent) {
    auto applied = apply({CutoverAction::kRamp, percent, "config reload",
                          fmt::format("read_percent {} -> {} in {}", before.read_routing.percent,
                                      percent, after.source)});
    if (!applied)
      spdlog::warn("cutover: read_percent {} not applied: {}", percent, applied.error());
  }
  std::lock_guard lock(mutex_);
  config_read_percent_ = percent;
  save_locked();
  publish_locked(); // the new config's overrides
}

routing::GateCounters CutoverController::sample_counters() const {
  auto& metrics = services_.metrics();
  routing::GateCounters counters;
  counters.at_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::steady_clock::now().time_since_epoch())
                       .count();
  for (size_t i = 0; i < static_cast<size_t>(monitoring::RouteReason::kCount); ++i) {
    counters.secondary_ok +=
        metrics.reads(BackendRole::kSecondary, static_cast<monitoring::RouteReason>(i)).Value();
  }
  for (size_t i = 0; i < static_cast<size_t>(monitoring::MirrorKind::kCount); ++i) {
    counters.secondary_ok += metrics.mirrored(static_cast<monitoring::MirrorKind>(i)).Value();
  }
  for (size_t i = 0; i < static_cast<size_t>(monitoring::ReadFallback::kCount); ++i) {
    counters.secondary_failed +=
        metrics.read_fallbacks(static_cast<monitoring::ReadFallback>(i)).Value();
  }
  // Cohort reads the secondary could not take because it failed moments before.
  counters.secondary_failed +=
      metrics.reads(BackendRole::kPrimary, monitoring::RouteReason::kSecondaryUnavailable).Value();
  for (auto failure :
       {monitoring::MirrorFailure::kConnect, monitoring::MirrorFailure::kTimeout,
        monitoring::MirrorFailure::kSecondaryError, monitoring::MirrorFailure::kRowCount}) {
    counters.secondary_failed += metrics.mirror_failures(failure).Value();
  }
  counters.primary_latency = cumulative_buckets(metrics.read_seconds(BackendRole::kPrimary));
  counters.secondary_latency = cumulative_buckets(metrics.read_seconds(BackendRole::kSecondary));
  counters.shadow_match = metrics.shadow_comparisons(monitoring::ShadowResult::kMatch).Value();
  counters.shadow_mismatch =
      metrics.shadow_comparisons(monitoring::ShadowResult::kMismatch).Value();
  counters.clients_accepted = metrics.clients_accepted().Value();
  counters.primary_failed =
      metrics.backend_connect_failures(BackendRole::kPrimary).Value() +
      metrics.client_closed(monitoring::CloseReason::kBackendDisconnect).Value();
  if (auto* journal = services_.journal()) {
    counters.journal_backlog = static_cast<double>(journal->backlog());
  }
  return counters;
}

void CutoverController::evaluate_gates(const config::Config& config) {
  const config::CutoverSettings& plan = config.cutover;
  routing::GateCounters counters = sample_counters();
  std::lock_guard lock(mutex_);
  window_.add(std::move(counters), plan.gate_window);
  config::CutoverSettings judged = plan;
  // Without shadow comparisons there is nothing for that gate to wait for.
  if (config.read_routing.compare_percent <= 0) judged.shadow_mismatch_rate.enabled = false;
  readings_ = window_.evaluate(judged, monitoring::kLatencyBuckets);
  ++evaluations_;
  auto& metrics = services_.metrics();
  metrics.cutover_stale_sessions().Set(
      static_cast<double>(services_.role_fence().stale_sessions()));
  for (const auto& reading : readings_) {
    prometheus::Labels labels{{"gate", std::string(reading.name)}};
    metrics.gate_value().Add(labels).Set(reading.value);
    metrics.gate_threshold().Add(labels).Set(reading.threshold);
    metrics.gate_samples().Add(labels).Set(static_cast<double>(reading.samples));
    metrics.gate_holds().Add(labels).Set(reading.verdict == routing::GateVerdict::kHolds ? 1 : 0);
  }
  std::vector<routing::GateReading> in_force = routing::judged_in(readings_, state_.phase);
  if (auto breach = routing::first_breach(in_force)) {
    std::string actor = "gate:" + std::string(breach->name);
    auto reverted =
        apply_locked({CutoverAction::kRevert, 0, actor, format_gate(*breach, plan.gate_window)});
    if (!reverted) spdlog::error("cutover: {} could not revert: {}", actor, reverted.error());
    return;
  }
  if (state_.phase != CutoverPhase::kRamping || state_.paused || !plan.auto_advance) return;
  if (now_ms() - state_.changed_at_ms < plan.soak.count() || !routing::all_gates_hold(in_force)) {
    return;
  }
  if (fleet_ && !fleet_connected_) return; // the fleet advances together or not at all
  for (double step : plan.steps) {
    if (step <= state_.read_percent) continue;
    auto advanced = apply_locked({CutoverAction::kRamp, step, "ramp plan",
                                  fmt::format("every gate held for {}s at {} %",
                                              plan.soak.count() / 1000, state_.read_percent)});
    if (!advanced) spdlog::warn("cutover: the ramp plan could not advance: {}", advanced.error());
    return;
  }
}

asio::awaitable<void> CutoverController::run_gates() {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  while (true) {
    auto runtime = services_.runtime();
    timer.expires_after(runtime->config->cutover.gate_interval);
    auto [ec] = co_await timer.async_wait(use_tuple);
    if (ec) co_return;
    evaluate_gates(*services_.runtime()->config);
  }
}

CutoverState CutoverController::state() const {
  std::lock_guard lock(mutex_);
  return state_;
}

std::string CutoverController::status_json() const {
  auto runtime = services_.runtime();
  const config::CutoverSettings& plan = runtime->config->cutover;
  std::lock_guard lock(mutex_);
  json::object out;
  out["proxy"] = proxy_id_;
  json::value state = json::parse(routing::to_json(state_));
  out["state"] = state;
  out["reads_on_new_database_percent"] = json_number(routing::cutover_read_percent(state_));
  json::object roles;
  roles["primary_of_record"] = routing::roles_swapped(state_.phase) ? "new" : "old";
  roles["generation"] = services_.role_fence().generation();
  roles["stale_sessions"] = services_.role_fence().stale_sessions();
  roles["settled"] = services_.role_fence().settled(); // false: writes wait for the swap
  out["roles"] = std::move(roles);
  json::object ramp;
  json::array steps;
  for (double step : plan.steps)
    steps.push_back(json_number(step));
  ramp["steps"] = std::move(steps);
  ramp["soak_seconds"] = json_number(plan.soak.count() / 1000.0);
  ramp["auto_advance"] = plan.auto_advance;
  for (double step : plan.steps) {
    if (step > state_.read_percent) {
      ramp["next_step"] = json_number(step);
      break;
    }
  }
  out["ramp"] = std::move(ramp);
  json::array gates;
  // Whether each gate may revert or hold back the ramp in this phase (see judged_in).
  std::vector<routing::GateReading> in_force = routing::judged_in(readings_, state_.phase);
  for (const auto& reading : readings_) {
    json::object gate;
    gate["name"] = reading.name;
    gate["value"] = json_number(reading.value);
    gate["threshold"] = json_number(reading.threshold);
    gate["samples"] = reading.samples;
    gate["min_samples"] = reading.min_samples;
    gate["verdict"] = routing::to_string(reading.verdict);
    gate["judged"] = std::any_of(in_force.begin(), in_force.end(),
                                 [&](const auto& judged) { return judged.name == reading.name; });
    gates.push_back(std::move(gate));
  }
  out["gates"] = std::move(gates);
  out["gate_evaluations"] = evaluations_;
  json::object fleet;
  fleet["enabled"] = fleet_ != nullptr;
  fleet["connected"] = fleet_connected_;
  fleet["unpublished_changes"] = unpublished_.size();
  json::array members;
  for (const std::string& member : fleet_members_) {
    json::error_code ec;
    json::value parsed = json::parse(member, ec);
    if (!ec && parsed.is_object()) members.push_back(std::move(parsed));
  }
  fleet["members"] = std::move(members);
  out["fleet"] = std::move(fleet);
  return json::serialize(out);
}

} // namespace switchyard::proxy
