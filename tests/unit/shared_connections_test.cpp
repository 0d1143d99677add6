#include <catch2/catch.hpp>

#include "proxy/shared_connections.hpp"

namespace {

struct Connection {
  int id = 0;
  uint64_t shared_rank = 0;
};
using Pool = switchyard::proxy::SharedConnections<Connection>;
using std::chrono::seconds;
constexpr auto kIdleLimit = seconds(10);

std::unique_ptr<Connection> connection(int id) {
  return std::make_unique<Connection>(Connection{id});
}

} // namespace

TEST_CASE("a session takes the first-ranked idle connection, whichever came back last") {
  Pool pool;
  for (int i = 0; i < 3; ++i)
    pool.join("k");
  CHECK(pool.take("k") == nullptr); // none idle yet: the session connects
  CHECK(pool.give_back("k", connection(1), kIdleLimit).empty());
  CHECK(pool.give_back("k", connection(2), kIdleLimit).empty());
  CHECK(pool.give_back("k", connection(3), kIdleLimit).empty());
  auto first = pool.take("k");
  auto second = pool.take("k");
  REQUIRE((first && second));
  CHECK(first->id == 1);
  CHECK(second->id == 2);
  auto refused_second = pool.give_back("k", std::move(second), kIdleLimit); // back in reverse order
  auto refused_first = pool.give_back("k", std::move(first), kIdleLimit);
  CHECK(refused_second.empty());
  CHECK(refused_first.empty());
  auto again = pool.take("k");
  REQUIRE(again);
  CHECK(again->id == 1);                // still the first: its backend stays the busy one
  CHECK(pool.take("other") == nullptr); // another login never gets it
}

TEST_CASE("idle shared connections never outnumber the sessions sharing them") {
  Pool pool;
  pool.join("k");
  CHECK(pool.give_back("k", connection(1), kIdleLimit).empty());
  auto refused = pool.give_back("k", connection(2), kIdleLimit);
  REQUIRE(refused.size() == 1);
  CHECK(refused[0]->id == 2); // the last-ranked goes

  pool.join("k");
  CHECK(pool.give_back("k", connection(3), kIdleLimit).empty());
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

TEST_CASE("a shared connection left idle longer than the limit goes at the next give-back") {
  Pool pool;
  for (int i = 0; i < 3; ++i)
    pool.join("k");
  auto start = Pool::Clock::time_point{};
  CHECK(pool.give_back("k", connection(1), kIdleLimit, start).empty());
  CHECK(pool.give_back("k", connection(2), kIdleLimit, start).empty());
  CHECK(pool.give_back("k", connection(3), kIdleLimit, start).empty()); // a burst needed three
  for (int step = 1; step <= 4; ++step) { // then one at a time: the first-ranked does it all
    auto busy = pool.take("k");
    REQUIRE(busy);
    CHECK(busy->id == 1);
    auto closed = pool.give_back("k", std::move(busy), kIdleLimit, start + seconds(step * 3));
    if (step < 4) {
      CHECK(closed.empty()); // 9 s idle is within the limit
    } else {
      REQUIRE(closed.size() == 2); // 12 s idle: both unused ones go
      CHECK(((closed[0]->id == 2 && closed[1]->id == 3) ||
             (closed[0]->id == 3 && closed[1]->id == 2)));
    }
  }
  CHECK(pool.idle("k") == 1);
}
