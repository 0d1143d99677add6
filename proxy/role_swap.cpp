#include "proxy/role_swap.hpp"

#include <spdlog/spdlog.h>

#include <chrono>
#include <limits>
#include <variant>

#include "protocol/messages.hpp"
#include "proxy/backend_connector.hpp"
#include "proxy/backend_query.hpp"

namespace switchyard::proxy {
namespace {

constexpr auto kPoll = std::chrono::milliseconds(20);

// Sequences of other sessions' temporary tables cannot be read; descending ones are left
// alone (their "largest" is the smallest). The statement_timeout stops a slow max() scan that
// catch_up_sequences gave up on (at cutover.swap_timeout) from running on for long.
constexpr std::string_view kCatchUpSequences = R"sql(SET statement_timeout = '60s';
DO $switchyard$
DECLARE
  r record;
  top bigint;
BEGIN
  FOR r IN
    SELECT d.objid::regclass AS seq, d.refobjid::regclass AS tbl, a.attname AS col
    FROM pg_depend d
    JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' AND s.relpersistence <> 't'
    JOIN pg_sequence q ON q.seqrelid = d.objid AND q.seqincrement > 0
    JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
    WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
      AND d.deptype IN ('a', 'i')
      AND has_sequence_privilege(d.objid, 'UPDATE')
      AND has_table_privilege(d.refobjid, 'SELECT')
  LOOP
    EXECUTE format('SELECT max(%I)::bigint FROM %s', r.col, r.tbl) INTO top;
    IF top IS NOT NULL AND top > COALESCE(pg_sequence_last_value(r.seq), 0) THEN
      PERFORM setval(r.seq, top);
    END IF;
  END LOOP;
END
$switchyard$)sql";

// One connection to the primary that runs kCatchUpSequences in `db`.
asio::awaitable<Status> run_catch_up(const Runtime& runtime, const Services::SessionDatabase& db) {
  const config::BackendTarget& primary = runtime.config->primary;
  LoginRequest login = backend_login(*runtime.config, primary, db.user, db.database);
  login.options.emplace_back("application_name", "switchyard role swap");
  auto connected = co_await connect_backend(primary, runtime.primary_tls.get(), std::move(login));
  if (auto* failed = std::get_if<BackendFailure>(&connected)) co_return Error{failed->message};
  auto& session = std::get<BackendSession>(connected);
  MessageReader reader(session.stream, protocol::Direction::kBackend,
                       std::numeric_limits<uint32_t>::max());
  reader.prepend(session.leftover);
  auto ran = co_await run_query(session.stream, reader, kCatchUpSequences);
  std::string terminate;
  protocol::append_terminate(terminate);
  co_await session.stream.write_last_words(terminate);
  session.stream.close();
  if (!ran) co_return Error{ran.error()};
  co_return Ok{};
}

// Writes the new primary missed while it was the secondary must reach it before it takes
// writes of its own: a row replayed later could overwrite a newer one. The journal
// replayer applies them (it runs again once the old sessions are gone); this waits for
// every entry written so far, up to cutover.swap_timeout, then lets writes go on anyway
// (a source that is down must not stop the database for good) and says so. False when
// another swap began meanwhile.
asio::awaitable<bool> replay_into_new_primary(Services& services, const Runtime& runtime) {
  backfill::DivergenceJournal* journal = services.journal();
  if (journal == nullptr) co_return true;
  RoleFence& fence = services.role_fence();
  uint64_t written = journal->appended_total();
  auto deadline = RoleFence::Clock::now() + runtime.config->cutover.swap_timeout;
  asio::steady_timer timer(co_await asio::this_coro::executor);
  while (journal->acknowledged_total() < written && RoleFence::Clock::now() < deadline) {
    if (fence.generation() != runtime.role_generation) co_return false;
    timer.expires_after(kPoll);
    co_await timer.async_wait(use_tuple);
  }
  if (uint64_t behind = written - std::min(written, journal->acknowledged_total()); behind > 0) {
    spdlog::error("role swap: {} divergence journal entries were not replayed within "
                  "cutover.swap_timeout; writes go on, and rows the new primary misses reach "
                  "it when their source answers again",
                  behind);
  }
  co_return fence.generation() == runtime.role_generation;
}

// Catches up every database sessions used, then settles (unless another swap began).
asio::awaitable<void> settle(Services& services, const Runtime& runtime) {
  uint64_t generation = runtime.role_generation;
  RoleFence& fence = services.role_fence();
  while (true) {
    if (fence.generation() != generation) co_return;
    if (services.settle_role_swap(generation)) break;
    for (const auto& db : services.databases_to_catch_up(generation)) {
      if (fence.generation() != generation) co_return;
      co_await catch_up_sequences(services, runtime, db);
    }
  }
  spdlog::info("role swap {} complete: writes go on with the {} database as the primary",
               generation, runtime.roles_swapped ? "new" : "old");
}

} // namespace

asio::awaitable<void> catch_up_sequences(Services& services, const Runtime& runtime,
                                         const Services::SessionDatabase& db) {
  if (runtime.config->primary.kind != config::BackendKind::kPostgres) co_return;
  asio::steady_timer deadline(co_await asio::this_coro::executor,
                              runtime.config->cutover.swap_timeout);
  auto ran = co_await (run_catch_up(runtime, db) || deadline.async_wait(use_tuple));
  Status caught_up = ran.index() == 0 ? std::get<0>(std::move(ran))
                                      : Error{"it did not finish within cutover.swap_timeout"};
  if (caught_up) co_return;
  services.catch_up_failed(db, runtime.role_generation);
  spdlog::error("role swap: the sequences of database {} (user {}) on the new primary could not "
                "be caught up: {}; the next session of it tries again",
                db.database, db.user, caught_up.error());
}

asio::awaitable<void> settle_role_swaps(Services& services) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  RoleFence& fence = services.role_fence();
  while (true) {
    timer.expires_after(kPoll);
    auto [ec] = co_await timer.async_wait(use_tuple);
    if (ec) co_return;
    if (fence.settled() || fence.stale_sessions() > 0) continue;
    auto runtime = services.runtime();
    if (runtime->role_generation != fence.generation()) continue; // a swap in the making
    if (co_await replay_into_new_primary(services, *runtime)) co_await settle(services, *runtime);
  }
}

} // namespace switchyard::proxy
