#pragma once

#include <atomic>
#include <memory>
#include <mutex>

#include "monitoring/metrics.hpp"
#include "proxy/cancel_registry.hpp"
#include "proxy/runtime.hpp"

namespace switchyard::proxy {

//! What every session shares: the current runtime (swapped by reloads), metrics, the cancel
//! registry and the client count. Thread-safe.
class Services {
public:
  Services(std::shared_ptr<const Runtime> runtime, monitoring::Metrics& metrics)
      : runtime_(std::move(runtime)), metrics_(metrics) {}

  std::shared_ptr<const Runtime> runtime() const {
    std::lock_guard lock(mutex_);
    return runtime_;
  }
  void set_runtime(std::shared_ptr<const Runtime> runtime) {
    std::lock_guard lock(mutex_);
    runtime_ = std::move(runtime);
  }
  monitoring::Metrics& metrics() { return metrics_; }
  CancelRegistry& cancels() { return cancels_; }
  std::atomic<uint32_t>& active_clients() { return active_clients_; }

private:
  mutable std::mutex mutex_;
  std::shared_ptr<const Runtime> runtime_;
  monitoring::Metrics& metrics_;
  CancelRegistry cancels_;
  std::atomic<uint32_t> active_clients_{0};
};

} // namespace switchyard::proxy
