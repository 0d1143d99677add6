#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "config/config.hpp"
#include "protocol/result.hpp"
#include "routing/cutover.hpp"

struct redisContext;

namespace switchyard::proxy {

//! The cutover state shared by a fleet of proxies in Redis: one key holding the versioned
//! state as JSON, changed only by compare-and-set on its version and announced on a pub/sub
//! channel. Calls block (hiredis) for at most about a second; the watcher runs on its own
//! thread.
class RedisFleet {
public:
  //! A state announced, or (once a second) the stored one; nullopt when Redis holds none.
  using OnState = std::function<void(const std::optional<routing::CutoverState>&)>;
  using OnHealth = std::function<void(bool connected)>;

  explicit RedisFleet(config::FleetSettings settings);
  ~RedisFleet();
  RedisFleet(const RedisFleet&) = delete;
  RedisFleet& operator=(const RedisFleet&) = delete;

  //! The shared state; nullopt when Redis holds none yet; an Error when Redis is away.
  Result<std::optional<routing::CutoverState>> load();

  struct Swap {
    bool written = false;
    std::optional<routing::CutoverState> current; //!< when not written: what Redis holds
  };
  //! Stores and announces `next` if Redis still holds version `expected` (or nothing).
  Result<Swap> compare_and_set(const routing::CutoverState& next, uint64_t expected);

  //! What this proxy tells the fleet about itself (JSON), and what every live member said.
  using Heartbeat = std::function<std::string()>;
  using OnMembers = std::function<void(std::vector<std::string>)>;

  //! Starts the watcher: `on_state` gets every state announced and, once a second, what is
  //! stored (so a missed message or a Redis restart still converges); `on_health` says
  //! whether Redis answered. Once a second it also publishes `heartbeat` under
  //! `<key>:proxies:<id>` (expiring after a few seconds) and hands the live members'
  //! heartbeats to `on_members`. All run on the watcher's thread.
  void watch(OnState on_state, OnHealth on_health, const std::string& member_id,
             Heartbeat heartbeat, OnMembers on_members);

  const config::FleetSettings& settings() const { return settings_; }

private:
  redisContext* connect(std::string& error) const;
  std::string drop_command_connection();
  void watch_loop();
  void reconcile();
  void beat();

  config::FleetSettings settings_;
  std::string channel_;
  std::mutex command_mutex_;
  redisContext* command_ = nullptr;
  OnState on_state_;
  OnHealth on_health_;
  std::string member_key_;
  Heartbeat heartbeat_;
  OnMembers on_members_;
  std::atomic<bool> stopping_{false};
  std::mutex sleep_mutex_;
  std::condition_variable wake_;
  std::thread watcher_;
};

} // namespace switchyard::proxy
