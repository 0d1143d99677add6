#include <catch2/catch.hpp>

#include "proxy/shared_connections.hpp"

namespace {

struct Connection {
  int id = 0;
  uint64_t shared_rank = 0;
};
using Pool = switchyard::proxy::SharedConnections<Connection>;

std::unique_ptr<Connection> connection(int id) {
  return std::make_unique<Connection>(Connection{id});
}

} // namespace

TEST_CASE("a session takes the first-ranked idle connection, whichever came back last") {
  Pool pool;
  for (int i = 0; i < 3; ++i)
    pool.join("k");
  CHECK(pool.take("k") == nullptr); // none idle yet: the session connects
  CHECK(pool.give_back("k", connection(1)) == nullptr);
  CHECK(pool.give_back("k", connection(2)) == nullptr);
  CHECK(pool.give_back("k", connection(3)) == nullptr);
  auto first = pool.take("k");
  auto second = pool.take("k");
  REQUIRE((first && second));
  CHECK(first->id == 1);
  CHECK(second->id == 2);
  auto refused_second = pool.give_back("k", std::move(second)); // back in reverse order
  auto refused_first = pool.give_back("k", std::move(first));
  CHECK(refused_second == nullptr);
  CHECK(refused_first == nullptr);
  auto again = pool.take("k");
  REQUIRE(again);
  CHECK(again->id == 1);                // still the first: its backend stays the busy one
  CHECK(pool.take("other") == nullptr); // another login never gets it
}

TEST_CASE("idle shared connections never outnumber the sessions sharing them") {
  Pool pool;
  pool.join("k");
  CHECK(pool.give_back("k", connection(1)) == nullptr);
  auto refused = pool.give_back("k", connection(2));
  REQUIRE(refused);
  CHECK(refused->id == 2); // the last-ranked goes

  pool.join("k");
  CHECK(pool.give_back("k", connection(3)) == nullptr);
  auto surplus = pool.leave("k"); // one session left: the last-ranked idle connection goes
  REQUIRE(surplus.size() == 1);
  CHECK(surplus[0]->id == 3);
  CHECK(pool.idle("k") == 1);

  surplus = pool.leave("k");
  REQUIRE(surplus.size() == 1);
  CHECK(surplus[0]->id == 1);
  CHECK(pool.idle("k") == 0);
  CHECK(pool.leave("k").empty()); // a key no session shares is forgotten
}
