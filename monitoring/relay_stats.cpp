#include "monitoring/relay_stats.hpp"

#include <algorithm>

namespace switchyard::monitoring {

RelayStats::RelayStats(Metrics& metrics) : metrics_(metrics) {}

RelayStats& RelayStats::for_this_thread(Metrics& metrics) {
  thread_local RelayStats stats(metrics);
  return stats;
}

void RelayStats::Latency::observe(double seconds) {
  auto bucket = std::lower_bound(kLatencyBuckets.begin(), kLatencyBuckets.end(), seconds);
  bucket_counts[static_cast<size_t>(bucket - kLatencyBuckets.begin())] += 1;
  sum += seconds;
  ++count;
}

void RelayStats::Latency::flush_into(prometheus::Histogram& histogram) {
  if (count == 0) return;
  histogram.ObserveMultiple(bucket_counts, sum);
  std::fill(bucket_counts.begin(), bucket_counts.end(), 0);
  sum = 0;
  count = 0;
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
    p.query.flush_into(metrics_.query_seconds(role));
    p.read.flush_into(metrics_.read_seconds(role));
    p.bytes_to_backend = p.bytes_from_backend = p.queries = p.errors = 0;
  }
}

} // namespace switchyard::monitoring
