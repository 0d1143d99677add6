#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "monitoring/audit_log.hpp"
#include "protocol/result.hpp"
#include "proxy/asio.hpp"
#include "proxy/fleet.hpp"
#include "proxy/services.hpp"
#include "proxy/state_file.hpp"
#include "routing/cutover.hpp"
#include "routing/gates.hpp"

namespace switchyard::proxy {

//! The running cutover: holds the state, persists every transition (Redis with a fleet, the
//! state file otherwise) and audits it, tells the sessions' read routing what share the
//! state allows, evaluates the gates on a timer (a breach reverts; holding gates advance the
//! ramp plan) and converges with the fleet. Thread-safe.
class CutoverController {
public:
  CutoverController(Services& services, std::string proxy_id);
  ~CutoverController();
  CutoverController(const CutoverController&) = delete;
  CutoverController& operator=(const CutoverController&) = delete;

  //! Loads the persisted state (the fleet's, else the state file) or sets one up from
  //! `config`, opens the audit log and starts following the fleet.
  Status start(const config::Config& config);

  //! Applies an operator's, the config's or the ramp plan's command: the new state, or why
  //! it is refused. With a fleet, a change other than a revert needs Redis; a revert always
  //! applies here at once and reaches Redis when it answers again.
  Result<routing::CutoverState> apply(const routing::CutoverCommand& command);

  //! A reload swapped the config: a changed read_percent becomes a ramp by "config reload".
  void config_reloaded(const config::Config& before, const config::Config& after);

  //! Every cutover.gates.interval: samples the metrics into the window, reverts on a breach,
  //! advances the ramp plan while all gates hold.
  asio::awaitable<void> run_gates();

  routing::CutoverState state() const;
  //! The admin API's status document (JSON).
  std::string status_json() const;

private:
  Result<routing::CutoverState> apply_locked(const routing::CutoverCommand& command);
  void install_locked(const routing::CutoverState& next, const routing::CutoverCommand* command);
  void publish_locked();
  void save_locked();
  void on_fleet_state(const std::optional<routing::CutoverState>& stored);
  void on_fleet_health(bool connected);
  void evaluate_gates(const config::Config& config);
  routing::GateCounters sample_counters() const;

  Services& services_;
  std::string proxy_id_;
  mutable std::mutex mutex_;
  routing::CutoverState state_;
  std::optional<double> config_read_percent_; //!< the config's, as last applied here
  std::unique_ptr<StateFile> state_file_;
  std::unique_ptr<monitoring::AuditLog> audit_;
  std::unique_ptr<RedisFleet> fleet_;
  bool fleet_connected_ = false;
  std::vector<std::string> fleet_members_; //!< the live proxies' heartbeats (JSON objects)
  //! Commands applied here while the fleet's Redis was away, to re-apply once it answers.
  std::vector<routing::CutoverCommand> unpublished_;
  routing::GateWindow window_;
  std::vector<routing::GateReading> readings_;
  uint64_t evaluations_ = 0; //!< gate evaluations so far; audit entries of gates name theirs
};

} // namespace switchyard::proxy
