#include "proxy/relay_accounting.hpp"

namespace switchyard::proxy {

using monitoring::BackendRole;
using monitoring::CloseReason;
namespace sqlstate = protocol::sqlstate;

std::optional<Closing> scan_client_chunk(protocol::FrameScanner& scanner, std::string_view chunk,
                                         SessionActivity& activity, monitoring::RelayStats& stats,
                                         bool& terminate) {
  auto now = SessionActivity::Clock::now();
  activity.last_activity = now;
  uint32_t queries = 0;
  auto bad = scanner.scan(chunk, [&](const protocol::FrameScanner::Event& event) {
    switch (event.tag) {
    case 'Q':
    case 'F':
      ++queries;
      activity.sync_sent(now);
      break;
    case 'E': ++queries; break;
    case 'S': activity.sync_sent(now); break;
    case 'X': terminate = true; break;
    default: break;
    }
  });
  if (bad) {
    bool too_large = bad.fault == protocol::FrameFault::kTooLarge;
    return refuse(too_large ? CloseReason::kMessageTooLarge : CloseReason::kProtocolViolation,
                  sqlstate::kProtocolViolation, bad.reason);
  }
  stats.add_bytes_to_backend(BackendRole::kPrimary, chunk.size());
  stats.add_queries(BackendRole::kPrimary, queries);
  return std::nullopt;
}

std::string_view without_final_terminate(std::string_view chunk) {
  constexpr std::string_view kTerminate("X\0\0\0\4", 5);
  if (chunk.ends_with(kTerminate)) chunk.remove_suffix(kTerminate.size());
  return chunk;
}

std::optional<Closing> scan_primary_chunk(protocol::FrameScanner& scanner, std::string_view chunk,
                                          SessionActivity& activity,
                                          monitoring::RelayStats& stats) {
  uint32_t errors = 0;
  auto bad = scanner.scan(chunk, [&](const protocol::FrameScanner::Event& event) {
    if (event.tag == 'Z') {
      activity.transaction_status = event.peek.empty() ? 'I' : event.peek[0];
      if (auto seconds = activity.ready_received(SessionActivity::Clock::now())) {
        stats.observe_query_seconds(BackendRole::kPrimary, *seconds);
      }
    } else if (event.tag == 'E') {
      ++errors;
    }
  });
  if (bad) {
    return refuse(CloseReason::kProtocolViolation, sqlstate::kProtocolViolation,
                  "switchyard received invalid data from the primary database: " + bad.reason);
  }
  stats.add_bytes_from_backend(BackendRole::kPrimary, chunk.size());
  stats.add_backend_errors(BackendRole::kPrimary, errors);
  return std::nullopt;
}

std::optional<Closing> idle_closing(const SessionActivity& activity, const config::Limits& limits,
                                    SessionActivity::Clock::time_point now) {
  bool in_transaction = activity.transaction_status != 'I';
  auto timeout = in_transaction ? limits.idle_in_transaction_timeout : limits.client_idle_timeout;
  if (timeout.count() <= 0 || activity.syncs_in_flight > 0 ||
      now - activity.last_activity < timeout) {
    return std::nullopt;
  }
  if (in_transaction) {
    return refuse(CloseReason::kIdleInTransactionTimeout, sqlstate::kIdleInTransactionTimeout,
                  "terminating connection due to idle-in-transaction timeout");
  }
  return refuse(CloseReason::kIdleTimeout, sqlstate::kIdleSessionTimeout,
                "terminating connection due to idle-session timeout");
}

} // namespace switchyard::proxy
