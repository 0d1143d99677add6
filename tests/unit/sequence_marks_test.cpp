#include <catch2/catch.hpp>

#include "proxy/sequence_marks.hpp"

using switchyard::proxy::SequenceMarks;
using Lagging = std::vector<std::pair<std::string, int64_t>>;

TEST_CASE("a sequence lags once an image wrote past where it was advanced, per database") {
  SequenceMarks marks;
  CHECK(marks.take_lagging("db").empty());

  marks.note("db", "public.events_id_seq", 7);
  marks.note("db", "public.events_id_seq", 5); // an earlier id changes nothing
  marks.note("db", "public.ledger_id_seq", 2);
  marks.note("other", "public.events_id_seq", 40);
  CHECK(marks.take_lagging("db") ==
        Lagging{{"public.events_id_seq", 7}, {"public.ledger_id_seq", 2}});
  CHECK(marks.take_lagging("db").empty()); // advanced already

  marks.note("db", "public.events_id_seq", 7); // not beyond the advance
  CHECK(marks.take_lagging("db").empty());
  marks.note("db", "public.events_id_seq", 9);
  CHECK(marks.take_lagging("db") == Lagging{{"public.events_id_seq", 9}});
  CHECK(marks.take_lagging("other") == Lagging{{"public.events_id_seq", 40}});
}

TEST_CASE("sequence marks stay bounded: past the limit new sequences are not noted") {
  SequenceMarks marks;
  for (size_t i = 0; i < SequenceMarks::kMaxSequences; ++i)
    marks.note("db", "s" + std::to_string(i), 1);
  marks.note("db", "one too many", 1);
  Lagging lagging = marks.take_lagging("db");
  CHECK(lagging.size() == SequenceMarks::kMaxSequences);
  CHECK(std::none_of(lagging.begin(), lagging.end(),
                     [](const auto& mark) { return mark.first == "one too many"; }));
}

TEST_CASE("advances put back after a failed batch lag again, unless advanced further since") {
  SequenceMarks marks;
  marks.note("db", "a", 5);
  marks.note("db", "b", 3);
  Lagging taken = marks.take_lagging("db");
  REQUIRE(taken == Lagging{{"a", 5}, {"b", 3}});
  marks.note("db", "b", 8);
  CHECK(marks.take_lagging("db") == Lagging{{"b", 8}}); // another batch advanced b to 8
  marks.put_back("db", taken);
  CHECK(marks.take_lagging("db") == Lagging{{"a", 5}});
  marks.put_back("other", taken); // nothing noted there: nothing to send
  CHECK(marks.take_lagging("other").empty());
}

TEST_CASE("marks are kept per secondary, role generation and database") {
  std::string key = SequenceMarks::database_key("postgresql://s/db", 2, "app");
  CHECK(key == std::string("postgresql://s/db\0"
                           "2\0app",
                           23));
  CHECK(key != SequenceMarks::database_key("postgresql://s/db", 3, "app"));
}
