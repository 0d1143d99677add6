#pragma once

#include <memory>
#include <string>

#include "monitoring/relay_stats.hpp"
#include "proxy/backend_connector.hpp"
#include "proxy/closing.hpp"
#include "proxy/services.hpp"
#include "proxy/session_activity.hpp"
#include "routing/read_router.hpp"

namespace switchyard::proxy {

//! The relay of a session whose writes are mirrored to a secondary. Unlike the byte relay
//! it works message by message: it classifies every statement, runs row-image writes with
//! RETURNING on the primary and strips what the client did not ask for, wraps autocommit
//! writes in a transaction, and applies each transaction's writes to the secondary just
//! before the primary commits. The client sees exactly what the primary alone would send.
//! Safe reads of sessions in the read cohort are answered by the secondary instead (and
//! retried on the primary when it fails); a sample of reads is compared across the two.
class MirrorRelay {
public:
  MirrorRelay(Stream& client, BackendSession& primary, Services& services,
              std::shared_ptr<const Runtime> runtime, monitoring::RelayStats& stats,
              SessionActivity& activity, const std::string& primary_database,
              LoginRequest secondary_login, routing::SessionIdentity identity, std::string peer,
              const std::string& client_leftover);
  ~MirrorRelay();
  MirrorRelay(const MirrorRelay&) = delete;
  MirrorRelay& operator=(const MirrorRelay&) = delete;

  //! Relays until the client or the primary ends the session; then leaves what it read of
  //! the primary past the last answer in the BackendSession's `leftover`.
  asio::awaitable<Closing> run();
  //! Ends the secondary connection politely (async mode: once this session's committed
  //! writes are applied or journaled); call once run() is over.
  asio::awaitable<void> finish();

private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

} // namespace switchyard::proxy
