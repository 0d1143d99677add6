#include "monitoring/relay_stats.hpp"

#include <algorithm>

namespace switchyard::monitoring {

RelayStats::RelayStats(Metrics& metrics) : metrics_(metrics) {
  for (auto& pending : pending_)
    pending.bucket_counts.assign(kLatencyBuckets.size() + 1, 0);
}

RelayStats& RelayStats::for_this_thread(Metrics& metrics) {
  thread_local RelayStats stats(metrics);
  return stats;
}

void RelayStats::observe_query_seconds(BackendRole role, double seconds) {
  Pending& p = at(role);
  auto bucket = std::lower_bound(kLatencyBuckets.begin(), kLatencyBuckets.end(), seconds);
  p.bucket_counts[static_cast<size_t>(bucket - kLatencyBuckets.begin())] += 1;
  p.latency_sum += seconds;
  ++p.latency_count;
}

void RelayStats::flush() {
  for (size_t i = 0; i < pending_.size(); ++i) {
    auto role = static_cast<BackendRole>(i);
    Pending& p = pending_[i];
    if (p.bytes_to_backend)
      metrics_.bytes_to_backend(role).Increment(static_cast<double>(p.bytes_to_backend));
    if (p.bytes_from_backend) {
      metrics_.bytes_from_backend(role).Increment(static_cast<double>(p.bytes_from_backend));
    }
    if (p.queries) metrics_.queries(role).Increment(static_cast<double>(p.queries));
    if (p.errors) metrics_.backend_errors(role).Increment(static_cast<double>(p.errors));
    if (p.latency_count)
      metrics_.query_seconds(role).ObserveMultiple(p.bucket_counts, p.latency_sum);
    p.bytes_to_backend = p.bytes_from_backend = p.queries = p.errors = p.latency_count = 0;
    p.latency_sum = 0;
    std::fill(p.bucket_counts.begin(), p.bucket_counts.end(), 0);
  }
}

} // namespace switchyard::monitoring
