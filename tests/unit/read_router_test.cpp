#include <catch2/catch.hpp>

#include <string>

#include "protocol/classify.hpp"
#include "routing/read_router.hpp"
#include "routing/result_digest.hpp"

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

  // A revert (0 %) takes a session-long secondary decision back to the primary at once.
  SessionRouter kept = session(8);
  CHECK(kept.route(all, kSafe).target == ReadTarget::kSecondary);
  CHECK(kept.route(none, kSafe).target == ReadTarget::kPrimary);
  CHECK(kept.route(all, kSafe).target == ReadTarget::kSecondary);
}

TEST_CASE("overrides by application_name win over user overrides and the default") {
  ReadPolicy policy;
  policy.percent = 100;
  policy.user_percent = {{"app", 0}};
  policy.application_percent = {{"batch", 100}};
  CHECK(percent_for(policy, "app", "web") == 0);
  CHECK(percent_for(policy, "app", "batch") == 100);
  CHECK(percent_for(policy, "other", "web") == 100);
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

TEST_CASE("only reads without locks, writes or connection-bound functions are safe") {
  auto safe = [](std::string_view sql, const std::vector<std::string>& allowed = {}) {
    auto c = switchyard::protocol::classify(sql);
    REQUIRE(c.statements.size() == 1);
    return is_safe_read(c.statements[0], allowed);
  };
  CHECK(safe("SELECT abalance FROM pgbench_accounts WHERE aid = 1"));
  CHECK(safe("VALUES (1), (2)"));
  CHECK(safe("WITH t AS (SELECT 1 AS x) SELECT x FROM t"));
  CHECK(safe("SHOW search_path"));
  CHECK(safe("SELECT now(), count(*) FROM t"));
  CHECK_FALSE(safe("SELECT * FROM t FOR UPDATE"));
  CHECK_FALSE(safe("SELECT * FROM t FOR SHARE"));
  CHECK_FALSE(safe("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d"));
  CHECK_FALSE(safe("SELECT * INTO copy FROM t"));
  CHECK_FALSE(safe("SELECT nextval('s')"));
  CHECK_FALSE(safe("SELECT random()"));
  CHECK_FALSE(safe("SELECT clock_timestamp()"));
  CHECK_FALSE(safe("SELECT pg_backend_pid()"));
  CHECK_FALSE(safe("SELECT pg_advisory_lock(1)"));
  CHECK_FALSE(safe("INSERT INTO t VALUES (1)"));
  CHECK_FALSE(safe("EXPLAIN ANALYZE SELECT 1"));
  CHECK_FALSE(safe("COPY t TO STDOUT"));
  CHECK_FALSE(safe("SELECT my_lookup(id) FROM t"));
  CHECK(safe("SELECT my_lookup(id) FROM t", {"my_lookup"}));
  // Catalogs name objects by the OIDs of the database they are read on.
  CHECK_FALSE(safe("SELECT oid FROM pg_type WHERE typname = 'mood'"));
  CHECK_FALSE(safe("SELECT typname FROM pg_catalog.pg_type t JOIN items i ON true"));
  CHECK_FALSE(safe("SELECT column_name FROM information_schema.columns"));
  CHECK_FALSE(safe("SELECT 'mood'::regtype::oid"));
  CHECK_FALSE(safe("WITH x AS (SELECT * FROM pg_class) SELECT count(*) FROM x"));
  CHECK(safe("SELECT * FROM app.pg_like_name"));
  CHECK_FALSE(safe("SELECT my_lookup(other(id)) FROM t", {"my_lookup"}));
  // Functions the database declares read-only, as the caller knows them.
  auto stable = [](const std::string& name) { return name == "other"; };
  auto c = switchyard::protocol::classify("SELECT my_lookup(other(id)) FROM t");
  CHECK(is_safe_read(c.statements[0], {"my_lookup"}, stable));
  CHECK_FALSE(is_safe_read(c.statements[0], {}, stable));
  c = switchyard::protocol::classify("SELECT other(id) FROM t FOR UPDATE");
  CHECK_FALSE(is_safe_read(c.statements[0], {}, stable));
}

TEST_CASE("result digests: order counts only when asked, every row and error counts") {
  auto digest = [](bool ordered, std::initializer_list<std::string_view> rows) {
    ResultDigest d(ordered);
    for (auto row : rows)
      d.add_row(row);
    return d;
  };
  CHECK(digest(false, {"a", "b"}) == digest(false, {"b", "a"}));
  CHECK_FALSE(digest(true, {"a", "b"}) == digest(true, {"b", "a"}));
  CHECK(digest(true, {"a", "b"}) == digest(true, {"a", "b"}));
  CHECK_FALSE(digest(false, {"a", "a"}) == digest(false, {"a"}));
  CHECK_FALSE(digest(false, {"a", "a", "b"}) == digest(false, {"a", "b", "b"}));
  CHECK_FALSE(digest(false, {"row 1"}) == digest(false, {"row 2"}));
  ResultDigest failed = digest(false, {});
  failed.set_error("42P01");
  CHECK_FALSE(failed == digest(false, {}));
  CHECK(failed.describe() == "error 42P01");
  CHECK(digest(false, {}).describe() == "0 rows, digest 0000000000000000");
}
