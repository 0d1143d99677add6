#include "routing/gates.hpp"

#include <algorithm>
#include <cmath>

namespace switchyard::routing {
namespace {

constexpr std::string_view kNewPrimaryFailureRate = "new_primary_failure_rate";

GateReading judge(std::string_view name, const config::GateLimit& limit, double value,
                  double samples) {
  GateReading reading;
  reading.name = name;
  reading.value = value;
  reading.threshold = limit.max;
  reading.samples = samples > 0 ? static_cast<uint64_t>(samples) : 0;
  reading.min_samples = limit.min_samples;
  if (!limit.enabled) {
    reading.verdict = GateVerdict::kDisabled;
  } else if (reading.samples < limit.min_samples || (limit.min_samples > 0 && samples <= 0)) {
    reading.verdict = GateVerdict::kTooFewSamples;
  } else {
    reading.verdict = value > limit.max ? GateVerdict::kBreached : GateVerdict::kHolds;
  }
  return reading;
}

std::vector<double> difference(const std::vector<double>& newer, const std::vector<double>& older) {
  std::vector<double> delta(newer);
  for (size_t i = 0; i < delta.size() && i < older.size(); ++i)
    delta[i] -= older[i];
  return delta;
}

} // namespace

const char* to_string(GateVerdict verdict) {
  switch (verdict) {
  case GateVerdict::kHolds: return "holds";
  case GateVerdict::kBreached: return "breached";
  case GateVerdict::kTooFewSamples: return "too_few_samples";
  case GateVerdict::kDisabled: return "disabled";
  }
  return "unknown";
}

double histogram_quantile(std::span<const double> bounds, std::span<const double> cumulative,
                          double q) {
  if (cumulative.empty() || cumulative.back() <= 0) return 0;
  double rank = q * cumulative.back();
  for (size_t i = 0; i < cumulative.size(); ++i) {
    if (cumulative[i] < rank) continue;
    if (i >= bounds.size()) return bounds.empty() ? 0 : bounds.back(); // in +Inf: the top bound
    double lower = i == 0 ? 0 : bounds[i - 1];
    double below = i == 0 ? 0 : cumulative[i - 1];
    double in_bucket = cumulative[i] - below;
    if (in_bucket <= 0) return bounds[i];
    return lower + (bounds[i] - lower) * ((rank - below) / in_bucket);
  }
  return bounds.empty() ? 0 : bounds.back();
}

void GateWindow::add(GateCounters counters, std::chrono::milliseconds window) {
  snapshots_.push_back(std::move(counters));
  // Keep one snapshot at or before the window's start as the base of the differences.
  int64_t start = snapshots_.back().at_ms - window.count();
  while (snapshots_.size() > 2 && snapshots_[1].at_ms <= start)
    snapshots_.pop_front();
}

std::vector<GateReading> GateWindow::evaluate(const config::CutoverSettings& settings,
                                              std::span<const double> latency_bounds) const {
  GateCounters empty;
  const GateCounters& newest = snapshots_.empty() ? empty : snapshots_.back();
  const GateCounters& base = snapshots_.size() < 2 ? newest : snapshots_.front();
  std::vector<GateReading> readings;

  double ok = newest.secondary_ok - base.secondary_ok;
  double failed = newest.secondary_failed - base.secondary_failed;
  double attempts = ok + failed;
  readings.push_back(judge("secondary_error_rate", settings.secondary_error_rate,
                           attempts > 0 ? failed / attempts : 0, attempts));

  auto primary = difference(newest.primary_latency, base.primary_latency);
  auto secondary = difference(newest.secondary_latency, base.secondary_latency);
  double primary_count = primary.empty() ? 0 : primary.back();
  double secondary_count = secondary.empty() ? 0 : secondary.back();
  double primary_p99 = histogram_quantile(latency_bounds, primary, 0.99);
  double secondary_p99 = histogram_quantile(latency_bounds, secondary, 0.99);
  double ratio = primary_p99 > 0 ? secondary_p99 / primary_p99 : 0;
  readings.push_back(judge("latency_p99_ratio", settings.latency_p99_ratio, ratio,
                           primary_p99 > 0 ? std::min(primary_count, secondary_count) : 0));

  double match = newest.shadow_match - base.shadow_match;
  double mismatch = newest.shadow_mismatch - base.shadow_mismatch;
  double compared = match + mismatch;
  readings.push_back(judge("shadow_mismatch_rate", settings.shadow_mismatch_rate,
                           compared > 0 ? mismatch / compared : 0, compared));

  // The backlog is a level: one reading of it is a whole sample.
  readings.push_back(judge("journal_backlog", settings.journal_backlog, newest.journal_backlog,
                           snapshots_.empty() ? 0 : 1));

  double logins = newest.clients_accepted - base.clients_accepted;
  double lost = newest.primary_failed - base.primary_failed;
  readings.push_back(judge(kNewPrimaryFailureRate, settings.new_primary_failure_rate,
                           logins > 0 ? std::min(1.0, lost / logins) : 0, logins));
  return readings;
}

std::vector<GateReading> judged_in(std::span<const GateReading> readings, CutoverPhase phase) {
  std::vector<GateReading> judged;
  if (phase != CutoverPhase::kMirroring && phase != CutoverPhase::kRamping &&
      phase != CutoverPhase::kPromoted) {
    return judged;
  }
  bool promoted = phase == CutoverPhase::kPromoted;
  for (const GateReading& reading : readings) {
    if ((reading.name == kNewPrimaryFailureRate) == promoted) judged.push_back(reading);
  }
  return judged;
}

std::optional<GateReading> first_breach(std::span<const GateReading> readings) {
  for (const GateReading& reading : readings) {
    if (reading.verdict == GateVerdict::kBreached) return reading;
  }
  return std::nullopt;
}

bool all_gates_hold(std::span<const GateReading> readings) {
  return std::all_of(readings.begin(), readings.end(), [](const GateReading& reading) {
    return reading.verdict == GateVerdict::kHolds || reading.verdict == GateVerdict::kDisabled;
  });
}

} // namespace switchyard::routing
