#include "proxy/journal_replayer.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <limits>
#include <map>
#include <set>

#include "protocol/classify.hpp"
#include "protocol/messages.hpp"
#include "protocol/pg_values.hpp"
#include "proxy/backend_connector.hpp"
#include "proxy/backend_query.hpp"
#include "proxy/message_reader.hpp"
#include "proxy/sequence_marks.hpp"

namespace switchyard::proxy {
namespace {

using Clock = std::chrono::steady_clock;
using backfill::JournalEntry;
using monitoring::ReplayResult;

constexpr auto kIdlePoll = std::chrono::milliseconds(500);
constexpr auto kFailureBackoff = std::chrono::seconds(2);
constexpr size_t kBatch = 256;
constexpr int kAttempts = 3;
constexpr size_t kMaxReconciledRows = 65536;
constexpr auto kMinEntryTimeout = std::chrono::milliseconds(10'000);
// Makes the settings of the transaction it runs in the session's (a SET LOCAL's too). The
// transaction's own characteristics cannot outlive it.
constexpr std::string_view kKeepSettings =
    "SELECT pg_catalog.set_config(name, pg_catalog.current_setting(name), false) "
    "FROM pg_catalog.pg_settings WHERE source = 'session' AND name NOT LIKE 'transaction\\_%'";

//! Whether a DDL's error (as "SQLSTATE: message") says its work is already there: what
//! re-running a CREATE, DROP or ADD COLUMN the database applied before raises.
bool already_done(std::string_view error) {
  static constexpr std::array<std::string_view, 11> kStates{
      // duplicate table, object (index, type, constraint), schema, function, column
      "42P07", "42710", "42P06", "42723", "42701",
      // undefined table, object, schema, function, column (a DROP run again)
      "42P01", "42704", "3F000", "42883", "42703",
      // invalid table definition: a second primary key
      "42P16"};
  std::string_view state = error.substr(0, error.find(':'));
  return std::find(kStates.begin(), kStates.end(), state) != kStates.end();
}

//! The columns and values of a keyless row an entry inserts (generated columns left out).
struct KeylessRow {
  std::vector<std::string> names;
  std::vector<uint32_t> types;
  std::vector<uint16_t> formats;
  std::vector<protocol::Value> values;
};

//! A connection the replayer owns.
struct Link {
  explicit Link(BackendSession s)
      : session(std::move(s)), reader(session.stream, protocol::Direction::kBackend,
                                      std::numeric_limits<uint32_t>::max()) {}
  BackendSession session;
  MessageReader reader;
  //! The session settings adopted (see Replayer::adopt_settings); none: in doubt.
  std::optional<std::vector<std::string>> settings = std::vector<std::string>{};

  asio::awaitable<Result<QueryRows>> query(std::string_view sql) {
    return run_query(session.stream, reader, sql);
  }
  asio::awaitable<Result<QueryRows>> query(std::string_view sql, const std::vector<uint32_t>& types,
                                           const std::vector<uint16_t>& formats,
                                           const std::vector<protocol::Value>& values) {
    return run_query(session.stream, reader, sql, types, formats, values);
  }
};

//! The primary and secondary connections for one (user, database) of the journal.
struct Pair {
  std::unique_ptr<Link> primary;
  std::unique_ptr<Link> secondary;
};

//! Ends a replay that failed mid-transaction: both connections are dropped, so no
//! transaction (or its locks) stays open; they reconnect on the next entry.
Status abandon(Pair& pair, std::string what) {
  pair.primary.reset();
  pair.secondary.reset();
  return Error{std::move(what)};
}

//! Which way an entry replays: from the database that applied the write to the one that
//! missed it. Usually the secondary missed it; after a role swap (promote, or a revert
//! after it) entries from before may name the current primary instead.
struct Direction {
  Link* source;
  Link* target;
  const config::BackendTarget* source_backend;
  const config::BackendTarget* target_backend;
  bool into_primary; // the target is the current primary
};

class Replayer {
public:
  explicit Replayer(Services& services) : services_(services) {}

  asio::awaitable<void> run() {
    asio::steady_timer timer(co_await asio::this_coro::executor);
    while (true) {
      bool worked = false;
      auto runtime = services_.runtime();
      backfill::DivergenceJournal* journal = services_.journal();
      bool secondary_up =
          services_.secondary_down_until().load() <= Clock::now().time_since_epoch().count();
      // While sessions with roles from before a swap remain, which database is primary
      // depends on the session: the replay waits for one order.
      bool roles_settled = services_.role_fence().stale_sessions() == 0;
      if (journal != nullptr && journal->backlog() == 0) reconciled_.clear();
      if (runtime->config->secondary && journal != nullptr && journal->backlog() > 0 &&
          secondary_up && roles_settled) {
        if (runtime != runtime_) pairs_.clear(); // a reload or a role swap: other backends
        runtime_ = runtime;
        auto done = co_await replay_batch(*journal);
        if (!done) {
          spdlog::warn("journal replay paused: {}", done.error());
          pairs_.clear();
          timer.expires_after(kFailureBackoff);
          co_await timer.async_wait(use_tuple);
          continue;
        }
        worked = *done;
      }
      if (!worked) {
        timer.expires_after(kIdlePoll);
        co_await timer.async_wait(use_tuple);
      }
    }
  }

private:
  // Replays up to kBatch entries; true when it made progress.
  asio::awaitable<Result<bool>> replay_batch(backfill::DivergenceJournal& journal) {
    auto entries = journal.pending(kBatch);
    if (!entries) co_return Error{entries.error()};
    if (entries->empty()) co_return false;
    auto& metrics = services_.metrics();
    uint64_t acknowledged = 0;
    std::set<std::string> synced; // rows already re-synced in this batch
    for (auto& [offset, entry] : *entries) {
      auto pair = co_await pair_for(entry);
      if (!pair) {
        if (acknowledged > 0) (void)journal.acknowledge(acknowledged);
        co_return Error{pair.error()};
      }
      Direction way = direction(**pair, entry);
      Status applied = co_await adopt_settings(**pair, entry.settings);
      if (!applied) {
        // counted as a failed replay below
      } else if (entry.kind == JournalEntry::Kind::kRow) {
        // Bounded: a row's replay holds a lock on the current primary while it reads and
        // writes the other database, which may hang; closing the connections frees it.
        auto limit = std::max(kMinEntryTimeout, 5 * runtime_->config->mirror.timeout);
        asio::steady_timer timer(co_await asio::this_coro::executor, limit);
        auto outcome =
            co_await (replay_row(**pair, way, entry, synced) || timer.async_wait(use_tuple));
        if (outcome.index() == 1) {
          pairs_.clear();
          if (acknowledged > 0) (void)journal.acknowledge(acknowledged);
          co_return Error{"replaying a row of " + entry.table + " took longer than " +
                          std::to_string(limit.count()) + " ms; it is tried again"};
        }
        applied = std::move(std::get<0>(outcome));
      } else if (entry.ddl) {
        synced.clear(); // a schema change may change what a row sync writes
        auto ran = co_await way.target->query(entry.sql);
        if (!ran && entry.maybe_applied && already_done(ran.error())) {
          spdlog::info("journaled DDL had reached the secondary after all ({}): {}", ran.error(),
                       entry.sql);
        } else if (!ran) {
          applied = Error{ran.error()};
        }
      } else {
        spdlog::error("journal entry cannot be replayed (statement {}, fingerprint {}); "
                      "verify and repair the table: {}",
                      entry.sql, entry.fingerprint, entry.error);
        metrics.journal_replayed(ReplayResult::kUnreplayable).Increment();
        acknowledged = offset;
        continue;
      }
      if (!applied) {
        // A connection that failed mid-way leaves the entry for the next attempt, a few
        // times; an entry that keeps failing is skipped rather than blocking the journal.
        bool broken = !(*pair)->secondary || !(*pair)->primary;
        if (broken) pairs_.clear();
        attempts_ = offset == failing_offset_ ? attempts_ + 1 : 1;
        failing_offset_ = offset;
        if (broken && attempts_ < kAttempts) {
          if (acknowledged > 0) (void)journal.acknowledge(acknowledged);
          co_return Error{applied.error()};
        }
        spdlog::error("journal entry for {} failed to replay and is skipped: {}",
                      entry.kind == JournalEntry::Kind::kRow ? entry.table : entry.sql,
                      applied.error());
        metrics.journal_replayed(ReplayResult::kFailed).Increment();
      } else {
        metrics.journal_replayed(ReplayResult::kApplied).Increment();
      }
      acknowledged = offset;
    }
    if (auto saved = journal.acknowledge(acknowledged); !saved) co_return Error{saved.error()};
    metrics.journal_backlog().Set(static_cast<double>(journal.backlog()));
    co_return true;
  }

  asio::awaitable<Result<Pair*>> pair_for(const JournalEntry& entry) {
    std::string key = entry.user + '\0' + entry.database;
    Pair& pair = pairs_[key];
    const config::Config& config = *runtime_->config;
    if (!pair.primary) {
      auto link = co_await connect(config.primary, runtime_->primary_tls.get(), entry);
      if (!link) co_return Error{"primary: " + link.error()};
      pair.primary = std::move(*link);
    }
    if (!pair.secondary) {
      auto link = co_await connect(*config.secondary, runtime_->secondary_tls.get(), entry);
      if (!link) co_return Error{"secondary: " + link.error()};
      pair.secondary = std::move(*link);
    }
    co_return &pair;
  }

  asio::awaitable<Result<std::unique_ptr<Link>>>
  connect(const config::BackendTarget& target, ssl::context* tls, const JournalEntry& entry) {
    LoginRequest login = backend_login(*runtime_->config, target, entry.user, entry.database);
    login.options.emplace_back("application_name", "switchyard journal replayer");
    auto result = co_await connect_backend(target, tls, std::move(login));
    if (auto* failed = std::get_if<BackendFailure>(&result)) co_return Error{failed->message};
    co_return std::make_unique<Link>(std::move(std::get<BackendSession>(result)));
  }

  // The settings the entry's session had (its search_path above all: how the entry's names
  // resolve) hold on both connections while it replays. Set in a transaction and then made
  // the session's, so that a SET LOCAL holds too.
  asio::awaitable<Status> adopt_settings(Pair& pair, const std::vector<std::string>& settings) {
    const config::Config& config = *runtime_->config;
    for (auto [link, backend] : {std::pair{pair.primary.get(), &config.primary},
                                 std::pair{pair.secondary.get(), &*config.secondary}}) {
      if (link->settings == settings || backend->kind != config::BackendKind::kPostgres) continue;
      link->settings.reset(); // in doubt until the COMMIT
      std::vector<std::string_view> steps{"BEGIN", "RESET ALL"};
      steps.insert(steps.end(), settings.begin(), settings.end());
      steps.insert(steps.end(), {kKeepSettings, "COMMIT"});
      for (std::string_view step : steps) {
        if (auto ran = co_await link->query(step); !ran) {
          co_return abandon(pair, "adopting the session's setting \"" + std::string(step) +
                                      "\": " + ran.error());
        }
      }
      link->settings = settings;
    }
    co_return Ok{};
  }

  Direction direction(Pair& pair, const JournalEntry& entry) const {
    const config::Config& config = *runtime_->config;
    // The current secondary is the new database unless the roles are swapped.
    bool into_primary = (entry.missed_by == "old") != runtime_->roles_swapped;
    if (into_primary) {
      return {pair.secondary.get(), pair.primary.get(), &*config.secondary, &config.primary, true};
    }
    return {pair.primary.get(), pair.secondary.get(), &config.primary, &*config.secondary, false};
  }

  // Makes the target's row equal the source's current row while holding the current
  // primary's row lock, which every live write to that row takes first: a live write
  // lands wholly before or wholly after ours on both databases. Into the secondary, that
  // is the source row read FOR SHARE; into the primary, the target row locked FOR UPDATE
  // before the source row is read.
  asio::awaitable<Status> replay_row(Pair& pair, const Direction& way, const JournalEntry& entry,
                                     std::set<std::string>& synced) {
    Link& target = *way.target;
    auto shape = co_await query_table_shape(target.session.stream, target.reader, entry.table,
                                            dialect_of(*way.target_backend));
    if (!shape) co_return Error{shape.error()};
    if (shape->key_columns.empty()) {
      co_return co_await replay_keyless_insert(pair, way, entry, *shape);
    }
    std::vector<uint32_t> types;
    std::vector<uint16_t> formats;
    std::vector<protocol::Value> key;
    std::string where;
    for (const std::string& column : shape->key_columns) {
      auto at = std::find(entry.columns.begin(), entry.columns.end(), column);
      if (at == entry.columns.end()) co_return Error{"entry lacks key column " + column};
      size_t i = static_cast<size_t>(at - entry.columns.begin());
      uint32_t type = i < entry.types.size() ? entry.types[i] : 0;
      types.push_back(protocol::portable_type(type));
      formats.push_back(i < entry.formats.size() ? entry.formats[i] : 0);
      key.push_back(i < entry.values.size() ? entry.values[i] : protocol::Value{});
      if (!where.empty()) where += " AND ";
      where += protocol::quote_identifier(column);
      where += " = $";
      where += std::to_string(key.size());
    }
    std::string identity = entry.table;
    for (const auto& value : key)
      identity += '\0' + value.value_or("\x01NULL");
    if (!synced.insert(identity).second) co_return Ok{}; // this batch already synced it

    auto fail = [&](std::string what) { return abandon(pair, std::move(what)); };
    // The lock: a row lock on PostgreSQL; on SQLite the writer itself (BEGIN IMMEDIATE).
    Link& locked = way.into_primary ? target : *way.source;
    bool sqlite_locked = (way.into_primary ? way.target_backend : way.source_backend)->kind ==
                         config::BackendKind::kSqlite;
    std::string target_role = way.into_primary ? "primary: " : "secondary: ";
    std::string source_role = way.into_primary ? "secondary: " : "primary: ";
    auto begun = co_await locked.query(sqlite_locked ? "BEGIN IMMEDIATE" : "BEGIN");
    if (!begun) co_return fail(begun.error());
    std::string row_sql = "SELECT * FROM " + entry.table + " WHERE " + where;
    if (way.into_primary && !sqlite_locked) {
      auto lock = co_await target.query(row_sql + " FOR UPDATE", types, formats, key);
      if (!lock) co_return fail(target_role + lock.error());
    }
    // Named, not a ?: inside the co_await: GCC 12 destroys such temporaries twice.
    std::string source_sql = row_sql;
    if (!way.into_primary && !sqlite_locked) source_sql += " FOR SHARE";
    auto current = co_await way.source->query(source_sql, types, formats, key);
    if (!current) co_return fail(source_role + current.error());
    Result<QueryRows> written = Error{"not run"};
    if (current->rows.empty()) {
      written = co_await target.query(protocol::delete_sql(*shape), types, formats, key);
    } else {
      std::vector<std::string> names;
      std::vector<uint32_t> value_types;
      std::vector<protocol::Value> values;
      for (size_t i = 0; i < current->fields.size(); ++i) {
        const auto& field = current->fields[i];
        if (shape->is_generated(field.name)) continue;
        names.push_back(field.name);
        value_types.push_back(protocol::portable_type(field.type_oid));
        values.push_back(current->rows[0][i]);
      }
      // As SecondaryLink::apply writes it: with the triggers, then again without the BEFORE
      // triggers that stamped it (kTriggersOffSql), both in one transaction: the target's
      // own unless it is the locked side, whose transaction is open.
      std::string upsert = protocol::upsert_sql(*shape, names);
      bool stamped_again = shape->rewriting_triggers && shape->may_disable_triggers;
      bool own_transaction = stamped_again && !way.into_primary;
      if (own_transaction) written = co_await target.query("BEGIN");
      if (written || !own_transaction)
        written = co_await target.query(upsert, value_types, {}, values);
      if (written && stamped_again) {
        written = co_await target.query(kTriggersOffSql);
        if (written) written = co_await target.query(upsert, value_types, {}, values);
      }
      if (own_transaction) {
        std::string_view end = written ? "COMMIT" : "ROLLBACK";
        auto ended = co_await target.query(end);
        if (written && !ended) written = ended;
      }
    }
    auto committed = co_await locked.query("COMMIT");
    if (!committed) co_return fail("primary: " + committed.error()); // the locked side
    if (!written) co_return Error{target_role + written.error()};
    if (!current->rows.empty()) {
      std::vector<std::string> columns;
      std::vector<uint16_t> column_formats;
      for (const auto& field : current->fields) {
        columns.push_back(field.name);
        column_formats.push_back(field.format);
      }
      note_written_ids(way, entry, *shape, columns, column_formats, current->rows[0]);
    }
    co_return Ok{};
  }

  // The row the replay wrote into the secondary holds the primary's serial and identity ids,
  // which the secondary's sequences did not give: noted, so that a statement the secondary
  // runs itself draws after them (see SequenceMarks).
  void note_written_ids(const Direction& way, const JournalEntry& entry,
                        const protocol::TableShape& shape, const std::vector<std::string>& names,
                        const std::vector<uint16_t>& formats,
                        const std::vector<protocol::Value>& values) {
    if (way.into_primary || shape.sequences.empty()) return;
    std::string database = SequenceMarks::database_key(runtime_->config->secondary_uri,
                                                       runtime_->role_generation, entry.database);
    for (const auto& [column, sequence] : shape.sequences) {
      auto at = std::find(names.begin(), names.end(), column);
      auto i = static_cast<size_t>(at - names.begin());
      if (at == names.end() || i >= values.size() || !values[i]) continue;
      bool binary = i < formats.size() && formats[i] == 1;
      auto id = binary ? protocol::decode_int_binary(*values[i]) : protocol::parse_int8(*values[i]);
      if (id) services_.sequence_marks().note(database, sequence, *id);
    }
  }

  // A row of a table without a key cannot be looked up again: an inserted one is written as
  // the primary returned it when the target surely lacks it. Where the target may have
  // applied it after all, or an equal row's entry was reconciled before (that counted this
  // row too), the target gets as many rows equal to it as the source has instead.
  asio::awaitable<Status> replay_keyless_insert(Pair& pair, const Direction& way,
                                                const JournalEntry& entry,
                                                const protocol::TableShape& shape) {
    if (entry.op != "insert") {
      co_return Error{entry.table + " has no primary key: only inserts replay; use verify/repair"};
    }
    KeylessRow row;
    std::string identity = entry.table;
    for (size_t i = 0; i < entry.columns.size() && i < entry.values.size(); ++i) {
      if (shape.is_generated(entry.columns[i])) continue;
      row.names.push_back(entry.columns[i]);
      uint32_t type = i < entry.types.size() ? entry.types[i] : 0;
      row.types.push_back(protocol::portable_type(type));
      row.formats.push_back(i < entry.formats.size() ? entry.formats[i] : 0);
      row.values.push_back(entry.values[i]);
      identity += '\0' + entry.values[i].value_or("\x01NULL");
    }
    if (!entry.maybe_applied && !reconciled_.contains(identity)) {
      auto written = co_await way.target->query(protocol::upsert_sql(shape, row.names), row.types,
                                                row.formats, row.values);
      if (!written) co_return Error{written.error()};
      note_written_ids(way, entry, shape, row.names, row.formats, row.values);
      co_return Ok{};
    }
    if (reconciled_.size() < kMaxReconciledRows) reconciled_.insert(std::move(identity));
    auto reconciled = co_await reconcile_keyless(pair, way, entry, shape, row);
    if (reconciled) note_written_ids(way, entry, shape, row.names, row.formats, row.values);
    co_return reconciled;
  }

  // Counts the rows equal to `row` on both sides and inserts or deletes the difference on the
  // target, holding both tables in SHARE ROW EXCLUSIVE mode (SQLite: the writer), the current
  // primary's first as every live write does: no write lands on either side meanwhile, and
  // one still in flight on the target (the late one) finishes before the count.
  asio::awaitable<Status> reconcile_keyless(Pair& pair, const Direction& way,
                                            const JournalEntry& entry,
                                            const protocol::TableShape& shape,
                                            const KeylessRow& row) {
    auto fail = [&](std::string what) { return abandon(pair, std::move(what)); };
    struct Side {
      Link* link;
      const config::BackendTarget* backend;
    };
    Side source{way.source, way.source_backend};
    Side target{way.target, way.target_backend};
    std::array<Side, 2> lock_order{way.into_primary ? target : source,
                                   way.into_primary ? source : target};
    for (const Side& side : lock_order) {
      bool sqlite = side.backend->kind == config::BackendKind::kSqlite;
      auto begun = co_await side.link->query(sqlite ? "BEGIN IMMEDIATE" : "BEGIN");
      if (!begun) co_return fail(begun.error());
      if (sqlite) continue;
      std::string lock = "LOCK TABLE " + entry.table + " IN SHARE ROW EXCLUSIVE MODE";
      if (auto locked = co_await side.link->query(lock); !locked) co_return fail(locked.error());
    }
    auto count = [&](const Side& side) -> asio::awaitable<Result<uint64_t>> {
      protocol::TableShape table{entry.table, {}, {}, dialect_of(*side.backend)};
      auto counted = co_await side.link->query(protocol::count_equal_rows_sql(table, row.names),
                                               row.types, row.formats, row.values);
      if (!counted) co_return Error{counted.error()};
      uint64_t rows = 0;
      const protocol::Value* text = counted->rows.empty() ? nullptr : &counted->rows[0].at(0);
      if (text == nullptr || !*text ||
          std::from_chars((*text)->data(), (*text)->data() + (*text)->size(), rows).ec !=
              std::errc()) {
        co_return Error{"no count returned"};
      }
      co_return rows;
    };
    auto in_source = co_await count(source);
    if (!in_source) co_return fail("counting equal rows: " + in_source.error());
    auto in_target = co_await count(target);
    if (!in_target) co_return fail("counting equal rows: " + in_target.error());
    for (uint64_t missing = *in_source > *in_target ? *in_source - *in_target : 0; missing > 0;
         --missing) {
      auto written = co_await target.link->query(protocol::upsert_sql(shape, row.names), row.types,
                                                 row.formats, row.values);
      if (!written) co_return fail(written.error());
    }
    if (*in_target > *in_source) {
      auto trimmed = co_await target.link->query(
          protocol::delete_equal_rows_sql(shape, row.names, *in_target - *in_source), row.types,
          row.formats, row.values);
      if (!trimmed) co_return fail(trimmed.error());
    }
    for (Link* link : {target.link, source.link}) {
      if (auto committed = co_await link->query("COMMIT"); !committed) {
        co_return fail(committed.error());
      }
    }
    co_return Ok{};
  }

  Services& services_;
  std::shared_ptr<const Runtime> runtime_;
  std::map<std::string, Pair> pairs_;
  // Rows of keyless tables reconciled by count while the journal had a backlog: a later
  // entry for an equal row is reconciled too, never inserted once more.
  std::set<std::string> reconciled_;
  uint64_t failing_offset_ = 0;
  int attempts_ = 0;
};

} // namespace

asio::awaitable<void> replay_journal(Services& services) {
  Replayer replayer(services);
  co_await replayer.run();
}

} // namespace switchyard::proxy
