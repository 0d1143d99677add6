#include "monitoring/metrics.hpp"

namespace switchyard::monitoring {

const char* to_string(CloseReason reason) {
  switch (reason) {
  case CloseReason::kClientTerminate: return "client_terminate";
  case CloseReason::kClientDisconnect: return "client_disconnect";
  case CloseReason::kBackendDisconnect: return "backend_disconnect";
  case CloseReason::kProtocolViolation: return "protocol_violation";
  case CloseReason::kMessageTooLarge: return "message_too_large";
  case CloseReason::kAuthFailed: return "auth_failed";
  case CloseReason::kStartupTimeout: return "startup_timeout";
  case CloseReason::kIdleTimeout: return "idle_timeout";
  case CloseReason::kIdleInTransactionTimeout: return "idle_in_transaction_timeout";
  case CloseReason::kTooManyClients: return "too_many_clients";
  case CloseReason::kTlsRequired: return "tls_required";
  case CloseReason::kTlsHandshakeFailed: return "tls_handshake_failed";
  case CloseReason::kUnencryptedAfterSslRequest: return "unencrypted_after_ssl_request";
  case CloseReason::kBackendUnavailable: return "backend_unavailable";
  case CloseReason::kBackendRejected: return "backend_rejected";
  case CloseReason::kShutdown: return "shutdown";
  case CloseReason::kCancelRequest: return "cancel_request";
  case CloseReason::kCount: break;
  }
  return "unknown";
}

const char* to_string(BackendRole role) {
  return role == BackendRole::kPrimary ? "primary" : "secondary";
}

namespace {
const char* cancel_label(CancelResult r) {
  switch (r) {
  case CancelResult::kForwarded: return "forwarded";
  case CancelResult::kUnknownKey: return "unknown_key";
  case CancelResult::kFailed: return "failed";
  case CancelResult::kCount: break;
  }
  return "unknown";
}
} // namespace

Metrics::Metrics() : registry_(std::make_shared<prometheus::Registry>()) {
  using prometheus::BuildCounter;
  using prometheus::BuildGauge;
  using prometheus::BuildHistogram;
  auto& r = *registry_;
  clients_active_ = &BuildGauge()
                         .Name("switchyard_client_connections")
                         .Help("Client connections open now")
                         .Register(r)
                         .Add({});
  clients_accepted_ = &BuildCounter()
                           .Name("switchyard_client_connections_accepted_total")
                           .Help("Client connections accepted")
                           .Register(r)
                           .Add({});
  auto& closed = BuildCounter()
                     .Name("switchyard_client_disconnects_total")
                     .Help("Client sessions ended, by reason")
                     .Register(r);
  for (size_t i = 0; i < client_closed_.size(); ++i) {
    client_closed_[i] = &closed.Add({{"reason", to_string(static_cast<CloseReason>(i))}});
  }
  auto& backends = BuildGauge()
                       .Name("switchyard_backend_connections")
                       .Help("Backend connections open now")
                       .Register(r);
  auto& failures = BuildCounter()
                       .Name("switchyard_backend_connect_failures_total")
                       .Help("Backend connection attempts that failed")
                       .Register(r);
  auto& queries = BuildCounter()
                      .Name("switchyard_backend_queries_total")
                      .Help("Queries (Query and Execute messages) sent to a backend")
                      .Register(r);
  auto& errors = BuildCounter()
                     .Name("switchyard_backend_errors_total")
                     .Help("ErrorResponses received from a backend")
                     .Register(r);
  auto& bytes = BuildCounter()
                    .Name("switchyard_backend_bytes_total")
                    .Help("Bytes relayed to and from a backend")
                    .Register(r);
  auto& latency = BuildHistogram()
                      .Name("switchyard_backend_query_duration_seconds")
                      .Help("Time from a client's Query or Sync to the backend's ReadyForQuery")
                      .Register(r);
  const prometheus::Histogram::BucketBoundaries buckets(kLatencyBuckets.begin(),
                                                        kLatencyBuckets.end());
  for (size_t i = 0; i < kRoles; ++i) {
    std::string role = to_string(static_cast<BackendRole>(i));
    backend_connections_[i] = &backends.Add({{"backend", role}});
    backend_connect_failures_[i] = &failures.Add({{"backend", role}});
    queries_[i] = &queries.Add({{"backend", role}});
    backend_errors_[i] = &errors.Add({{"backend", role}});
    bytes_to_backend_[i] = &bytes.Add({{"backend", role}, {"direction", "to_backend"}});
    bytes_from_backend_[i] = &bytes.Add({{"backend", role}, {"direction", "from_backend"}});
    query_seconds_[i] = &latency.Add({{"backend", role}}, buckets);
  }
  auto& cancels = BuildCounter()
                      .Name("switchyard_cancel_requests_total")
                      .Help("CancelRequests received, by outcome")
                      .Register(r);
  for (size_t i = 0; i < cancel_requests_.size(); ++i) {
    cancel_requests_[i] = &cancels.Add({{"result", cancel_label(static_cast<CancelResult>(i))}});
  }
  auto& reloads = BuildCounter()
                      .Name("switchyard_config_reloads_total")
                      .Help("Config reloads, by result")
                      .Register(r);
  reloads_ok_ = &reloads.Add({{"result", "applied"}});
  reloads_failed_ = &reloads.Add({{"result", "rejected"}});
}

} // namespace switchyard::monitoring
