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
