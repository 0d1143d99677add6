#include <catch2/catch.hpp>

#include <array>

#include "routing/gates.hpp"

using namespace switchyard;
using namespace switchyard::routing;

namespace {

constexpr std::array<double, 3> kBounds = {0.001, 0.01, 0.1};

GateCounters at(int64_t ms, double ok, double failed) {
  GateCounters c;
  c.at_ms = ms;
  c.secondary_ok = ok;
  c.secondary_failed = failed;
  c.primary_latency = {0, 0, 0, 0};
  c.secondary_latency = {0, 0, 0, 0};
  return c;
}

config::CutoverSettings settings() {
  config::CutoverSettings s;
  s.secondary_error_rate = {true, 0.01, 100};
  s.latency_p99_ratio = {true, 3.0, 100};
  s.shadow_mismatch_rate = {true, 0.001, 10};
  s.journal_backlog = {true, 500, 0};
  return s;
}

const GateReading& reading(const std::vector<GateReading>& readings, std::string_view name) {
  for (const auto& r : readings) {
    if (r.name == name) return r;
  }
  FAIL("no gate " << name);
  return readings.front();
}

} // namespace

TEST_CASE("histogram_quantile interpolates inside the bucket the rank falls in") {
  // 100 samples: 50 under 1 ms, 40 more under 10 ms, 10 more under 100 ms.
  std::array<double, 4> cumulative = {50, 90, 100, 100};
  CHECK(histogram_quantile(kBounds, cumulative, 0.5) == Approx(0.001));
  CHECK(histogram_quantile(kBounds, cumulative, 0.7) == Approx(0.001 + 0.009 * 0.5));
  CHECK(histogram_quantile(kBounds, cumulative, 0.99) == Approx(0.01 + 0.09 * 0.9));
  std::array<double, 4> none = {0, 0, 0, 0};
  CHECK(histogram_quantile(kBounds, none, 0.99) == 0);
  std::array<double, 4> beyond = {0, 0, 0, 5}; // all slower than the top bound
  CHECK(histogram_quantile(kBounds, beyond, 0.99) == Approx(0.1));
}

TEST_CASE("the error-rate gate judges only the window, and only with enough samples") {
  GateWindow window;
  auto s = settings();
  std::chrono::milliseconds span(10'000);
  window.add(at(0, 0, 0), span);
  window.add(at(5'000, 50, 5), span); // 55 samples: too few to judge a 9 % rate
  auto early = reading(window.evaluate(s, kBounds), "secondary_error_rate");
  CHECK(early.verdict == GateVerdict::kTooFewSamples);
  CHECK(early.value == Approx(5.0 / 55));
  window.add(at(10'000, 190, 10), span); // 200 samples, 5 %
  auto breached = reading(window.evaluate(s, kBounds), "secondary_error_rate");
  CHECK(breached.verdict == GateVerdict::kBreached);
  CHECK(breached.samples == 200);
  CHECK(first_breach(window.evaluate(s, kBounds))->name == "secondary_error_rate");
  // The failures slide out of the window: 1000 clean requests since t=10 s.
  window.add(at(20'000, 1190, 10), span);
  auto clean = reading(window.evaluate(s, kBounds), "secondary_error_rate");
  CHECK(clean.value == 0);
  CHECK(clean.verdict == GateVerdict::kHolds);
}

TEST_CASE("the latency gate compares p99s; the shadow and backlog gates their own signals") {
  GateWindow window;
  auto s = settings();
  std::chrono::milliseconds span(60'000);
  window.add(at(0, 0, 0), span);
  GateCounters now = at(1'000, 0, 0);
  now.primary_latency = {200, 200, 200, 200}; // all under 1 ms
  now.secondary_latency = {0, 0, 200, 200};   // all between 10 and 100 ms
  now.shadow_match = 999;
  now.shadow_mismatch = 1;
  now.journal_backlog = 501;
  window.add(now, span);
  auto readings = window.evaluate(s, kBounds);
  auto latency = reading(readings, "latency_p99_ratio");
  CHECK(latency.verdict == GateVerdict::kBreached);
  CHECK(latency.value > 50);
  CHECK(reading(readings, "shadow_mismatch_rate").verdict == GateVerdict::kHolds);
  CHECK(reading(readings, "journal_backlog").verdict == GateVerdict::kBreached);
  CHECK_FALSE(all_gates_hold(readings));
  s.latency_p99_ratio.enabled = false;
  s.journal_backlog.max = 1000;
  s.secondary_error_rate.enabled = false;
  readings = window.evaluate(s, kBounds);
  CHECK(reading(readings, "latency_p99_ratio").verdict == GateVerdict::kDisabled);
  CHECK_FALSE(first_breach(readings));
  CHECK(all_gates_hold(judged_in(readings, CutoverPhase::kRamping)));
}

TEST_CASE("once promoted, only the new primary's failure rate judges") {
  GateWindow window;
  auto s = settings();
  std::chrono::milliseconds span(10'000);
  GateCounters before = at(0, 0, 0);
  window.add(before, span);
  GateCounters after = at(5'000, 100, 50); // a sick old database (the secondary now)...
  after.clients_accepted = 40;
  after.primary_failed = 1; // ...and a healthy new primary: 1 failure in 40 logins
  window.add(after, span);
  auto readings = window.evaluate(s, kBounds);
  auto failures = reading(readings, "new_primary_failure_rate");
  CHECK(failures.value == Approx(1.0 / 40));
  CHECK(failures.verdict == GateVerdict::kHolds);

  auto promoted = judged_in(readings, CutoverPhase::kPromoted);
  REQUIRE(promoted.size() == 1);
  CHECK(promoted[0].name == "new_primary_failure_rate");
  CHECK_FALSE(first_breach(promoted)); // the old database's errors do not revert
  CHECK(first_breach(judged_in(readings, CutoverPhase::kRamping))->name == "secondary_error_rate");
  CHECK(judged_in(readings, CutoverPhase::kReverted).empty());
  CHECK(judged_in(readings, CutoverPhase::kFinalized).empty());

  GateCounters dead = after;
  dead.at_ms = 9'000;
  dead.clients_accepted = 70;
  dead.primary_failed = 31; // the next 30 logins all failed
  window.add(dead, span);
  auto breach = first_breach(judged_in(window.evaluate(s, kBounds), CutoverPhase::kPromoted));
  REQUIRE(breach);
  CHECK(breach->name == "new_primary_failure_rate");
  CHECK(breach->value == Approx(31.0 / 70));
}

TEST_CASE("with no traffic nothing trips and nothing may advance") {
  GateWindow window;
  window.add(at(0, 0, 0), std::chrono::milliseconds(1000));
  window.add(at(1000, 0, 0), std::chrono::milliseconds(1000));
  auto readings = window.evaluate(settings(), kBounds);
  CHECK_FALSE(first_breach(readings));
  CHECK_FALSE(all_gates_hold(judged_in(readings, CutoverPhase::kRamping)));
  CHECK(reading(readings, "new_primary_failure_rate").verdict == GateVerdict::kTooFewSamples);
}
