#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "monitoring/metrics.hpp"

namespace switchyard::monitoring {

//! The per-message counters of one network thread. The relay adds to plain integers here and
//! flush() moves them into the shared Prometheus metrics in one batch, so two threads never
//! contend on a counter's cache line or the histogram's mutex per message. Use only from the
//! owning thread; the server flushes each thread's stats every 100 ms.
class RelayStats {
public:
  explicit RelayStats(Metrics& metrics);

  //! This thread's stats, created on first use.
  static RelayStats& for_this_thread(Metrics& metrics);

  void add_bytes_to_backend(BackendRole role, uint64_t n) { at(role).bytes_to_backend += n; }
  void add_bytes_from_backend(BackendRole role, uint64_t n) { at(role).bytes_from_backend += n; }
  void add_queries(BackendRole role, uint64_t n) { at(role).queries += n; }
  void add_backend_errors(BackendRole role, uint64_t n) { at(role).errors += n; }
  void observe_query_seconds(BackendRole role, double seconds) { at(role).query.observe(seconds); }
  //! A safe read, from the client's request to the end of its answer, on `role`.
  void observe_read_seconds(BackendRole role, double seconds) { at(role).read.observe(seconds); }

  //! Adds everything pending to the Prometheus metrics and clears it.
  void flush();

private:
  struct Latency {
    std::vector<double> bucket_counts = std::vector<double>(kLatencyBuckets.size() + 1, 0);
    double sum = 0;
    uint64_t count = 0;
    void observe(double seconds);
    void flush_into(prometheus::Histogram& histogram);
  };
  struct Pending {
    uint64_t bytes_to_backend = 0;
    uint64_t bytes_from_backend = 0;
    uint64_t queries = 0;
    uint64_t errors = 0;
    Latency query;
    Latency read;
  };
  Pending& at(BackendRole role) { return pending_[static_cast<size_t>(role)]; }

  Metrics& metrics_;
  std::array<Pending, static_cast<size_t>(BackendRole::kCount)> pending_;
};

} // namespace switchyard::monitoring
