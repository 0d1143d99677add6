#include <catch2/catch.hpp>

#include "proxy/shape_registry.hpp"

using switchyard::proxy::ShapeRegistry;

TEST_CASE("a shared table shape (an EpochCache) holds until it is old or the schema epoch moved") {
  ShapeRegistry registry;
  auto now = ShapeRegistry::Clock::now();
  switchyard::protocol::TableShape shape;
  shape.qualified = "public.accounts";
  shape.key_columns = {"aid"};
  CHECK_FALSE(registry.find("k", 0, now));

  registry.remember("k", shape, 3, now);
  auto found = registry.find("k", 3, now + ShapeRegistry::kTtl);
  REQUIRE(found);
  CHECK(found->key_columns == std::vector<std::string>{"aid"});
  CHECK_FALSE(registry.find("k", 4, now)); // a DDL since
  CHECK_FALSE(registry.find("k", 3, now + ShapeRegistry::kTtl + std::chrono::seconds(1)));
  CHECK_FALSE(registry.find("other", 3, now));

  SECTION("it stays bounded: full, it starts over") {
    for (size_t i = 0; i < ShapeRegistry::kMaxEntries; ++i)
      registry.remember("t" + std::to_string(i), shape, 3, now);
    CHECK_FALSE(registry.find("k", 3, now));
    CHECK(registry.find("t" + std::to_string(ShapeRegistry::kMaxEntries - 1), 3, now));
  }

  SECTION("cleared, it holds nothing") {
    registry.clear();
    CHECK_FALSE(registry.find("k", 3, now));
  }
}

TEST_CASE("an EpochCache given a shorter life forgets sooner") {
  ShapeRegistry replayed(std::chrono::seconds(1));
  auto now = ShapeRegistry::Clock::now();
  replayed.remember("k", switchyard::protocol::TableShape{}, 0, now);
  CHECK(replayed.find("k", 0, now + std::chrono::seconds(1)));
  CHECK_FALSE(replayed.find("k", 0, now + std::chrono::milliseconds(1001)));
}
