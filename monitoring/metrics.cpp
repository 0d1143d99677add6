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
  auto& r = *registry_;
  auto counter = [&r](const char* name, const char* help) -> auto& {
    return prometheus::BuildCounter().Name(name).Help(help).Register(r);
  };
  auto gauge = [&r](const char* name, const char* help) -> auto& {
    return prometheus::BuildGauge().Name(name).Help(help).Register(r);
  };
  clients_active_ = &gauge("switchyard_client_connections", "Client connections open now").Add({});
  clients_accepted_ =
      &counter("switchyard_client_connections_accepted_total", "Client connections accepted")
           .Add({});
  auto& closed = counter("switchyard_client_disconnects_total", "Client sessions ended, by reason");
  for (size_t i = 0; i < client_closed_.size(); ++i) {
    client_closed_[i] = &closed.Add({{"reason", to_string(static_cast<CloseReason>(i))}});
  }
  auto& backends = gauge("switchyard_backend_connections", "Backend connections open now");
  auto& failures = counter("switchyard_backend_connect_failures_total",
                           "Backend connection attempts that failed");
  auto& queries = counter("switchyard_backend_queries_total",
                          "Queries (Query and Execute messages) sent to a backend");
  auto& errors =
      counter("switchyard_backend_errors_total", "ErrorResponses received from a backend");
  auto& bytes = counter("switchyard_backend_bytes_total", "Bytes relayed to and from a backend");
  auto& latency = prometheus::BuildHistogram()
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
  auto& cancels =
      counter("switchyard_cancel_requests_total", "CancelRequests received, by outcome");
  for (size_t i = 0; i < cancel_requests_.size(); ++i) {
    cancel_requests_[i] = &cancels.Add({{"result", cancel_label(static_cast<CancelResult>(i))}});
  }
  auto& reloads = counter("switchyard_config_reloads_total", "Config reloads, by result");
  reloads_ok_ = &reloads.Add({{"result", "applied"}});
  reloads_failed_ = &reloads.Add({{"result", "rejected"}});
}

} // namespace switchyard::monitoring
