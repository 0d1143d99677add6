#include <catch2/catch.hpp>

#include "proxy/shared_connections.hpp"

using Pool = switchyard::proxy::SharedConnections<int>;

namespace {

std::unique_ptr<int> connection(int id) {
  return std::make_unique<int>(id);
}

} // namespace

TEST_CASE("a shared connection goes to the next session, the last used first") {
  Pool pool;
  pool.join("k");
  pool.join("k");
  CHECK(pool.take("k") == nullptr); // none idle yet: the session connects
  CHECK(pool.give_back("k", connection(1)) == nullptr);
  CHECK(pool.give_back("k", connection(2)) == nullptr);
  CHECK(pool.idle("k") == 2);
  auto taken = pool.take("k");
  REQUIRE(taken);
  CHECK(*taken == 2);
  CHECK(pool.take("other") == nullptr); // another login never gets it
}

TEST_CASE("idle shared connections never outnumber the sessions sharing them") {
  Pool pool;
  pool.join("k");
  CHECK(pool.give_back("k", connection(1)) == nullptr);
  auto refused = pool.give_back("k", connection(2));
  REQUIRE(refused);
  CHECK(*refused == 2);

  pool.join("k");
  CHECK(pool.give_back("k", connection(3)) == nullptr);
  auto surplus = pool.leave("k"); // one session left: the older idle connection goes
  REQUIRE(surplus.size() == 1);
  CHECK(*surplus[0] == 1);
  CHECK(pool.idle("k") == 1);

  surplus = pool.leave("k");
  REQUIRE(surplus.size() == 1);
  CHECK(*surplus[0] == 3);
  CHECK(pool.idle("k") == 0);
  CHECK(pool.leave("k").empty()); // a key no session shares is forgotten
}
