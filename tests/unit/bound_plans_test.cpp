#include <catch2/catch.hpp>

#include <atomic>
#include <cstdint>
#include <utility>

#include "proxy/bound_plans.hpp"

using switchyard::proxy::BoundPlans;

TEST_CASE("DDL waits for the Binds held before it on its table, not for later ones") {
  std::atomic<uint64_t> epoch{7};
  BoundPlans plans(epoch);
  BoundPlans::Hold events = plans.hold("events");
  BoundPlans::Hold accounts = plans.hold("accounts");
  CHECK(events.epoch() == 7);

  auto [ddl, under_way] = plans.ddl_sending();
  CHECK(ddl == 8);
  CHECK(epoch.load() == 8);
  BoundPlans::Hold after = plans.hold("events");
  CHECK(after.epoch() == 8); // prepared before 8: prepared again first, not waited for
  CHECK(plans.held_before(ddl, "events"));
  CHECK(plans.held_before(ddl, "accounts"));
  CHECK_FALSE(plans.held_before(ddl, "notes"));

  events = BoundPlans::Hold(); // answered
  CHECK_FALSE(plans.held_before(ddl, "events"));
  CHECK(plans.held_before(ddl, "")); // any table: accounts' Bind is still out
  { BoundPlans::Hold moved = std::move(accounts); }
  CHECK_FALSE(plans.held_before(ddl, ""));
  CHECK(plans.held_before(ddl + 1, "events")); // `after`, for the DDL after this one
}

TEST_CASE("Binds held together on one table are each answered") {
  std::atomic<uint64_t> epoch{0};
  BoundPlans plans(epoch);
  auto first = plans.hold("t");
  auto second = plans.hold("t");
  uint64_t ddl = plans.ddl_sending().epoch;
  first = BoundPlans::Hold();
  CHECK(plans.held_before(ddl, "t"));
  second = BoundPlans::Hold();
  CHECK_FALSE(plans.held_before(ddl, "t"));
}

TEST_CASE("a statement prepared while DDL is under way has no epoch, to be prepared again") {
  std::atomic<uint64_t> epoch{3};
  BoundPlans plans(epoch);
  CHECK(plans.plan_epoch() == 3u);
  {
    auto first = plans.ddl_sending();
    auto second = plans.ddl_sending();
    CHECK(second.epoch == 5);
    first.under_way.reset(); // answered
    CHECK_FALSE(plans.plan_epoch());
  }
  CHECK(plans.plan_epoch() == 5u);
}
