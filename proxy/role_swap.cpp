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

// On the old primary: where each of its ascending sequences stands, as a JSON array of
// {"name", "top"} (NULL when none has drawn). pg_sequences leaves out other sessions'
// temporary sequences and has no last_value where the login may not read it.
constexpr std::string_view kSequencePositions =
    "SELECT pg_catalog.json_agg(pg_catalog.json_build_object('name', "
    "pg_catalog.format('%I.%I', schemaname, sequencename), 'top', last_value))::text "
    "FROM pg_catalog.pg_sequences WHERE last_value IS NOT NULL AND increment_by > 0";

// On the new primary: moves each sequence of $1 (kSequencePositions) that exists, ascends and
// the login may read and update up to the old primary's position, unless it is there already.
// Row images carried ids drawn from sequences no column owns too (a DEFAULT naming a shared
// sequence, nextval() in the statement), which kCatchUpSequences cannot find.
constexpr std::string_view kAdoptSequencePositions =
    R"sql(SELECT count(pg_catalog.setval(c.oid, v.top))
FROM pg_catalog.json_to_recordset($1::json) AS v(name text, top int8)
JOIN pg_catalog.pg_class c ON c.oid = pg_catalog.to_regclass(v.name) AND c.relkind = 'S'
  AND c.relpersistence <> 't'
JOIN pg_catalog.pg_sequence q ON q.seqrelid = c.oid AND q.seqincrement > 0
WHERE CASE WHEN pg_catalog.has_sequence_privilege(c.oid, 'SELECT')
  AND pg_catalog.has_sequence_privilege(c.oid, 'UPDATE')
  THEN COALESCE(pg_catalog.pg_sequence_last_value(c.oid), 0) < v.top ELSE false END)sql";

// Runs `statements` in `db` on a connection of its own to `target`, the last with text
// parameters `values` if there are any; the last answer, or the first error.
asio::awaitable<Result<QueryRows>>
query_for_swap(const Runtime& runtime, const config::BackendTarget& target, ssl::context* tls,
               const Services::SessionDatabase& db, std::vector<std::string_view> statements,
               const std::vector<protocol::Value>& values) {
  LoginRequest login = backend_login(*runtime.config, target, db.user, db.database);
  login.options.emplace_back("application_name", "switchyard role swap");
  auto connected = co_await connect_backend(target, tls, std::move(login));
  if (auto* failed = std::get_if<BackendFailure>(&connected)) co_return Error{failed->message};
  auto& session = std::get<BackendSession>(connected);
  MessageReader reader(session.stream, protocol::Direction::kBackend,
                       std::numeric_limits<uint32_t>::max());
  reader.prepend(session.leftover);
  Result<QueryRows> ran = QueryRows{};
  std::vector<uint32_t> types(values.size(), 0); // each parameter's type as the SQL casts it
  std::vector<uint16_t> text_formats;
  for (size_t i = 0; i < statements.size() && ran; ++i) {
    if (i + 1 == statements.size() && !values.empty()) {
      ran = co_await run_query(session.stream, reader, statements[i], types, text_formats, values);
    } else {
      ran = co_await run_query(session.stream, reader, statements[i]);
    }
  }
  std::string terminate;
  protocol::append_terminate(terminate);
  co_await session.stream.write_last_words(terminate);
  session.stream.close();
  co_return ran;
}

// Where the old primary's sequences stand in `db` (kSequencePositions); nullopt when it is
// not PostgreSQL or cannot say within half of cutover.swap_timeout (it may be down: the
// owned sequences still get the rest), which is logged.
asio::awaitable<std::optional<protocol::Value>>
old_sequence_positions(const Runtime& runtime, const Services::SessionDatabase& db) {
  const auto& old_primary = runtime.config->secondary;
  if (!old_primary || old_primary->kind != config::BackendKind::kPostgres) co_return std::nullopt;
  asio::steady_timer deadline(co_await asio::this_coro::executor,
                              runtime.config->cutover.swap_timeout / 2);
  std::vector<std::string_view> statements{kSequencePositions};
  std::vector<protocol::Value> no_values;
  auto answered = co_await (query_for_swap(runtime, *old_primary, runtime.secondary_tls.get(), db,
                                           std::move(statements), no_values) ||
                            deadline.async_wait(use_tuple));
  Result<QueryRows> read = answered.index() == 0
                               ? std::get<0>(std::move(answered))
                               : Error{"no answer within cutover.swap_timeout / 2"};
  if (read && read->rows.size() == 1 && read->rows[0].size() == 1) co_return read->rows[0][0];
  spdlog::error("role swap: where the sequences of database {} (user {}) stand on the old "
                "primary could not be read ({}); sequences no serial or identity column owns "
                "are left where they are on the new primary",
                db.database, db.user, read ? "no answer" : read.error());
  co_return std::nullopt;
}

// Catches up the sequences of `db` on the primary: kCatchUpSequences, then
// kAdoptSequencePositions with the old primary's positions.
asio::awaitable<Status> run_catch_up(const Runtime& runtime, const Services::SessionDatabase& db) {
  std::vector<std::string_view> statements{kCatchUpSequences};
  std::vector<protocol::Value> positions;
  if (auto old = co_await old_sequence_positions(runtime, db); old && *old) {
    statements.push_back(kAdoptSequencePositions);
    positions.push_back(std::move(*old));
  }
  auto ran = co_await query_for_swap(runtime, runtime.config->primary, runtime.primary_tls.get(),
                                     db, std::move(statements), positions);
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
