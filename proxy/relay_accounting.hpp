#pragma once

#include <chrono>
#include <optional>
#include <string_view>

#include "config/config.hpp"
#include "monitoring/relay_stats.hpp"
#include "protocol/frame.hpp"
#include "proxy/closing.hpp"
#include "proxy/session_activity.hpp"

namespace switchyard::proxy {

//! What the primary-only relay notes about the bytes it passes on, shared by the coroutine
//! relay (TLS sessions) and the relay loop (no TLS).

//! Scans a chunk the client sent for the primary: counts its queries and bytes, marks the
//! session active, times each Query/Sync, and sets `terminate` when it holds a Terminate.
//! Returns the refusal when a message is malformed or over `max_message_size`.
std::optional<Closing> scan_client_chunk(protocol::FrameScanner& scanner, std::string_view chunk,
                                         SessionActivity& activity, monitoring::RelayStats& stats,
                                         bool& terminate);

//! `chunk` (in which scan_client_chunk found a Terminate) without the Terminate when that is
//! its last message: the session ends the backend connection itself, or keeps it for the
//! next client (BackendPool). A Terminate split across reads is relayed as it came.
std::string_view without_final_terminate(std::string_view chunk);

//! Scans a chunk the primary sent for the client: transaction status, query latency, errors
//! and bytes. Returns the refusal when the primary's data is malformed.
std::optional<Closing> scan_primary_chunk(protocol::FrameScanner& scanner, std::string_view chunk,
                                          SessionActivity& activity, monitoring::RelayStats& stats);

//! The close for a session idle past limits.client_idle_timeout (outside a transaction) or
//! limits.idle_in_transaction_timeout (inside one), if due at `now`. A query in flight is not
//! idle.
std::optional<Closing> idle_closing(const SessionActivity& activity, const config::Limits& limits,
                                    SessionActivity::Clock::time_point now);

} // namespace switchyard::proxy
