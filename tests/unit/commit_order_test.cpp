#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "proxy/commit_order.hpp"

using switchyard::proxy::CommitOrder;
namespace asio = boost::asio;

namespace {

// Runs one coroutine per ticket that waits for its turn, records it, and is done; `hold`
// tickets stay undone until released, so what may run around them shows.
struct Run {
  asio::io_context io;
  CommitOrder order;
  std::vector<uint64_t> applied;

  // Runs every handler that is ready; waiters on their turn stay suspended.
  void settle() {
    io.restart();
    while (io.poll() > 0) {
    }
  }

  void start(uint64_t ticket, bool finish = true) {
    asio::co_spawn(
        io,
        [this, ticket, finish]() -> asio::awaitable<void> {
          co_await order.wait_ready(ticket);
          applied.push_back(ticket);
          if (finish) order.done(ticket);
        },
        asio::detached);
  }
};

} // namespace

TEST_CASE("conflicting transactions apply in ticket order, unrelated ones do not wait") {
  Run run;
  uint64_t first = run.order.take({1, 2}, false);
  uint64_t unrelated = run.order.take({3}, false);
  uint64_t conflicting = run.order.take({2}, false);
  run.start(conflicting);
  run.start(unrelated);
  run.start(first, false); // applies, but stays undone
  run.settle();
  CHECK(run.applied == std::vector<uint64_t>{unrelated, first});
  CHECK(run.order.pending() == 2);
  run.order.done(first);
  run.settle();
  CHECK(run.applied == std::vector<uint64_t>{unrelated, first, conflicting});
  CHECK(run.order.pending() == 0);
}

TEST_CASE("a barrier waits for every earlier transaction and every later one waits for it") {
  Run run;
  uint64_t a = run.order.take({1}, false);
  uint64_t barrier = run.order.take({}, true);
  uint64_t b = run.order.take({7}, false);
  run.start(b);
  run.start(barrier);
  run.settle();
  CHECK(run.applied.empty());
  run.start(a);
  run.settle();
  CHECK(run.applied == std::vector<uint64_t>{a, barrier, b});
}

TEST_CASE("a ticket released without applying frees its dependents") {
  Run run;
  uint64_t gone = run.order.take({5}, false);
  uint64_t next = run.order.take({5}, false);
  run.start(next);
  run.settle();
  CHECK(run.applied.empty());
  run.order.done(gone); // its session ended: journaled, never applied
  run.settle();
  CHECK(run.applied == std::vector<uint64_t>{next});
}

TEST_CASE(
    "a later transaction may join an earlier one's apply when all else it waits for is done") {
  CommitOrder order;
  uint64_t first = order.take({1}, false);
  uint64_t other = order.take({2}, false);        // another session's, unrelated to `first`
  uint64_t same_row = order.take({1}, false);     // waits for `first` only
  uint64_t both_rows = order.take({1, 2}, false); // waits for `same_row` and `other`
  CHECK(order.ready_with(same_row, {first}));
  CHECK_FALSE(order.ready_with(same_row, {}));
  CHECK_FALSE(order.ready_with(both_rows, {first, same_row})); // `other` is not done
  order.done(other);
  CHECK(order.ready_with(both_rows, {first, same_row}));

  uint64_t barrier = order.take({}, true);
  uint64_t after_barrier = order.take({9}, false);
  CHECK_FALSE(order.ready_with(barrier, {first, same_row, both_rows})); // never joins
  CHECK_FALSE(order.ready_with(after_barrier, {first}));                // waits for it
}

TEST_CASE("a transaction that began before running DDL was sent goes before its barrier") {
  Run run;
  uint64_t began = run.order.position(); // BEGIN; INSERT ... (holding its locks)
  uint64_t ddl = run.order.take_ddl_barrier();
  uint64_t after = run.order.take({2}, false, run.order.position()); // began after the DDL
  uint64_t held_back = run.order.take({1}, false, began); // commits while the DDL waits for it
  run.start(after);
  run.start(ddl);
  run.start(held_back);
  run.settle();
  CHECK(run.applied == std::vector<uint64_t>{held_back, ddl, after});

  // Once the primary answered the DDL, a transaction that began before it goes after it.
  uint64_t began_early = run.order.position();
  uint64_t answered = run.order.take_ddl_barrier();
  run.order.ddl_answered(answered);
  uint64_t late = run.order.take({3}, false, began_early);
  run.start(late);
  run.start(answered, false);
  run.settle();
  CHECK(run.applied.back() == answered);
  run.order.done(answered);
  run.settle();
  CHECK(run.applied.back() == late);
  CHECK(run.order.pending() == 0);
}

TEST_CASE("a transaction that follows one after running DDL goes after the DDL") {
  Run run;
  uint64_t began = run.order.position();
  uint64_t ddl = run.order.take_ddl_barrier();
  uint64_t after = run.order.take({5}, false, run.order.position());
  uint64_t same_row = run.order.take({5}, false, began); // wrote row 5 after `after` did
  uint64_t other_row = run.order.take({6}, false, began);
  run.start(same_row);
  run.start(other_row);
  run.start(after);
  run.start(ddl);
  run.settle();
  CHECK(run.applied == std::vector<uint64_t>{other_row, ddl, after, same_row});
}

TEST_CASE("a transaction goes before every running DDL sent after it began") {
  Run run;
  uint64_t began = run.order.position();
  uint64_t first_ddl = run.order.take_ddl_barrier();
  uint64_t second_ddl = run.order.take_ddl_barrier();
  uint64_t held_back = run.order.take({1}, false, began);
  uint64_t between = run.order.position();
  uint64_t third_ddl = run.order.take_ddl_barrier();
  uint64_t after_first = run.order.take({2}, false, between); // before the third only
  run.start(third_ddl);
  run.start(after_first);
  run.start(second_ddl);
  run.start(first_ddl);
  run.start(held_back);
  run.settle();
  CHECK(run.applied ==
        std::vector<uint64_t>{held_back, first_ddl, second_ddl, after_first, third_ddl});
}

TEST_CASE("a transaction without row keys that began before running DDL goes before it too") {
  Run run;
  uint64_t began = run.order.position();
  uint64_t ddl = run.order.take_ddl_barrier();
  uint64_t after = run.order.take({2}, false, run.order.position());
  uint64_t held_back = run.order.take({}, true, began); // a barrier of its own
  uint64_t also_held_back = run.order.take({3}, false, began);
  run.start(after);
  run.start(ddl);
  run.start(also_held_back);
  run.start(held_back);
  run.settle();
  CHECK(run.applied == std::vector<uint64_t>{held_back, also_held_back, ddl, after});
}
