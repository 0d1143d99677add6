#include <catch2/catch.hpp>
#include <unistd.h>

#include <filesystem>
#include <future>
#include <thread>

#include "backfill/journal.hpp"
#include "config/config.hpp"
#include "proxy/role_fence.hpp"
#include "proxy/runtime.hpp"
#include "routing/cutover.hpp"

using namespace switchyard;

TEST_CASE("the role fence drains sessions of earlier generations before writes go on") {
  proxy::RoleFence fence;
  auto start = proxy::RoleFence::Clock::now();
  fence.join(0);
  fence.join(0);
  CHECK_FALSE(fence.draining()); // no swap yet: nothing is stale

  CHECK(fence.advance(start) == 1);
  CHECK(fence.advanced_at() == start);
  CHECK(fence.draining());
  CHECK(fence.stale_sessions() == 2);
  fence.join(1); // a session with the new roles
  CHECK(fence.stale_sessions() == 2);

  fence.leave(0);
  CHECK(fence.draining());
  fence.leave(0);
  CHECK(fence.stale_sessions() == 0); // the last session with the old roles is gone...
  CHECK(fence.draining());            // ...but the new primary's sequences lag still
  CHECK_FALSE(fence.settled());
  fence.settle(1);
  CHECK(fence.settled());
  CHECK_FALSE(fence.draining());

  SECTION("a second swap makes the sessions of the first one stale in turn") {
    fence.advance(start);
    CHECK(fence.generation() == 2);
    CHECK(fence.draining());
    CHECK(fence.stale_sessions() == 1);
    fence.leave(1);
    fence.settle(1); // a late settle of the earlier swap settles nothing
    CHECK(fence.draining());
    fence.settle(2);
    CHECK_FALSE(fence.draining());
  }
  SECTION("leaving an unknown generation changes nothing") {
    fence.leave(7);
    CHECK(fence.stale_sessions() == 0);
    fence.leave(1);
  }
}

TEST_CASE("an oriented runtime trades primary and secondary, TLS contexts included") {
  auto config = std::make_shared<config::Config>();
  config->primary.host = "old-db";
  config::BackendTarget secondary;
  secondary.host = "new-db";
  config->secondary = secondary;
  proxy::Runtime loaded;
  loaded.config = config;
  loaded.primary_tls = std::make_shared<proxy::ssl::context>(proxy::ssl::context::tls_client);

  auto same = proxy::orient_runtime(loaded, false, 3);
  CHECK(same->config == config);
  CHECK(same->role_generation == 3);
  CHECK_FALSE(same->roles_swapped);

  auto swapped = proxy::orient_runtime(loaded, true, 4);
  CHECK(swapped->roles_swapped);
  CHECK(swapped->role_generation == 4);
  CHECK(swapped->config->primary.host == "new-db");
  CHECK(swapped->config->secondary->host == "old-db");
  CHECK(swapped->secondary_tls == loaded.primary_tls);
  CHECK(swapped->primary_tls == nullptr);
  CHECK(config->primary.host == "old-db"); // the loaded config is left alone

  config->secondary.reset(); // nothing to swap with
  CHECK_FALSE(proxy::orient_runtime(loaded, true, 5)->roles_swapped);
}

TEST_CASE("roles are swapped while promoted or finalized") {
  using routing::CutoverPhase;
  CHECK(routing::roles_swapped(CutoverPhase::kPromoted));
  CHECK(routing::roles_swapped(CutoverPhase::kFinalized));
  for (auto phase : {CutoverPhase::kPrimaryOnly, CutoverPhase::kMirroring, CutoverPhase::kRamping,
                     CutoverPhase::kReverted}) {
    CHECK_FALSE(routing::roles_swapped(phase));
  }
}

TEST_CASE("journal entries say which database missed the write") {
  backfill::JournalEntry entry;
  entry.table = "public.accounts";
  entry.columns = {"id"};
  entry.types = {23};
  entry.formats = {0};
  entry.values = {protocol::Value{"7"}};
  auto fresh = backfill::from_json_line(backfill::to_json_line(entry));
  REQUIRE(fresh);
  CHECK(fresh->missed_by == "new");

  entry.missed_by = "old";
  auto swapped = backfill::from_json_line(backfill::to_json_line(entry));
  REQUIRE(swapped);
  CHECK(swapped->missed_by == "old");
  CHECK(swapped->values == entry.values);

  // Entries written before the field existed were all missed by the new database.
  auto legacy = backfill::from_json_line(R"({"kind":"row","user":"u","database":"d"})");
  REQUIRE(legacy);
  CHECK(legacy->missed_by == "new");
}

TEST_CASE("journal entries say whether the write may have been applied after all") {
  backfill::JournalEntry entry;
  entry.table = "h";
  CHECK_FALSE(backfill::from_json_line(backfill::to_json_line(entry))->maybe_applied);
  entry.maybe_applied = true;
  auto line = backfill::to_json_line(entry);
  CHECK(line.find(R"("maybe_applied":true)") != std::string::npos);
  CHECK(backfill::from_json_line(line)->maybe_applied);
}

TEST_CASE("journal entries keep the settings their write ran under") {
  backfill::JournalEntry entry;
  entry.table = "items";
  CHECK(backfill::to_json_line(entry).find("settings") == std::string::npos);
  CHECK(backfill::from_json_line(backfill::to_json_line(entry))->settings.empty());
  entry.settings = {"SET search_path = tenant_a", "SET LOCAL \"TimeZone\" = 'UTC'"};
  CHECK(backfill::from_json_line(backfill::to_json_line(entry))->settings == entry.settings);
}

TEST_CASE("journal entries say which rows one statement wrote") {
  backfill::JournalEntry entry;
  entry.table = "tree";
  CHECK(backfill::to_json_line(entry).find("statement_rows") == std::string::npos);
  CHECK(backfill::from_json_line(backfill::to_json_line(entry))->statement_rows == 1);
  for (uint32_t rows : {0U, 3U}) {
    entry.statement_rows = rows;
    CHECK(backfill::from_json_line(backfill::to_json_line(entry))->statement_rows == rows);
  }
  CHECK_FALSE(backfill::from_json_line(R"({"kind":"row","statement_rows":"x"})"));
}

TEST_CASE("journal entries say which columns an update assigned") {
  backfill::JournalEntry entry;
  entry.table = "moved";
  entry.op = "update";
  CHECK(backfill::to_json_line(entry).find("assigned") == std::string::npos);
  CHECK(backfill::from_json_line(backfill::to_json_line(entry))->assigned.empty());
  entry.assigned = {"id", "Note"};
  CHECK(backfill::from_json_line(backfill::to_json_line(entry))->assigned == entry.assigned);
  CHECK_FALSE(backfill::from_json_line(R"({"kind":"row","assigned":[1]})"));
}

TEST_CASE("journal entries of a table to copy whole") {
  backfill::JournalEntry entry;
  entry.kind = backfill::JournalEntry::Kind::kTable;
  entry.table = R"(s."Snap")";
  auto line = backfill::to_json_line(entry);
  CHECK(line.find(R"("kind":"table")") != std::string::npos);
  auto read = backfill::from_json_line(line);
  REQUIRE(read);
  CHECK(read->kind == backfill::JournalEntry::Kind::kTable);
  CHECK(read->table == entry.table);
}

namespace {

// A journal in a directory of its own under the temporary directory, removed afterwards.
struct TempJournal {
  explicit TempJournal(const std::string& name)
      : directory(std::filesystem::temp_directory_path() /
                  (name + "-" + std::to_string(::getpid()))) {
    std::filesystem::remove_all(directory);
    auto opened = backfill::DivergenceJournal::open(directory + "/journal.jsonl");
    REQUIRE(opened);
    journal = std::move(*opened);
  }
  ~TempJournal() {
    journal.reset(); // its flusher ends before the file goes
    std::filesystem::remove_all(directory);
  }
  TempJournal(const TempJournal&) = delete;
  TempJournal& operator=(const TempJournal&) = delete;

  std::string directory;
  std::unique_ptr<backfill::DivergenceJournal> journal;
};

// Waits on the calling thread for the journal's flusher to have `ticket` on disk.
Status wait_durable(backfill::DivergenceJournal& journal, uint64_t ticket) {
  std::promise<Status> flushed;
  journal.when_durable(ticket, [&](Status synced) { flushed.set_value(std::move(synced)); });
  return flushed.get_future().get();
}

} // namespace

TEST_CASE("the journal counts the entries before the first whose transaction is open") {
  TempJournal temp("switchyard-journal-test");
  backfill::DivergenceJournal& j = *temp.journal;
  std::vector<backfill::JournalEntry> two(2);
  for (auto& entry : two)
    entry.table = "t";
  REQUIRE(j.append(two)); // committed already
  CHECK(j.settled_total() == 2);
  uint64_t open_first = 0;
  uint64_t open_second = 0;
  REQUIRE(j.append(two, &open_first));
  auto last = j.append(two, &open_second);
  REQUIRE(last);
  REQUIRE(wait_durable(j, *last)); // pending() reads only what is on disk
  CHECK(j.appended_total() == 6);
  CHECK(j.settled_total() == 2);
  j.settle(open_second); // ended before the one written before it
  CHECK(j.settled_total() == 2);
  CHECK(j.pending(10)->size() == 2);
  j.settle(open_first);
  CHECK(j.settled_total() == 6);
  CHECK(j.pending(10)->size() == 6);
}

TEST_CASE("journal appends of many threads are on disk when their waits end") {
  TempJournal temp("switchyard-journal-flush-test");
  backfill::DivergenceJournal& j = *temp.journal;
  constexpr size_t kThreads = 4;
  constexpr size_t kAppends = 50;
  std::atomic<size_t> waits_ended{0};
  std::atomic<size_t> not_durable_yet{0};
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  for (size_t t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      backfill::JournalEntry entry;
      entry.table = "t" + std::to_string(t);
      for (size_t i = 0; i < kAppends; ++i) {
        auto ticket = j.append(std::span(&entry, 1));
        if (!ticket || !wait_durable(j, *ticket) || !j.durable(*ticket)) ++not_durable_yet;
        ++waits_ended;
      }
    });
  }
  for (auto& thread : threads)
    thread.join();
  CHECK(waits_ended == kThreads * kAppends);
  CHECK(not_durable_yet == 0);
  auto pending = j.pending(1000);
  REQUIRE(pending);
  CHECK(pending->size() == kThreads * kAppends);

  SECTION("the file emptied once all is replayed takes appends from its start again") {
    REQUIRE(j.acknowledge(pending->back().first));
    CHECK(j.backlog() == 0);
    backfill::JournalEntry entry;
    entry.table = "after";
    auto ticket = j.append(std::span(&entry, 1));
    REQUIRE(ticket);
    REQUIRE(wait_durable(j, *ticket));
    auto after = j.pending(10);
    REQUIRE(after);
    REQUIRE(after->size() == 1);
    CHECK(after->front().second.table == "after");
    CHECK(after->front().first == std::filesystem::file_size(temp.directory + "/journal.jsonl"));
  }

  SECTION("a wait after the flusher stopped is served by a flush of its own") {
    backfill::JournalEntry entry;
    entry.table = "late";
    auto ticket = j.append(std::span(&entry, 1));
    REQUIRE(ticket);
    j.stop_flusher();
    CHECK(j.durable(*ticket)); // stopping flushed what was appended
    auto later = j.append(std::span(&entry, 1));
    REQUIRE(later);
    CHECK_FALSE(j.durable(*later));
    REQUIRE(wait_durable(j, *later));
    CHECK(j.durable(*later));
  }
}
