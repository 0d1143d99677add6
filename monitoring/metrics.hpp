#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <array>
#include <memory>

namespace switchyard::monitoring {

//! Upper bounds (seconds) of the query latency histogram's buckets.
inline constexpr std::array<double, 16> kLatencyBuckets = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};

//! Why a client session ended; each is a log reason and a metric label.
enum class CloseReason {
  kClientTerminate,
  kClientDisconnect,
  kBackendDisconnect,
  kProtocolViolation,
  kMessageTooLarge,
  kAuthFailed,
  kStartupTimeout,
  kIdleTimeout,
  kIdleInTransactionTimeout,
  kTooManyClients,
  kTlsRequired,
  kTlsHandshakeFailed,
  kUnencryptedAfterSslRequest,
  kBackendUnavailable,
  kBackendRejected,
  kShutdown,
  kCancelRequest,
  kRoleSwap,      //!< its backends had the roles from before a cutover role swap
  kInternalError, //!< switchyard failed: an exception ended one of the session's pumps
  kCount,
};
const char* to_string(CloseReason reason);

//! Which database a backend connection goes to.
enum class BackendRole { kPrimary, kSecondary, kCount };
const char* to_string(BackendRole role);

//! Outcome of a CancelRequest.
enum class CancelResult { kForwarded, kUnknownKey, kFailed, kCount };

//! Why a write did not reach the secondary as planned.
enum class MirrorFailure {
  kConnect,        //!< the secondary could not be reached
  kTimeout,        //!< slower than mirror.timeout
  kSecondaryError, //!< an error only the secondary raised
  kRowCount,       //!< the secondary changed a different number of rows
  kNotMirrorable,  //!< a write switchyard cannot mirror (e.g. COPY FROM STDIN)
  kTooLarge,       //!< the transaction's writes outgrew what a session may buffer
  kQueueFull,      //!< async mode: more committed transactions waited than allowed
  //! on a session's temporary relation the secondary connection lost (see SecondaryLink)
  kTemporaryLost,
  //! sync mode: the primary's COMMIT failed after the secondary had committed the writes
  kPrimaryCommitFailed,
  //! the primary rolled back (ROLLBACK PREPARED) a prepared transaction the secondary committed
  kPreparedRolledBack,
  kCount,
};
const char* to_string(MirrorFailure failure);

//! How a mirrored statement was applied to the secondary.
enum class MirrorKind { kRowImage, kStatement, kKeyFallback, kCount };

//! What the journal replayer did with an entry.
enum class ReplayResult { kApplied, kFailed, kUnreplayable, kCount };

//! Why a read went where it went.
enum class RouteReason {
  kCohort,               //!< safe read, session in the cohort: secondary
  kOutsideCohort,        //!< safe read, session not in the cohort: primary
  kUnsafe,               //!< not a read the secondary may serve: primary
  kWrittenTransaction,   //!< the transaction wrote, so it reads its own writes on the primary
  kSecondaryUnavailable, //!< in the cohort, but the secondary failed moments ago: primary
  kUnappliedWrites,      //!< in the cohort, but the session's last write is not applied yet
  //! in the cohort, but the secondary's answer named tables or types not yet matched to the
  //! primary's (see OidTranslation): primary, while they are looked up
  kUndescribed,
  kCount
};
const char* to_string(RouteReason reason);

//! Why a secondary read was retried on the primary.
enum class ReadFallback { kConnect, kTimeout, kSecondaryError, kCount };
const char* to_string(ReadFallback fallback);

//! The outcome of a shadow comparison.
enum class ShadowResult { kMatch, kMismatch, kFailed, kCount };

//! Every metric of switchyard, declared in one place and labelled once at start-up so the
//! data path only touches pre-resolved counters (no label lookups per message).
class Metrics {
public:
  Metrics();

  prometheus::Registry& registry() { return *registry_; }

  prometheus::Gauge& clients_active() { return *clients_active_; }
  prometheus::Counter& clients_accepted() { return *clients_accepted_; }
  prometheus::Counter& client_closed(CloseReason r) { return *client_closed_[idx(r)]; }
  prometheus::Gauge& backend_connections(BackendRole r) { return *backend_connections_[idx(r)]; }
  prometheus::Counter& backend_connect_failures(BackendRole r) {
    return *backend_connect_failures_[idx(r)];
  }
  prometheus::Counter& queries(BackendRole r) { return *queries_[idx(r)]; }
  prometheus::Counter& backend_errors(BackendRole r) { return *backend_errors_[idx(r)]; }
  prometheus::Counter& bytes_to_backend(BackendRole r) { return *bytes_to_backend_[idx(r)]; }
  prometheus::Counter& bytes_from_backend(BackendRole r) { return *bytes_from_backend_[idx(r)]; }
  prometheus::Histogram& query_seconds(BackendRole r) { return *query_seconds_[idx(r)]; }
  prometheus::Histogram& read_seconds(BackendRole r) { return *read_seconds_[idx(r)]; }
  prometheus::Counter& cancel_requests(CancelResult r) { return *cancel_requests_[idx(r)]; }
  prometheus::Gauge& backend_pool_idle() { return *backend_pool_idle_; }
  prometheus::Counter& backend_pool_reused() { return *backend_pool_reused_; }
  prometheus::Counter& config_reloads(bool ok) { return ok ? *reloads_ok_ : *reloads_failed_; }
  prometheus::Counter& mirrored(MirrorKind k) { return *mirrored_[idx(k)]; }
  prometheus::Counter& mirror_failures(MirrorFailure f) { return *mirror_failures_[idx(f)]; }
  prometheus::Histogram& mirror_seconds() { return *mirror_seconds_; }
  prometheus::Gauge& async_queue() { return *async_queue_; }
  prometheus::Gauge& async_queue_bytes() { return *async_queue_bytes_; }
  prometheus::Histogram& async_lag_seconds() { return *async_lag_seconds_; }
  prometheus::Counter& async_merged_commits() { return *async_merged_commits_; }
  prometheus::Counter& grouped_commits() { return *grouped_commits_; }
  prometheus::Counter& mirror_retried_after_ddl() { return *mirror_retried_after_ddl_; }
  prometheus::Counter& async_barriers() { return *async_barriers_; }
  prometheus::Counter& journal_entries() { return *journal_entries_; }
  prometheus::Gauge& journal_backlog() { return *journal_backlog_; }
  prometheus::Histogram& journal_flush_seconds() { return *journal_flush_seconds_; }
  prometheus::Counter& journal_replayed(ReplayResult r) { return *journal_replayed_[idx(r)]; }
  prometheus::Counter& reads(BackendRole target, RouteReason reason) {
    return *reads_[idx(target)][idx(reason)];
  }
  prometheus::Counter& read_fallbacks(ReadFallback f) { return *read_fallbacks_[idx(f)]; }
  prometheus::Counter& shadow_comparisons(ShadowResult r) { return *shadow_comparisons_[idx(r)]; }

  // The control plane's, labelled as it goes: it changes state rarely.
  prometheus::Family<prometheus::Gauge>& cutover_phase() { return *cutover_phase_; }
  prometheus::Gauge& cutover_read_percent() { return *cutover_read_percent_; }
  prometheus::Gauge& cutover_roles_swapped() { return *cutover_roles_swapped_; }
  prometheus::Gauge& cutover_stale_sessions() { return *cutover_stale_sessions_; }
  prometheus::Gauge& cutover_version() { return *cutover_version_; }
  prometheus::Family<prometheus::Counter>& cutover_transitions() { return *cutover_transitions_; }
  prometheus::Family<prometheus::Counter>& cutover_reverts() { return *cutover_reverts_; }
  prometheus::Family<prometheus::Gauge>& gate_value() { return *gate_value_; }
  prometheus::Family<prometheus::Gauge>& gate_threshold() { return *gate_threshold_; }
  prometheus::Family<prometheus::Gauge>& gate_samples() { return *gate_samples_; }
  prometheus::Family<prometheus::Gauge>& gate_holds() { return *gate_holds_; }
  prometheus::Gauge& fleet_connected() { return *fleet_connected_; }

private:
  template <class E> static size_t idx(E e) { return static_cast<size_t>(e); }
  static constexpr size_t kRoles = static_cast<size_t>(BackendRole::kCount);

  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Gauge* clients_active_;
  prometheus::Counter* clients_accepted_;
  std::array<prometheus::Counter*, static_cast<size_t>(CloseReason::kCount)> client_closed_{};
  std::array<prometheus::Gauge*, kRoles> backend_connections_{};
  std::array<prometheus::Counter*, kRoles> backend_connect_failures_{};
  std::array<prometheus::Counter*, kRoles> queries_{};
  std::array<prometheus::Counter*, kRoles> backend_errors_{};
  std::array<prometheus::Counter*, kRoles> bytes_to_backend_{};
  std::array<prometheus::Counter*, kRoles> bytes_from_backend_{};
  std::array<prometheus::Histogram*, kRoles> query_seconds_{};
  std::array<prometheus::Histogram*, kRoles> read_seconds_{};
  std::array<prometheus::Counter*, static_cast<size_t>(CancelResult::kCount)> cancel_requests_{};
  prometheus::Gauge* backend_pool_idle_;
  prometheus::Counter* backend_pool_reused_;
  prometheus::Counter* reloads_ok_;
  prometheus::Counter* reloads_failed_;
  std::array<prometheus::Counter*, static_cast<size_t>(MirrorKind::kCount)> mirrored_{};
  std::array<prometheus::Counter*, static_cast<size_t>(MirrorFailure::kCount)> mirror_failures_{};
  prometheus::Histogram* mirror_seconds_;
  prometheus::Gauge* async_queue_;
  prometheus::Gauge* async_queue_bytes_;
  prometheus::Histogram* async_lag_seconds_;
  prometheus::Counter* async_merged_commits_;
  prometheus::Counter* grouped_commits_;
  prometheus::Counter* mirror_retried_after_ddl_;
  prometheus::Counter* async_barriers_;
  prometheus::Counter* journal_entries_;
  prometheus::Gauge* journal_backlog_;
  prometheus::Histogram* journal_flush_seconds_;
  std::array<prometheus::Counter*, static_cast<size_t>(ReplayResult::kCount)> journal_replayed_{};
  std::array<std::array<prometheus::Counter*, static_cast<size_t>(RouteReason::kCount)>, kRoles>
      reads_{};
  std::array<prometheus::Counter*, static_cast<size_t>(ReadFallback::kCount)> read_fallbacks_{};
  std::array<prometheus::Counter*, static_cast<size_t>(ShadowResult::kCount)> shadow_comparisons_{};
  prometheus::Family<prometheus::Gauge>* cutover_phase_;
  prometheus::Gauge* cutover_read_percent_;
  prometheus::Gauge* cutover_roles_swapped_;
  prometheus::Gauge* cutover_stale_sessions_;
  prometheus::Gauge* cutover_version_;
  prometheus::Family<prometheus::Counter>* cutover_transitions_;
  prometheus::Family<prometheus::Counter>* cutover_reverts_;
  prometheus::Family<prometheus::Gauge>* gate_value_;
  prometheus::Family<prometheus::Gauge>* gate_threshold_;
  prometheus::Family<prometheus::Gauge>* gate_samples_;
  prometheus::Family<prometheus::Gauge>* gate_holds_;
  prometheus::Gauge* fleet_connected_;
};

} // namespace switchyard::monitoring
