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
  case CloseReason::kRoleSwap: return "role_swap";
  case CloseReason::kInternalError: return "internal_error";
  case CloseReason::kCount: break;
  }
  return "unknown";
}

const char* to_string(BackendRole role) {
  return role == BackendRole::kPrimary ? "primary" : "secondary";
}

const char* to_string(MirrorFailure failure) {
  switch (failure) {
  case MirrorFailure::kConnect: return "connect";
  case MirrorFailure::kTimeout: return "timeout";
  case MirrorFailure::kSecondaryError: return "secondary_error";
  case MirrorFailure::kRowCount: return "row_count";
  case MirrorFailure::kNotMirrorable: return "not_mirrorable";
  case MirrorFailure::kTooLarge: return "transaction_too_large";
  case MirrorFailure::kQueueFull: return "async_queue_full";
  case MirrorFailure::kTemporaryLost: return "temporary_lost";
  case MirrorFailure::kPrimaryCommitFailed: return "primary_commit_failed";
  case MirrorFailure::kPreparedRolledBack: return "prepared_rolled_back";
  case MirrorFailure::kCount: break;
  }
  return "unknown";
}

const char* to_string(RouteReason reason) {
  switch (reason) {
  case RouteReason::kCohort: return "cohort";
  case RouteReason::kOutsideCohort: return "outside_cohort";
  case RouteReason::kUnsafe: return "unsafe";
  case RouteReason::kWrittenTransaction: return "written_transaction";
  case RouteReason::kSecondaryUnavailable: return "secondary_unavailable";
  case RouteReason::kUnappliedWrites: return "unapplied_writes";
  case RouteReason::kUndescribed: return "undescribed";
  case RouteReason::kCount: break;
  }
  return "unknown";
}

const char* to_string(ReadFallback f) {
  switch (f) {
  case ReadFallback::kConnect: return "connect";
  case ReadFallback::kTimeout: return "timeout";
  case ReadFallback::kSecondaryError: return "secondary_error";
  case ReadFallback::kCount: break;
  }
  return "unknown";
}

namespace {
const char* shadow_label(ShadowResult r) {
  switch (r) {
  case ShadowResult::kMatch: return "match";
  case ShadowResult::kMismatch: return "mismatch";
  case ShadowResult::kFailed: return "failed";
  case ShadowResult::kCount: break;
  }
  return "unknown";
}

const char* mirror_kind_label(MirrorKind k) {
  switch (k) {
  case MirrorKind::kRowImage: return "row_image";
  case MirrorKind::kStatement: return "statement";
  case MirrorKind::kKeyFallback: return "statement_fallback";
  case MirrorKind::kCount: break;
  }
  return "unknown";
}

const char* replay_label(ReplayResult r) {
  switch (r) {
  case ReplayResult::kApplied: return "applied";
  case ReplayResult::kFailed: return "failed";
  case ReplayResult::kUnreplayable: return "unreplayable";
  case ReplayResult::kCount: break;
  }
  return "unknown";
}

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
  auto& reads_latency =
      prometheus::BuildHistogram()
          .Name("switchyard_read_duration_seconds")
          .Help("Safe reads from the client's request to the end of the answer, by the database "
                "that answered (the latency gate compares the two)")
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
    read_seconds_[i] = &reads_latency.Add({{"target", role}}, buckets);
  }
  auto& cancels =
      counter("switchyard_cancel_requests_total", "CancelRequests received, by outcome");
  for (size_t i = 0; i < cancel_requests_.size(); ++i) {
    cancel_requests_[i] = &cancels.Add({{"result", cancel_label(static_cast<CancelResult>(i))}});
  }
  backend_pool_idle_ = &gauge("switchyard_backend_pool_idle",
                              "Primary connections kept, reset, for the next client's login")
                            .Add({});
  backend_pool_reused_ = &counter("switchyard_backend_pool_reused_total",
                                  "Client logins served by a kept primary connection")
                              .Add({});
  auto& reloads = counter("switchyard_config_reloads_total", "Config reloads, by result");
  reloads_ok_ = &reloads.Add({{"result", "applied"}});
  reloads_failed_ = &reloads.Add({{"result", "rejected"}});

  auto& mirrored = counter("switchyard_mirrored_statements_total",
                           "Writes applied to the secondary, by how they were applied");
  for (size_t i = 0; i < mirrored_.size(); ++i) {
    mirrored_[i] = &mirrored.Add({{"kind", mirror_kind_label(static_cast<MirrorKind>(i))}});
  }
  auto& mirror_failures = counter("switchyard_mirror_failures_total",
                                  "Mirrored transactions the secondary did not apply, by reason");
  for (size_t i = 0; i < mirror_failures_.size(); ++i) {
    mirror_failures_[i] =
        &mirror_failures.Add({{"reason", to_string(static_cast<MirrorFailure>(i))}});
  }
  mirror_seconds_ = &prometheus::BuildHistogram()
                         .Name("switchyard_mirror_duration_seconds")
                         .Help("Time to apply a transaction's writes to the secondary (sync lag)")
                         .Register(r)
                         .Add({}, buckets);
  async_queue_ = &gauge("switchyard_mirror_async_queue",
                        "Committed transactions waiting to be applied to the secondary (async)")
                      .Add({});
  async_queue_bytes_ = &gauge("switchyard_mirror_async_queue_bytes",
                              "Memory the writes of the waiting transactions keep (async)")
                            .Add({});
  async_lag_seconds_ = &prometheus::BuildHistogram()
                            .Name("switchyard_mirror_async_lag_seconds")
                            .Help("Time from the primary's commit to the secondary's (async mode)")
                            .Register(r)
                            .Add({}, buckets);
  async_merged_commits_ =
      &counter("switchyard_mirror_async_merged_total",
               "Committed transactions applied to the secondary in the transaction of an "
               "earlier one of their session (async mode, catching up)")
           .Add({});
  grouped_commits_ =
      &counter("switchyard_mirror_grouped_total",
               "Commits applied to the secondary in one transaction with another session's "
               "(several sessions committing at once)")
           .Add({});
  mirror_retried_after_ddl_ =
      &counter("switchyard_mirror_retried_after_ddl_total",
               "Writes the secondary refused for a table or column that DDL under way was "
               "adding, applied again once the secondary had that DDL")
           .Add({});
  async_barriers_ =
      &counter("switchyard_mirror_async_barriers_total",
               "Committed transactions ordered after every earlier one and before every later "
               "one, because their rows could not be named (async mode)")
           .Add({});
  journal_entries_ =
      &counter("switchyard_journal_entries_total", "Entries written to the divergence journal")
           .Add({});
  journal_backlog_ =
      &gauge("switchyard_journal_backlog", "Divergence journal entries not yet replayed").Add({});
  journal_flush_seconds_ =
      &prometheus::BuildHistogram()
           .Name("switchyard_journal_flush_seconds")
           .Help("Time of each fdatasync of the divergence journal; each covers every append "
                 "written before it began")
           .Register(r)
           .Add({}, buckets);
  auto& replayed =
      counter("switchyard_journal_replayed_total", "Journal entries replayed, by result");
  for (size_t i = 0; i < journal_replayed_.size(); ++i) {
    journal_replayed_[i] = &replayed.Add({{"result", replay_label(static_cast<ReplayResult>(i))}});
  }

  auto& reads = counter("switchyard_reads_total",
                        "Reads of mirrored sessions, by the database that answered and why");
  for (size_t role = 0; role < kRoles; ++role) {
    for (size_t reason = 0; reason < reads_[role].size(); ++reason) {
      reads_[role][reason] = &reads.Add({{"target", to_string(static_cast<BackendRole>(role))},
                                         {"reason", to_string(static_cast<RouteReason>(reason))}});
    }
  }
  auto& fallbacks = counter("switchyard_read_fallbacks_total",
                            "Secondary reads retried on the primary, by what went wrong");
  for (size_t i = 0; i < read_fallbacks_.size(); ++i) {
    read_fallbacks_[i] = &fallbacks.Add({{"reason", to_string(static_cast<ReadFallback>(i))}});
  }
  auto& shadows = counter("switchyard_shadow_comparisons_total",
                          "Reads also run on the other database and compared, by outcome");
  for (size_t i = 0; i < shadow_comparisons_.size(); ++i) {
    shadow_comparisons_[i] = &shadows.Add({{"result", shadow_label(static_cast<ShadowResult>(i))}});
  }

  cutover_phase_ =
      &gauge("switchyard_cutover_phase", "1 for the cutover's current phase, 0 for the others");
  cutover_read_percent_ =
      &gauge("switchyard_cutover_read_percent", "Share of safe reads the cutover sends to the "
                                                "new database")
           .Add({});
  cutover_roles_swapped_ =
      &gauge("switchyard_cutover_roles_swapped",
             "1 while the new database is the primary of record (promoted, finalized)")
           .Add({});
  cutover_stale_sessions_ =
      &gauge("switchyard_cutover_stale_sessions",
             "Sessions still holding the roles from before the last role swap; writes of "
             "newer sessions wait until there are none")
           .Add({});
  cutover_version_ =
      &gauge("switchyard_cutover_state_version", "Version of the cutover state (one per change)")
           .Add({});
  cutover_transitions_ =
      &counter("switchyard_cutover_transitions_total", "Cutover transitions made here, by action");
  cutover_reverts_ = &counter("switchyard_cutover_reverts_total",
                              "Reverts made here, by reason: the gate that tripped, or manual");
  gate_value_ = &gauge("switchyard_gate_value", "Each gate's value over its sliding window");
  gate_threshold_ = &gauge("switchyard_gate_threshold", "Each gate's limit; above it, it reverts");
  gate_samples_ = &gauge("switchyard_gate_samples", "Samples each gate's window holds");
  gate_holds_ = &gauge("switchyard_gate_holds",
                       "1 when the gate holds with enough samples, 0 when breached or too few");
  fleet_connected_ =
      &gauge("switchyard_fleet_redis_connected", "1 while the fleet's Redis answers").Add({});
}

} // namespace switchyard::monitoring
