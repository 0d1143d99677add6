#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "config/config.hpp"
#include "routing/cutover.hpp"

namespace switchyard::routing {

//! The proxy's cumulative counters at one moment. Gates look at the difference between the
//! newest snapshot and the one a window earlier, as Prometheus' rate() and
//! histogram_quantile() would, so the data path needs no hooks of its own.
struct GateCounters {
  int64_t at_ms = 0;
  double secondary_ok = 0;     //!< reads the secondary served + writes it applied
  double secondary_failed = 0; //!< reads retried on the primary + writes the secondary failed
  //! Cumulative histogram bucket counts of query latency, one per bound plus +Inf.
  std::vector<double> primary_latency;
  std::vector<double> secondary_latency;
  double shadow_match = 0;
  double shadow_mismatch = 0;
  double journal_backlog = 0;  //!< a level, not a counter: the newest value counts
  double clients_accepted = 0; //!< client connections accepted
  //! Logins to the primary that failed plus sessions that lost their primary connection.
  double primary_failed = 0;
};

enum class GateVerdict {
  kHolds,         //!< enough samples, within the limit
  kBreached,      //!< enough samples, over the limit
  kTooFewSamples, //!< not enough traffic in the window to judge either way
  kDisabled,
};
const char* to_string(GateVerdict verdict);

//! One gate's value over the window, against its limit.
struct GateReading {
  std::string_view name; //!< "secondary_error_rate", "latency_p99_ratio", ...
  double value = 0;
  double threshold = 0;
  uint64_t samples = 0;
  uint64_t min_samples = 0;
  GateVerdict verdict = GateVerdict::kTooFewSamples;
};

//! The q-quantile (0-1) of a histogram from cumulative bucket counts (`bounds` upper bounds,
//! then +Inf), interpolated linearly inside its bucket; 0 with no samples.
double histogram_quantile(std::span<const double> bounds, std::span<const double> cumulative,
                          double q);

//! Snapshots of the counters over a sliding window, and the gates' readings over it.
class GateWindow {
public:
  //! Adds the newest snapshot; keeps only what a window of `window` needs.
  void add(GateCounters counters, std::chrono::milliseconds window);
  //! Every gate's reading over the window. A gate with fewer samples than its minimum reads
  //! kTooFewSamples, so low traffic neither trips nor advances anything.
  std::vector<GateReading> evaluate(const config::CutoverSettings& settings,
                                    std::span<const double> latency_bounds) const;
  //! Forgets every snapshot (after a revert or a re-arm the window starts afresh).
  void clear() { snapshots_.clear(); }

private:
  std::deque<GateCounters> snapshots_;
};

//! The readings of the gates that judge in `phase`. Before promotion (mirroring, ramping)
//! the gates watch the new database as the secondary; once promoted, the roles are swapped,
//! the secondary is the old database (its trouble is no reason to go back to it), and only
//! new_primary_failure_rate judges, watching the new database as the primary. In the other
//! phases none does.
std::vector<GateReading> judged_in(std::span<const GateReading> readings, CutoverPhase phase);

//! The first breached gate, if any.
std::optional<GateReading> first_breach(std::span<const GateReading> readings);
//! Whether every enabled gate holds with enough samples: the condition for advancing a ramp.
bool all_gates_hold(std::span<const GateReading> readings);

} // namespace switchyard::routing
