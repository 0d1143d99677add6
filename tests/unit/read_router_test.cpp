#include <catch2/catch.hpp>

#include <string>

#include "routing/read_router.hpp"

using namespace switchyard::routing;

namespace {

SessionRouter session(int i) {
  return SessionRouter(SessionIdentity{"session-" + std::to_string(i), "app", "web", "10.0.0.1"});
}

constexpr ReadRequest kSafe{true, false, false};

} // namespace

TEST_CASE("the observed split is within two points of the percentage over 10,000 sessions") {
  for (double percent : {0.0, 10.0, 50.0, 100.0, 12.5}) {
    ReadPolicy policy;
    policy.percent = percent;
    int secondary = 0;
    for (int i = 0; i < 10'000; ++i) {
      auto router = session(i);
      secondary += router.route(policy, kSafe).target == ReadTarget::kSecondary;
    }
    CHECK(std::abs(secondary / 100.0 - percent) <= 2.0);
  }
}

TEST_CASE("ramping up keeps the cohort and adds to it; ramping down does the reverse") {
  auto member = [](int i, double percent) {
    ReadPolicy policy;
    policy.percent = percent;
    return session(i).route(policy, kSafe).target == ReadTarget::kSecondary;
  };
  for (int i = 0; i < 5'000; ++i) {
    bool at10 = member(i, 10);
    bool at25 = member(i, 25);
    CHECK((!at10 || at25));       // in at 10 % stays in at 25 %
    CHECK(member(i, 10) == at10); // back at 10 %: the same sessions
  }
  CHECK(cohort_bucket("session-1") == cohort_bucket("session-1"));
  CHECK_FALSE(in_cohort(0, 0));
  CHECK(in_cohort(9'999, 100));
  CHECK(in_cohort(1'249, 12.5));
  CHECK_FALSE(in_cohort(1'250, 12.5));
}

TEST_CASE("only safe reads outside written transactions leave the primary") {
  ReadPolicy policy;
  policy.percent = 100;
  auto router = session(1);
  CHECK(router.route(policy, kSafe).reason == RouteReason::kCohort);
  CHECK(router.route(policy, {false, false, false}).reason == RouteReason::kUnsafe);
  CHECK(router.route(policy, {true, true, true}).reason == RouteReason::kWrittenTransaction);
  policy.percent = 0;
  CHECK(router.route(policy, kSafe).reason == RouteReason::kOutsideCohort);
}

TEST_CASE("a decision holds for its unit while the policy changes") {
  ReadPolicy all;
  all.percent = 100;
  ReadPolicy none;
  SessionRouter router = session(7);

  all.unit = none.unit = DecisionUnit::kStatement;
  CHECK(router.route(all, kSafe).target == ReadTarget::kSecondary);
  CHECK(router.route(none, kSafe).target == ReadTarget::kPrimary);

  all.unit = none.unit = DecisionUnit::kTransaction;
  ReadRequest in_transaction{true, true, false};
  CHECK(router.route(all, in_transaction).target == ReadTarget::kSecondary);
  CHECK(router.route(none, in_transaction).target == ReadTarget::kSecondary); // kept
  router.end_transaction();
  CHECK(router.route(none, in_transaction).target == ReadTarget::kPrimary);
  router.end_transaction();

  all.unit = none.unit = DecisionUnit::kSession;
  CHECK(router.route(none, kSafe).target == ReadTarget::kPrimary);
  CHECK(router.route(all, kSafe).target == ReadTarget::kPrimary); // kept for the session
}

TEST_CASE("overrides by application_name win over user overrides and the default") {
  ReadPolicy policy;
  policy.percent = 100;
  policy.user_percent = {{"app", 0}};
  policy.application_percent = {{"batch", 100}};
  CHECK(policy.percent_for("app", "web") == 0);
  CHECK(policy.percent_for("app", "batch") == 100);
  CHECK(policy.percent_for("other", "web") == 100);
  SessionRouter router(SessionIdentity{"s", "app", "web", "10.0.0.1"});
  CHECK(router.route(policy, kSafe).target == ReadTarget::kPrimary);
  router.set_application_name("batch");
  CHECK(router.route(policy, kSafe).target == ReadTarget::kSecondary);

  policy.key = CohortKey::kClientAddress;
  policy.application_percent.clear();
  policy.user_percent.clear();
  policy.percent = 50;
  SessionRouter a(SessionIdentity{"s1", "u", "x", "192.0.2.7"});
  SessionRouter b(SessionIdentity{"s2", "v", "y", "192.0.2.7"});
  CHECK(a.route(policy, kSafe).target == b.route(policy, kSafe).target); // same address
}
