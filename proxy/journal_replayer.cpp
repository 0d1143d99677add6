#include "proxy/journal_replayer.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <functional>
#include <limits>
#include <map>
#include <set>

#include "protocol/classify.hpp"
#include "protocol/messages.hpp"
#include "protocol/pg_values.hpp"
#include "proxy/backend_connector.hpp"
#include "proxy/backend_query.hpp"
#include "proxy/epoch_cache.hpp"
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
constexpr size_t kMaxStatementRows = 32768;    // replayed together; a larger statement's in parts
constexpr size_t kCopyBatch = 1000;            // rows of a table copy read and written at a time
constexpr int64_t kLargeObjectPiece = 1 << 20; // bytes of a large object copied at a time
constexpr int kAttempts = 3;
constexpr size_t kMaxReconciledRows = 65536;
constexpr auto kMinEntryTimeout = std::chrono::milliseconds(10'000);
// How long a table's shape read for replaying rows is used again: reading it is the dearest
// of a one-row group's round trips, and a drain of a mixed load has a group per row.
constexpr auto kShapeTtl = std::chrono::seconds(1);
constexpr std::string_view kUndefinedTable = "42P01";
// Begins a transaction that only locks rows (FOR SHARE), whose COMMIT then need not wait
// for the disk: lost in a crash, it loses no data, and the locks end with the server anyway.
constexpr std::string_view kLockOnlyBegin = "BEGIN; SET LOCAL synchronous_commit TO off";
// Makes the settings of the transaction it runs in the session's (a SET LOCAL's too). The
// transaction's own characteristics cannot outlive it.
constexpr std::string_view kKeepSettings =
    "SELECT pg_catalog.set_config(name, pg_catalog.current_setting(name), false) "
    "FROM pg_catalog.pg_settings WHERE source = 'session' AND name NOT LIKE 'transaction\\_%'";

// The tables with a foreign key into table $1 that an update of its key changes.
constexpr std::string_view kKeyFollowersSql =
    "SELECT conrelid::regclass::text FROM pg_catalog.pg_constraint WHERE contype = 'f' "
    "AND confrelid = $1::regclass AND confupdtype IN ('c', 'n', 'd')";

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

//! The types and formats of a statement's parameters.
struct Parameters {
  std::vector<uint32_t> types;
  std::vector<uint16_t> formats;
};

//! A table's primary key in SQL: its columns as a list; the rows past a key given as
//! $1..$k, in key order; the row of that key.
struct KeyOrder {
  std::string columns;
  std::string past;
  std::string equal;
};

KeyOrder key_order(const protocol::TableShape& shape) {
  KeyOrder order;
  std::string parameters;
  for (size_t i = 0; i < shape.key_columns.size(); ++i) {
    std::string column = protocol::quote_identifier(shape.key_columns[i]);
    std::string parameter = "$" + std::to_string(i + 1);
    order.columns += (i > 0 ? ", " : "") + column;
    parameters += (i > 0 ? ", " : "") + parameter;
    order.equal += (i > 0 ? " AND " : "") + column + " = " + parameter;
  }
  order.past = "(" + order.columns + ") > (" + parameters + ")";
  return order;
}

//! The columns and values of a keyless row an entry inserts (generated columns left out).
struct KeylessRow {
  std::vector<std::string> names;
  Parameters parameters;
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
  asio::awaitable<Result<std::vector<QueryRows>>>
  query_each(std::string_view sql, const std::vector<uint32_t>& types,
             const std::vector<uint16_t>& formats,
             const std::vector<std::vector<protocol::Value>>& each) {
    return run_query_each(session.stream, reader, sql, types, formats, each);
  }
};

//! Whether the server has closed the connection (a restart, a crash).
bool lost(Link& link) {
  return link.session.stream.peer_closed();
}

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

//! What an entry's write changed, for a log line.
std::string written_to(const JournalEntry& entry) {
  switch (entry.kind) {
  case JournalEntry::Kind::kStatement: return entry.sql;
  case JournalEntry::Kind::kLargeObject:
    return "large object " + std::to_string(entry.large_object);
  default: return entry.table;
  }
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
      if (journal != nullptr && journal->backlog() == 0) {
        reconciled_.clear();
        passes_.clear();
      }
      if (runtime->config->secondary && journal != nullptr && journal->backlog() > 0 &&
          secondary_up && roles_settled) {
        if (runtime != runtime_) { // a reload or a role swap: other backends
          pairs_.clear();
          passes_.clear(); // over tables of the backends before
          shapes_.clear();
        }
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
    // A statement of more rows than a batch holds is read whole, up to a bound.
    if (uint32_t rows = entries->front().second.statement_rows; rows > entries->size()) {
      entries = journal.pending(std::min<size_t>(rows, kMaxStatementRows));
      if (!entries) co_return Error{entries.error()};
    }
    auto& metrics = services_.metrics();
    uint64_t acknowledged = 0;
    std::set<std::string> synced;                            // rows already re-synced in this batch
    uint64_t replayed_before = journal.acknowledged_total(); // the batch's first is one after
    size_t one_by_one_until = 0; // entries of statements that failed replayed together
    for (size_t next = 0; next < entries->size();) {
      const JournalEntry& entry = (*entries)[next].second;
      // The rows of one statement replay together (those of it in this batch), and with them
      // those of the statements after it that wrote rows of the same table the same way.
      std::vector<const JournalEntry*> group{&entry};
      size_t group_begins = next;
      size_t last_statement = 0; // where in `group` the last statement's rows begin
      size_t statements = 1;
      bool first_in_batch = next == 0;
      while (++next < entries->size()) {
        const JournalEntry& more = (*entries)[next].second;
        if (!continues(entry, more)) {
          if (next < one_by_one_until || !joins(entry, more)) break;
          last_statement = group.size();
          ++statements;
        }
        group.push_back(&more);
      }
      // A statement whose rows go on past this batch waits for the next, which begins with it.
      if (next == entries->size() &&
          group.size() - last_statement < group[last_statement]->statement_rows) {
        if (last_statement > 0) {
          group.resize(last_statement);
          next = group_begins + last_statement;
          --statements;
        } else if (!first_in_batch) {
          break;
        }
      }
      uint64_t offset = (*entries)[next - 1].first;
      auto pair = co_await pair_for(entry);
      if (!pair) {
        if (acknowledged > 0) (void)journal.acknowledge(acknowledged);
        co_return Error{pair.error()};
      }
      Direction way = direction(**pair, entry);
      shape_was_known_ = false;
      Status applied = co_await adopt_settings(**pair, entry.settings);
      // The table copied whole after these rows were written: the copy holds them.
      bool copied_since = entry.kind == JournalEntry::Kind::kRow &&
                          covered(pass_key("copy", entry), replayed_before + next);
      if (!applied || copied_since) {
        // a failure is counted below; rows copied since need nothing more
      } else if (entry.kind == JournalEntry::Kind::kRow && entry.op != "insert" &&
                 co_await is_keyless_table(way, entry)) {
        // Rows without a key cannot be found again to be updated or deleted: the table is
        // copied whole from the source, once for all the entries written before it began.
        uint64_t written = journal.settled_total();
        applied = co_await copy_table(**pair, way, entry);
        if (applied) passes_[pass_key("copy", entry)] = written;
      } else if (entry.kind == JournalEntry::Kind::kRow) {
        // Bounded: a replay holds locks on the current primary while it reads and writes the
        // other database, which may hang; closing the connections frees them.
        auto limit = std::max(kMinEntryTimeout, 5 * runtime_->config->mirror.timeout) *
                     static_cast<int64_t>(1 + group.size() / 1000);
        std::vector<std::string> assigned; // the columns the group's UPDATEs set
        for (const JournalEntry* e : group)
          assigned.insert(assigned.end(), e->assigned.begin(), e->assigned.end());
        std::string pass = pass_key("remove", entry);
        if (!assigned.empty() && !covered(pass, replayed_before + next)) {
          uint64_t written = journal.settled_total();
          auto passed = co_await remove_rows_the_source_lacks(**pair, way, entry, &assigned);
          if (!passed) applied = Error{passed.error()};
          if (passed && *passed) passes_[pass] = written;
        }
        asio::steady_timer timer(co_await asio::this_coro::executor, limit);
        if (applied) {
          auto outcome =
              co_await (replay_rows(**pair, way, group, synced) || timer.async_wait(use_tuple));
          if (outcome.index() == 1) {
            pairs_.clear();
            if (acknowledged > 0) (void)journal.acknowledge(acknowledged);
            co_return Error{"replaying " + std::to_string(group.size()) + " rows of " +
                            entry.table + " took longer than " + std::to_string(limit.count()) +
                            " ms; they are tried again"};
          }
          applied = std::move(std::get<0>(outcome));
        }
      } else if (entry.kind == JournalEntry::Kind::kLargeObject) {
        // A copy of the object covers every entry of it written before the copy began.
        std::string pass = pass_key("large object " + std::to_string(entry.large_object), entry);
        if (!covered(pass, replayed_before + next)) {
          uint64_t written = journal.settled_total();
          applied = co_await copy_large_object(**pair, way, entry);
          if (applied) passes_[pass] = written;
        }
      } else if (entry.kind == JournalEntry::Kind::kTable) {
        // Rows a query chose are copied whole; others are written over by key, and where a
        // writing CTE or MERGE may have deleted (or moved) rows, those are removed first.
        bool whole = entry.reason == "filled_by_query";
        bool removing = entry.reason == "written_by_statement";
        std::string copy_pass = pass_key(whole ? "copy" : "refresh", entry);
        std::string remove_pass = pass_key("remove", entry);
        uint64_t written = journal.settled_total();
        if (removing && !covered(remove_pass, replayed_before + next)) {
          auto passed = co_await remove_rows_the_source_lacks(**pair, way, entry, nullptr);
          if (!passed) applied = Error{passed.error()};
          if (passed && *passed) passes_[remove_pass] = written;
        }
        if (applied && !covered(copy_pass, replayed_before + next)) {
          if (whole) {
            applied = co_await copy_table(**pair, way, entry);
          } else {
            applied = co_await refresh_table(**pair, way, entry);
          }
          if (applied) passes_[copy_pass] = written;
        }
      } else if (entry.ddl) {
        synced.clear();  // a schema change may change what a row sync writes
        passes_.clear(); // and what a pass over a table wrote
        shapes_.clear();
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
      auto replayed = static_cast<double>(group.size());
      if (!applied) {
        // A connection that failed mid-way leaves the entries for the next attempt, a few
        // times; entries that keep failing are skipped rather than blocking the journal.
        bool broken = !(*pair)->secondary || !(*pair)->primary || lost(*(*pair)->secondary) ||
                      lost(*(*pair)->primary);
        if (broken) pairs_.clear();
        // A shape read earlier may be one DDL that bypassed switchyard changed since: the
        // group is tried again, once, with what the target says now.
        uint64_t group_offset = (*entries)[group_begins].first;
        if (!broken && shape_was_known_ && retried_with_fresh_shapes_ != group_offset) {
          retried_with_fresh_shapes_ = group_offset;
          shapes_.clear();
          next = group_begins;
          continue;
        }
        // Statements replayed together are tried again one by one: one whose rows the target
        // refuses must not take the others with it.
        if (!broken && statements > 1) {
          one_by_one_until = next;
          next = group_begins;
          continue;
        }
        attempts_ = offset == failing_offset_ ? attempts_ + 1 : 1;
        failing_offset_ = offset;
        if (broken && attempts_ < kAttempts) {
          if (acknowledged > 0) (void)journal.acknowledge(acknowledged);
          co_return Error{applied.error()};
        }
        spdlog::error("journal {} for {} failed to replay and {} skipped: {}",
                      group.size() == 1 ? "entry" : std::to_string(group.size()) + " entries",
                      written_to(entry), group.size() == 1 ? "is" : "are", applied.error());
        metrics.journal_replayed(ReplayResult::kFailed).Increment(replayed);
      } else {
        metrics.journal_replayed(ReplayResult::kApplied).Increment(replayed);
      }
      acknowledged = offset;
    }
    if (auto saved = journal.acknowledge(acknowledged); !saved) co_return Error{saved.error()};
    metrics.journal_backlog().Set(static_cast<double>(journal.backlog()));
    co_return true;
  }

  // Whether `next` holds another row of the statement whose rows `first` begins.
  static bool continues(const JournalEntry& first, const JournalEntry& next) {
    return next.statement_rows == 0 && same_writes(first, next);
  }

  // Whether `next` begins a statement whose rows replay with those of the statement `first`
  // begins, in one transaction and one statement where the target gets them as the primary
  // has them now (rows of one table written the same way, where the session's settings name
  // it; with the same columns, which locate the key in each). Their order stays the
  // journal's; the target checks its foreign keys after them all.
  static bool joins(const JournalEntry& first, const JournalEntry& next) {
    return next.statement_rows > 0 && same_writes(first, next) && next.columns == first.columns &&
           next.types == first.types && next.formats == first.formats;
  }

  // A pass over the table an entry names, which way it goes and how its name resolves (by
  // the settings' search_path), as passes_ knows it.
  static std::string pass_key(std::string_view pass, const JournalEntry& entry) {
    std::string key =
        std::string(pass) + '\0' + entry.missed_by + '\0' + entry.database + '\0' + entry.table;
    for (const std::string& setting : entry.settings)
      key += '\0' + setting;
    return key;
  }

  // Whether the pass `key` last began after the entries up to the `written`th were written:
  // it read the primary as they left it, so they need no pass of their own.
  bool covered(const std::string& key, uint64_t written) const {
    auto pass = passes_.find(key);
    return pass != passes_.end() && written <= pass->second;
  }

  static bool same_writes(const JournalEntry& first, const JournalEntry& next) {
    return first.kind == JournalEntry::Kind::kRow && next.kind == JournalEntry::Kind::kRow &&
           next.table == first.table && next.op == first.op && next.user == first.user &&
           next.database == first.database && next.missed_by == first.missed_by &&
           next.settings == first.settings;
  }

  asio::awaitable<Result<Pair*>> pair_for(const JournalEntry& entry) {
    std::string key = entry.user + '\0' + entry.database;
    Pair& pair = pairs_[key];
    // A connection its server closed since (a restart) is replaced before it is used.
    for (std::unique_ptr<Link>* link : {&pair.primary, &pair.secondary}) {
      if (*link && lost(**link)) link->reset();
    }
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

  // Makes the target's rows equal the source's current rows while holding the current
  // primary's row locks, which every live write to those rows takes first: a live write
  // lands wholly before or wholly after ours on both databases. Into the secondary, that
  // is each source row read FOR SHARE; into the primary, each target row locked FOR UPDATE
  // before the source row is read. The rows of one statement are locked in its order, as it
  // locked them, and written as it wrote them, by one statement (see write_current).
  // Whether `table`, whose shape the target could not read (`error`), is missing from the
  // source too: there is then nothing to write nor anywhere to write it (dropped since, or
  // a session's temporary table, which no other connection sees).
  static asio::awaitable<bool> gone_from_both(const Direction& way, const std::string& error,
                                              const std::string& table) {
    if (!error.starts_with(kUndefinedTable)) co_return false;
    auto source = co_await within(query_table_shape(way.source->session.stream, way.source->reader,
                                                    table, dialect_of(*way.source_backend)),
                                  kMinEntryTimeout);
    if (source || !source.error().starts_with(kUndefinedTable)) co_return false;
    spdlog::info("journal entry for {} skipped: neither database has the table", table);
    co_return true;
  }

  asio::awaitable<Status> replay_rows(Pair& pair, const Direction& way,
                                      const std::vector<const JournalEntry*>& group,
                                      std::set<std::string>& synced) {
    Link& target = *way.target;
    const JournalEntry& first = *group.front();
    auto shape = co_await target_shape(way, first);
    if (!shape && co_await gone_from_both(way, shape.error(), first.table)) co_return Ok{};
    if (!shape) co_return Error{shape.error()};
    if (shape->key_columns.empty()) {
      co_return co_await replay_keyless_inserts(pair, way, group, *shape);
    }
    const std::string& table = shape->qualified; // a view's rows are read in its table
    // The rows of one statement have the same columns: the key is at the same places in each.
    std::vector<size_t> key_at;
    Parameters key_parameters;
    std::string where = key_order(*shape).equal;
    for (const std::string& column : shape->key_columns) {
      auto at = std::find(first.columns.begin(), first.columns.end(), column);
      if (at == first.columns.end()) co_return Error{"entry lacks key column " + column};
      size_t i = static_cast<size_t>(at - first.columns.begin());
      key_at.push_back(i);
      key_parameters.types.push_back(
          protocol::portable_type(i < first.types.size() ? first.types[i] : 0));
      key_parameters.formats.push_back(i < first.formats.size() ? first.formats[i] : 0);
    }
    std::vector<std::vector<protocol::Value>> keys;
    std::set<std::string> syncing; // into `synced` once written
    for (const JournalEntry* entry : group) {
      std::vector<protocol::Value> key;
      std::string identity = table;
      for (size_t i : key_at) {
        key.push_back(i < entry->values.size() ? entry->values[i] : protocol::Value{});
        identity += '\0' + key.back().value_or("\x01NULL");
      }
      // A row this batch synced already is as the source has it now.
      if (!synced.contains(identity) && syncing.insert(std::move(identity)).second)
        keys.push_back(std::move(key));
    }
    if (keys.empty()) co_return Ok{};

    auto fail = [&](std::string what) { return abandon(pair, std::move(what)); };
    // The lock: row locks on PostgreSQL; on SQLite the writer itself (BEGIN IMMEDIATE).
    Link& locked = way.into_primary ? target : *way.source;
    bool sqlite_locked = (way.into_primary ? way.target_backend : way.source_backend)->kind ==
                         config::BackendKind::kSqlite;
    std::string target_role = way.into_primary ? "primary: " : "secondary: ";
    std::string source_role = way.into_primary ? "secondary: " : "primary: ";
    auto begun = co_await locked.query(sqlite_locked      ? "BEGIN IMMEDIATE"
                                       : way.into_primary ? "BEGIN"
                                                          : kLockOnlyBegin);
    if (!begun) co_return fail(begun.error());
    std::string lock_sql = "SELECT * FROM " + table + " WHERE " + where + " FOR UPDATE";
    // A row of a table others inherit from may be a child's: the source says whose, as a last
    // column (the table's name is the parameter after the key).
    bool ask_whose =
        shape->inheriting_children && way.source_backend->kind == config::BackendKind::kPostgres;
    Parameters source_parameters = key_parameters;
    std::string source_sql = "SELECT *";
    if (ask_whose) {
      source_sql += ", tableoid <> $" + std::to_string(key_at.size() + 1) + "::regclass";
      source_parameters.types.push_back(protocol::oid::kText);
      source_parameters.formats.push_back(0);
    }
    source_sql += " FROM " + table + " WHERE " + where;
    if (!way.into_primary && !sqlite_locked) source_sql += " FOR SHARE";
    // Locked and read in the statements' order, each row by one execution, the executions
    // sent together (run_query_each).
    if (way.into_primary && !sqlite_locked) {
      auto locks =
          co_await target.query_each(lock_sql, key_parameters.types, key_parameters.formats, keys);
      if (!locks) co_return fail(target_role + locks.error());
    }
    std::vector<std::vector<protocol::Value>> source_parameters_each = keys;
    if (ask_whose) {
      for (auto& parameters : source_parameters_each)
        parameters.emplace_back(table);
    }
    auto current = co_await way.source->query_each(
        source_sql, source_parameters.types, source_parameters.formats, source_parameters_each);
    if (!current && current.error().starts_with(kUndefinedTable)) {
      (void)abandon(pair, {}); // dropped since: its DROP reaches the target as DDL does
      co_return Ok{};
    }
    if (!current) co_return fail(source_role + current.error());
    QueryRows present;                                // the source's rows, in the statements' order
    std::vector<bool> children;                       // per present row: whether it is a child's
    std::vector<std::vector<protocol::Value>> absent; // keys of rows the source no longer has
    for (size_t k = 0; k < keys.size(); ++k) {
      QueryRows& found = (*current)[k];
      if (found.rows.empty()) {
        absent.push_back(std::move(keys[k]));
        continue;
      }
      std::vector<protocol::Value>& row = found.rows[0];
      children.push_back(ask_whose && row.back() == "t");
      if (ask_whose) {
        row.pop_back();
        found.fields.pop_back();
      }
      if (present.rows.empty()) present.fields = std::move(found.fields);
      present.rows.push_back(std::move(row));
    }
    Status written = co_await write_current(way, *shape, first.op == "delete", present, children,
                                            key_parameters, absent);
    auto committed = co_await locked.query("COMMIT");
    if (!committed) co_return fail("primary: " + committed.error()); // the locked side
    if (!written) co_return Error{target_role + written.error()};
    std::vector<std::string> columns;
    std::vector<uint16_t> column_formats;
    for (const auto& field : present.fields) {
      columns.push_back(field.name);
      column_formats.push_back(field.format);
    }
    for (const auto& row : present.rows)
      note_written_ids(way, first, *shape, columns, column_formats, row);
    synced.merge(syncing);
    co_return Ok{};
  }

  // Writes the source's `present` rows into the target and deletes those keyed by `absent`
  // there, as SecondaryLink::apply writes row images: each by one statement (split only at
  // the parameter limit), so the target checks its foreign keys and deferrable unique
  // constraints after all the rows, as the primary did; with the triggers, then again
  // without the BEFORE triggers that stamped them (kTriggersOffSql). Into a table with
  // triggers an upsert fires where an UPDATE or an INSERT would not (kind_triggers), the
  // rows the target has are updated and the others inserted, a statement for each set.
  // Rows of a child by inheritance (`children`) are updated where they are instead, by one
  // UPDATE. A deleting statement's deletes come first. More than one statement run
  // in one transaction: the target's own unless it is the locked side, whose transaction is
  // open.
  asio::awaitable<Status> write_current(const Direction& way, const protocol::TableShape& shape,
                                        bool deleting, const QueryRows& present,
                                        const std::vector<bool>& children,
                                        const Parameters& key_parameters,
                                        const std::vector<std::vector<protocol::Value>>& absent) {
    Link& target = *way.target;
    std::vector<std::string> names;
    Parameters row_parameters; // text, as the source's rows were read
    std::vector<size_t> columns;
    for (size_t i = 0; i < present.fields.size(); ++i) {
      const auto& field = present.fields[i];
      if (shape.is_generated(field.name)) continue;
      names.push_back(field.name);
      row_parameters.types.push_back(protocol::portable_type(field.type_oid));
      columns.push_back(i);
    }
    std::vector<std::vector<protocol::Value>> rows;
    std::vector<std::vector<protocol::Value>> child_rows;
    for (size_t r = 0; r < present.rows.size(); ++r) {
      auto& values = (r < children.size() && children[r] ? child_rows : rows).emplace_back();
      for (size_t column : columns)
        values.push_back(present.rows[r][column]);
    }
    std::function<std::string(size_t)> upsert = [&](size_t n) {
      return protocol::upsert_sql(shape, names, n);
    };
    std::function<std::string(size_t)> erase = [&](size_t n) {
      return protocol::delete_sql(shape, n);
    };
    std::function<std::string(size_t)> insert = [&](size_t n) {
      return protocol::insert_sql(shape, names, n);
    };
    std::function<std::string(size_t)> update = [&](size_t n) {
      return protocol::update_sql(shape, names, n, row_parameters.types);
    };
    bool by_kind = shape.kind_triggers && !shape.inheriting_children && !rows.empty();
    std::vector<std::vector<protocol::Value>> new_rows; // by_kind: the rows the target lacks
    size_t written_rows = rows.size() + child_rows.size();
    bool stamped_again = written_rows > 0 && shape.rewriting_triggers && shape.may_disable_triggers;
    bool own_transaction = !way.into_primary && (stamped_again || written_rows + absent.size() > 1);
    Status written = Ok{};
    if (own_transaction) written = co_await run(target, "BEGIN");
    if (written && deleting) written = co_await write_rows(target, erase, key_parameters, absent);
    if (written && by_kind) {
      auto missing = co_await take_missing(target, shape, names, row_parameters.types, rows);
      if (missing) {
        new_rows = std::move(*missing);
      } else {
        written = Error{missing.error()};
      }
      bool key_only = protocol::update_sql(shape, names).empty(); // nothing to update
      if (written && !key_only) written = co_await write_rows(target, update, row_parameters, rows);
      if (written) written = co_await write_rows(target, insert, row_parameters, new_rows);
    } else if (written) {
      written = co_await write_rows(target, upsert, row_parameters, rows);
    }
    if (written)
      written = co_await update_in_place(target, shape, names, row_parameters, child_rows);
    if (written && !deleting) written = co_await write_rows(target, erase, key_parameters, absent);
    if (written && stamped_again) {
      written = co_await run(target, kTriggersOffSql);
      if (written) written = co_await write_rows(target, upsert, row_parameters, rows);
      if (written) written = co_await write_rows(target, upsert, row_parameters, new_rows);
      if (written)
        written = co_await update_in_place(target, shape, names, row_parameters, child_rows);
    }
    if (own_transaction) written = co_await end_transaction(target, std::move(written));
    co_return written;
  }

  // Moves those of `rows` (values of `names`, of `types`, as text) the target has not got,
  // looked up by key (one execution each, sent together), out of `rows` into the result.
  static asio::awaitable<Result<std::vector<std::vector<protocol::Value>>>>
  take_missing(Link& target, const protocol::TableShape& shape,
               const std::vector<std::string>& names, const std::vector<uint32_t>& types,
               std::vector<std::vector<protocol::Value>>& rows) {
    std::vector<size_t> key_at;
    std::vector<uint32_t> key_types;
    for (const std::string& column : shape.key_columns) {
      auto at = std::find(names.begin(), names.end(), column);
      if (at == names.end()) co_return Error{"the rows lack key column " + column};
      key_at.push_back(static_cast<size_t>(at - names.begin()));
      key_types.push_back(types[key_at.back()]);
    }
    std::vector<std::vector<protocol::Value>> keys;
    for (const auto& row : rows) {
      auto& key = keys.emplace_back();
      for (size_t i : key_at)
        key.push_back(row[i]);
    }
    auto found = co_await target.query_each("SELECT true FROM " + shape.qualified + " WHERE " +
                                                key_order(shape).equal,
                                            key_types, {}, keys);
    if (!found) co_return Error{found.error()};
    std::vector<std::vector<protocol::Value>> there;
    std::vector<std::vector<protocol::Value>> missing;
    for (size_t r = 0; r < rows.size(); ++r)
      ((*found)[r].rows.empty() ? missing : there).push_back(std::move(rows[r]));
    rows = std::move(there);
    co_return missing;
  }

  // Updates `rows` (values of `names`, each key once) by key where they are, in children by
  // inheritance of `shape`'s table, by one UPDATE (split at the parameter limit): an upsert
  // into the table itself would write copies there.
  static asio::awaitable<Status>
  update_in_place(Link& link, const protocol::TableShape& shape,
                  const std::vector<std::string>& names, const Parameters& each_row,
                  const std::vector<std::vector<protocol::Value>>& rows) {
    if (protocol::update_sql(shape, names).empty()) co_return Ok{}; // only key columns
    std::function<std::string(size_t)> update = [&](size_t n) {
      return protocol::update_sql(shape, names, n, each_row.types);
    };
    auto updated = co_await write_rows(link, update, each_row, rows, Affected::kEachRow);
    if (!updated && updated.error().starts_with(kNotEachRow)) {
      co_return Error{"rows of a table inheriting from " + shape.qualified + " are not there (" +
                      updated.error() + "); verify and repair them"};
    }
    co_return updated;
  }

  // Ends the transaction a replay opened on `link`: COMMIT after `written` went well, else
  // ROLLBACK; what failed first.
  static asio::awaitable<Status> end_transaction(Link& link, Status written) {
    std::string_view end = written ? "COMMIT" : "ROLLBACK";
    auto ended = co_await run(link, end);
    if (written && !ended) co_return ended;
    co_return written;
  }

  static asio::awaitable<Status> run(Link& link, std::string_view sql) {
    auto ran = co_await link.query(sql);
    if (!ran) co_return Error{ran.error()};
    co_return Ok{};
  }

  // Runs the statement `sql(n)` gives for n of `rows` at a time, as many as the parameter
  // limit allows; each row's parameters are as `each_row` says. With Affected::kEachRow a
  // statement that reports another count than its n rows fails (kNotEachRow).
  enum class Affected { kAny, kEachRow };
  static constexpr std::string_view kNotEachRow = "rows written";
  static asio::awaitable<Status> write_rows(Link& link,
                                            const std::function<std::string(size_t)>& sql,
                                            const Parameters& each_row,
                                            const std::vector<std::vector<protocol::Value>>& rows,
                                            Affected affected = Affected::kAny) {
    size_t per_statement = protocol::rows_per_statement(each_row.types.size());
    for (size_t row = 0; row < rows.size(); row += per_statement) {
      size_t count = std::min(per_statement, rows.size() - row);
      Parameters all;
      std::vector<protocol::Value> values;
      for (size_t r = row; r < row + count; ++r) {
        all.types.insert(all.types.end(), each_row.types.begin(), each_row.types.end());
        all.formats.insert(all.formats.end(), each_row.formats.begin(), each_row.formats.end());
        values.insert(values.end(), rows[r].begin(), rows[r].end());
      }
      auto ran = co_await link.query(sql(count), all.types, all.formats, values);
      if (!ran) co_return Error{ran.error()};
      auto written = protocol::affected_rows(ran->command_tag);
      if (affected == Affected::kEachRow && written != count) {
        co_return Error{std::string(kNotEachRow) + ": " + std::to_string(written.value_or(0)) +
                        " of " + std::to_string(count)};
      }
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

  // A row of a table without a key cannot be looked up again: the rows a statement inserted
  // are written as the primary returned them, by one statement, when the target surely lacks
  // them. Where the target may have applied them after all, or an equal row's entry was
  // reconciled before (that counted this row too), the target gets as many rows equal to
  // each as the source has instead. (UPDATEs and DELETEs copy a PostgreSQL table whole,
  // is_keyless_table; those of a view or a SQLite table fail here.)
  asio::awaitable<Status> replay_keyless_inserts(Pair& pair, const Direction& way,
                                                 const std::vector<const JournalEntry*>& group,
                                                 const protocol::TableShape& shape) {
    const JournalEntry& first = *group.front();
    if (first.op != "insert") {
      co_return Error{first.table + " has no primary key: its UPDATEs and DELETEs replay as a "
                                    "copy of a PostgreSQL table only; verify and repair it"};
    }
    std::vector<KeylessRow> rows;
    std::vector<std::string> identities;
    bool reconcile = false;
    for (const JournalEntry* entry : group) {
      KeylessRow& row = rows.emplace_back();
      std::string& identity = identities.emplace_back(entry->table);
      for (size_t i = 0; i < entry->columns.size() && i < entry->values.size(); ++i) {
        if (shape.is_generated(entry->columns[i])) continue;
        row.names.push_back(entry->columns[i]);
        uint32_t type = i < entry->types.size() ? entry->types[i] : 0;
        row.parameters.types.push_back(protocol::portable_type(type));
        row.parameters.formats.push_back(i < entry->formats.size() ? entry->formats[i] : 0);
        row.values.push_back(entry->values[i]);
        identity += '\0' + entry->values[i].value_or("\x01NULL");
      }
      reconcile |= entry->maybe_applied || reconciled_.contains(identity);
    }
    if (!reconcile) {
      std::vector<std::vector<protocol::Value>> values;
      values.reserve(rows.size());
      for (const KeylessRow& row : rows)
        values.push_back(row.values);
      const KeylessRow& each = rows.front();
      std::function<std::string(size_t)> insert = [&](size_t n) {
        return protocol::upsert_sql(shape, each.names, n);
      };
      bool several = rows.size() > protocol::rows_per_statement(each.names.size());
      Status written = Ok{};
      if (several) written = co_await run(*way.target, "BEGIN");
      if (written) written = co_await write_rows(*way.target, insert, each.parameters, values);
      if (several) written = co_await end_transaction(*way.target, std::move(written));
      if (!written) co_return written;
      for (const KeylessRow& row : rows)
        note_written_ids(way, first, shape, row.names, row.parameters.formats, row.values);
      co_return Ok{};
    }
    for (size_t i = 0; i < rows.size(); ++i) {
      if (reconciled_.size() < kMaxReconciledRows) reconciled_.insert(identities[i]);
      auto reconciled = co_await reconcile_keyless(pair, way, *group[i], shape, rows[i]);
      if (!reconciled) co_return reconciled;
      note_written_ids(way, first, shape, rows[i].names, rows[i].parameters.formats,
                       rows[i].values);
    }
    co_return Ok{};
  }

  // Whether the table `entry` names is a table without a key on the target (PostgreSQL) whose
  // rows copy_table may replace: not a view, which would be written through with the columns
  // it shows, losing the others, nor a table others inherit from, whose DELETE empties them
  // and whose rows read would go back into it.
  asio::awaitable<bool> is_keyless_table(const Direction& way, const JournalEntry& entry) {
    if (way.target_backend->kind != config::BackendKind::kPostgres) co_return false;
    auto shape = co_await target_shape(way, entry);
    if (!shape || !shape->key_columns.empty() || shape->inheriting_children) co_return false;
    std::vector<uint32_t> types{protocol::oid::kText};
    std::vector<uint16_t> formats{0};
    std::vector<protocol::Value> name{entry.table};
    auto kind = co_await way.target->query(
        "SELECT relkind IN ('r', 'p') FROM pg_catalog.pg_class WHERE oid = $1::regclass", types,
        formats, name);
    co_return kind && !kind->rows.empty() && !kind->rows[0].empty() && kind->rows[0][0] == "t";
  }

  // Makes the target's copy of a table the source's: of one a query filled (CREATE TABLE AS,
  // SELECT INTO), so what the query chose (now(), random(), the rows a LIMIT took) is the
  // primary's; of one without a key whose UPDATEs or DELETEs the target missed.
  // Both tables are held in SHARE ROW EXCLUSIVE mode (SQLite: the writer), the current
  // primary's first, as live writes take them, and the target's rows are replaced in one
  // transaction by the source's, read a batch at a time. Each step is bounded as a
  // statement's replay is; a table the source no longer has is left to its DROP.
  asio::awaitable<Status> copy_table(Pair& pair, const Direction& way, const JournalEntry& entry) {
    auto limit = std::max(kMinEntryTimeout, 5 * runtime_->config->mirror.timeout);
    auto fail = [&](std::string what) { return abandon(pair, std::move(what)); };
    struct Side {
      Link* link;
      bool sqlite;
      std::string role;
    };
    Side source{way.source, way.source_backend->kind == config::BackendKind::kSqlite,
                way.into_primary ? "secondary: " : "primary: "};
    Side target{way.target, way.target_backend->kind == config::BackendKind::kSqlite,
                way.into_primary ? "primary: " : "secondary: "};
    for (const Side* side :
         way.into_primary ? std::array{&target, &source} : std::array{&source, &target}) {
      auto begun =
          co_await within(side->link->query(side->sqlite ? "BEGIN IMMEDIATE" : "BEGIN"), limit);
      if (!begun) co_return fail(side->role + begun.error());
      if (side->sqlite) continue;
      std::string lock = "LOCK TABLE " + entry.table + " IN SHARE ROW EXCLUSIVE MODE";
      auto locked = co_await within(side->link->query(lock), limit);
      if (!locked && side == &source && locked.error().starts_with(kUndefinedTable)) {
        (void)abandon(pair, {}); // ends both transactions; the DROP reaches the target as DDL does
        co_return Ok{};
      }
      if (!locked) co_return fail(side->role + locked.error());
    }
    auto shape = co_await within(query_table_shape(target.link->session.stream, target.link->reader,
                                                   entry.table, dialect_of(*way.target_backend)),
                                 limit);
    if (!shape) co_return fail(target.role + shape.error());
    std::string emptied = "DELETE FROM " + entry.table;
    if (auto deleted = co_await within(target.link->query(emptied), limit); !deleted) {
      co_return fail(target.role + deleted.error());
    }
    std::string next_batch = "FETCH " + std::to_string(kCopyBatch) + " FROM switchyard_copy";
    if (!source.sqlite) {
      std::string declare =
          "DECLARE switchyard_copy NO SCROLL CURSOR FOR SELECT * FROM " + entry.table;
      if (auto declared = co_await within(source.link->query(declare), limit); !declared) {
        co_return fail(source.role + declared.error());
      }
    }
    for (size_t copied = 0;;) {
      if (source.sqlite) { // no cursors: the writer is held, so the rows stay where they are
        next_batch = "SELECT * FROM " + entry.table + " ORDER BY rowid LIMIT " +
                     std::to_string(kCopyBatch) + " OFFSET " + std::to_string(copied);
      }
      auto batch = co_await within(source.link->query(next_batch), limit);
      if (!batch) co_return fail(source.role + batch.error());
      Parameters each_row; // text, as the rows were read
      std::vector<std::string> names;
      std::vector<size_t> columns;
      for (size_t i = 0; i < batch->fields.size(); ++i) {
        if (shape->is_generated(batch->fields[i].name)) continue;
        names.push_back(batch->fields[i].name);
        each_row.types.push_back(protocol::portable_type(batch->fields[i].type_oid));
        columns.push_back(i);
      }
      std::vector<std::vector<protocol::Value>> rows;
      rows.reserve(batch->rows.size());
      for (const auto& row : batch->rows) {
        auto& values = rows.emplace_back();
        for (size_t column : columns)
          values.push_back(row[column]);
      }
      std::function<std::string(size_t)> insert = [&](size_t n) {
        return protocol::upsert_sql(*shape, names, n);
      };
      auto written = co_await within(write_rows(*target.link, insert, each_row, rows), limit);
      if (!written) {
        co_return fail(target.role + written.error());
      }
      copied += rows.size();
      if (rows.size() < kCopyBatch) break;
    }
    for (const Side* side : {&target, &source}) {
      if (auto committed = co_await within(side->link->query("COMMIT"), limit); !committed) {
        co_return fail(side->role + committed.error());
      }
    }
    co_return Ok{};
  }

  // A large object the target missed a write to is made what the source's is: removed there
  // and, if the source has it, created again under its OID and written kLargeObjectPiece
  // bytes at a time, in one transaction on each side. The source's pg_largeobject is held in
  // SHARE ROW EXCLUSIVE mode meanwhile (which takes a role that may lock it), so no write to
  // a large object is in flight there, nor, in sync mode, its mirrored statement on the
  // target.
  asio::awaitable<Status> copy_large_object(Pair& pair, const Direction& way,
                                            const JournalEntry& entry) {
    auto limit = std::max(kMinEntryTimeout, 5 * runtime_->config->mirror.timeout);
    std::string source_role = way.into_primary ? "secondary: " : "primary: ";
    std::string target_role = way.into_primary ? "primary: " : "secondary: ";
    std::string object = std::to_string(entry.large_object);
    auto on = [limit](Link* link, std::string sql, protocol::Value data = std::nullopt) {
      return run_within(link, std::move(sql), limit, std::move(data));
    };
    for (auto [link, role] : {std::pair{way.source, &source_role}, {way.target, &target_role}}) {
      if (auto begun = co_await on(link, "BEGIN"); !begun)
        co_return abandon(pair, *role + begun.error());
    }
    auto locked =
        co_await on(way.source, "LOCK TABLE pg_catalog.pg_largeobject IN SHARE ROW EXCLUSIVE MODE");
    if (!locked) co_return abandon(pair, source_role + locked.error());
    auto removed = co_await on(way.target, "SELECT pg_catalog.lo_unlink(oid) FROM "
                                           "pg_catalog.pg_largeobject_metadata WHERE oid = " +
                                               object);
    if (!removed) co_return abandon(pair, target_role + removed.error());
    auto found = co_await on(way.source, "SELECT 1 FROM pg_catalog.pg_largeobject_metadata "
                                         "WHERE oid = " +
                                             object);
    if (!found) co_return abandon(pair, source_role + found.error());
    if (!found->rows.empty()) {
      auto created = co_await on(way.target, "SELECT pg_catalog.lo_create(" + object + ")");
      if (!created) co_return abandon(pair, target_role + created.error());
    }
    for (int64_t offset = 0; !found->rows.empty(); offset += kLargeObjectPiece) {
      std::string where = object + ", " + std::to_string(offset);
      auto piece = co_await on(way.source, "SELECT pg_catalog.lo_get(" + where + ", " +
                                               std::to_string(kLargeObjectPiece) + ")");
      if (!piece) co_return abandon(pair, source_role + piece.error());
      const protocol::Value& text = piece->rows.at(0).at(0); // bytea as text, read and written
      auto bytes = protocol::decode_bytea_text(text.value_or(""));
      if (!bytes) co_return abandon(pair, source_role + bytes.error());
      if (bytes->empty()) break;
      auto put = co_await on(way.target, "SELECT pg_catalog.lo_put(" + where + ", $1)", text);
      if (!put) co_return abandon(pair, target_role + put.error());
      if (static_cast<int64_t>(bytes->size()) < kLargeObjectPiece) break;
    }
    for (auto [link, role] : {std::pair{way.target, &target_role}, {way.source, &source_role}}) {
      if (auto done = co_await on(link, "COMMIT"); !done)
        co_return abandon(pair, *role + done.error());
    }
    co_return Ok{};
  }

  // `sql`, with `data` as its one bytea parameter (text) if given, bounded by `limit`.
  static asio::awaitable<Result<QueryRows>>
  run_within(Link* link, std::string sql, std::chrono::milliseconds limit, protocol::Value data) {
    if (!data) co_return co_await within(link->query(sql), limit);
    std::vector<uint32_t> types{protocol::oid::kBytea};
    std::vector<uint16_t> formats{0};
    std::vector<protocol::Value> values{std::move(data)};
    co_return co_await within(link->query(sql, types, formats, values), limit);
  }

  // Deletes the target's rows whose key the source no longer has, kCopyBatch keys at a time
  // in key order, before the rows are written: for UPDATEs (upserts) that set a column of
  // `assigned` that is a key column (the journal names only the keys they moved rows to),
  // or, `assigned` null, a write whose rows the journal does not name (a writing CTE,
  // MERGE). First, as a row under its new key may repeat another unique column of the row
  // under its old one. Each batch runs while the
  // current primary holds the table in SHARE ROW EXCLUSIVE mode (SQLite: the writer), so no
  // transaction in flight there (nor, in sync mode, its mirrored writes) has a row on one
  // side only. A table without a key has none to look up (copy_table replaces its rows).
  // True when it passed over the table.
  asio::awaitable<Result<bool>>
  remove_rows_the_source_lacks(Pair& pair, const Direction& way, const JournalEntry& entry,
                               const std::vector<std::string>* assigned) {
    auto limit = std::max(kMinEntryTimeout, 5 * runtime_->config->mirror.timeout);
    auto fail = [&](std::string what) { return Error{abandon(pair, std::move(what)).error()}; };
    std::string target_role = way.into_primary ? "primary: " : "secondary: ";
    std::string source_role = way.into_primary ? "secondary: " : "primary: ";
    auto shape = co_await within(target_shape(way, entry), limit);
    if (!shape && co_await gone_from_both(way, shape.error(), entry.table)) co_return false;
    if (!shape) co_return fail(target_role + shape.error());
    const std::string& table = shape->qualified; // a view's rows are its table's
    if (shape->key_columns.empty()) co_return false;
    if (assigned != nullptr &&
        std::ranges::none_of(*assigned, [&](const auto& c) { return shape->is_key(c); })) {
      co_return false;
    }
    // A table whose foreign key follows the keys changed with them on the primary, where the
    // journal has none of its rows: the old keys stay for it.
    if (way.target_backend->kind == config::BackendKind::kPostgres) {
      std::vector<uint32_t> types{protocol::oid::kText};
      std::vector<uint16_t> formats{0};
      std::vector<protocol::Value> parameters{table};
      auto following =
          co_await within(way.target->query(kKeyFollowersSql, types, formats, parameters), limit);
      if (!following) co_return fail(target_role + following.error());
      if (!following->rows.empty()) {
        spdlog::error("journal replay left the rows of {} the primary no longer has under "
                      "their keys: {} follows those keys (ON UPDATE CASCADE, SET NULL or SET "
                      "DEFAULT), whose changes the journal does not hold; verify and repair "
                      "both tables",
                      table, following->rows.front().front().value_or(""));
        services_.metrics().journal_replayed(ReplayResult::kUnreplayable).Increment();
        co_return false;
      }
    }
    Link& locked = way.into_primary ? *way.target : *way.source;
    bool sqlite_locked = (way.into_primary ? way.target_backend : way.source_backend)->kind ==
                         config::BackendKind::kSqlite;
    std::string locked_role = way.into_primary ? target_role : source_role;
    KeyOrder order = key_order(*shape);
    std::string lookup = "SELECT 1 FROM " + table + " WHERE " + order.equal;
    std::vector<protocol::Value> after; // the last key looked up
    Parameters key_parameters;          // text, as the keys were read
    size_t removed = 0;
    for (;;) {
      std::string begin = sqlite_locked ? "BEGIN IMMEDIATE" : "BEGIN";
      if (auto begun = co_await within(locked.query(begin), limit); !begun) {
        co_return fail(locked_role + begun.error());
      }
      if (!sqlite_locked) {
        std::string lock = "LOCK TABLE " + table + " IN SHARE ROW EXCLUSIVE MODE";
        auto held = co_await within(locked.query(lock), limit);
        if (!held && !way.into_primary && held.error().starts_with(kUndefinedTable)) {
          (void)abandon(pair, {}); // the primary dropped it since: left to its DROP
          co_return false;
        }
        if (!held) co_return fail(locked_role + held.error());
      }
      std::string sql = "SELECT " + order.columns + " FROM " + table;
      if (!after.empty()) sql += " WHERE " + order.past;
      sql += " ORDER BY " + order.columns + " LIMIT " + std::to_string(kCopyBatch);
      auto keys = co_await within(
          way.target->query(sql, key_parameters.types, key_parameters.formats, after), limit);
      if (!keys) co_return fail(target_role + keys.error());
      if (key_parameters.types.empty()) {
        for (const auto& field : keys->fields) {
          key_parameters.types.push_back(protocol::portable_type(field.type_oid));
          key_parameters.formats.push_back(0);
        }
      }
      auto found = co_await within(
          way.source->query_each(lookup, key_parameters.types, key_parameters.formats, keys->rows),
          limit);
      if (!found) co_return fail(source_role + found.error());
      std::vector<std::vector<protocol::Value>> absent;
      for (size_t k = 0; k < keys->rows.size(); ++k) {
        if ((*found)[k].rows.empty()) absent.push_back(keys->rows[k]);
      }
      std::function<std::string(size_t)> erase = [&](size_t n) {
        return protocol::delete_sql(*shape, n);
      };
      if (auto deleted =
              co_await within(write_rows(*way.target, erase, key_parameters, absent), limit);
          !deleted) {
        co_return fail(target_role + deleted.error());
      }
      removed += absent.size();
      if (auto committed = co_await within(locked.query("COMMIT"), limit); !committed) {
        co_return fail(locked_role + committed.error());
      }
      if (keys->rows.size() < kCopyBatch) break;
      after = keys->rows.back();
    }
    spdlog::info("journal replay removed {} rows of {} that the {} no longer has", removed, table,
                 way.into_primary ? "secondary" : "primary");
    co_return true;
  }

  // Writes the source's rows over the target's after a column's default gave them values
  // each database chose itself (ALTER TABLE ... ADD COLUMN ... DEFAULT now(), a serial):
  // kCopyBatch rows at a time in key order, each batch in a transaction that holds them
  // (the source's rows FOR SHARE when it is the current primary; else the target's table in
  // SHARE ROW EXCLUSIVE mode; SQLite: the writer) while write_current writes them as a
  // replay does, past BEFORE triggers and into inheritance children where they live. No row
  // is deleted, so a foreign key into the table cascades nothing, and no table stays locked
  // for the whole copy. A table without a key is copied whole (copy_table).
  asio::awaitable<Status> refresh_table(Pair& pair, const Direction& way,
                                        const JournalEntry& entry) {
    auto limit = std::max(kMinEntryTimeout, 5 * runtime_->config->mirror.timeout);
    auto fail = [&](std::string what) { return abandon(pair, std::move(what)); };
    std::string target_role = way.into_primary ? "primary: " : "secondary: ";
    std::string source_role = way.into_primary ? "secondary: " : "primary: ";
    auto shape = co_await within(target_shape(way, entry), limit);
    if (!shape && co_await gone_from_both(way, shape.error(), entry.table)) co_return Ok{};
    if (!shape) co_return fail(target_role + shape.error());
    if (shape->key_columns.empty()) co_return co_await copy_table(pair, way, entry);
    Link& locked = way.into_primary ? *way.target : *way.source;
    bool sqlite_locked = (way.into_primary ? way.target_backend : way.source_backend)->kind ==
                         config::BackendKind::kSqlite;
    bool ask_whose =
        shape->inheriting_children && way.source_backend->kind == config::BackendKind::kPostgres;
    KeyOrder order = key_order(*shape);
    std::vector<protocol::Value> after; // the key of the last row written
    std::vector<size_t> key_at;         // where the key is in a row read
    Parameters key_parameters;
    for (;;) {
      std::string begin = sqlite_locked ? "BEGIN IMMEDIATE" : "BEGIN";
      if (auto begun = co_await within(locked.query(begin), limit); !begun) {
        co_return fail((way.into_primary ? target_role : source_role) + begun.error());
      }
      if (way.into_primary && !sqlite_locked) {
        std::string lock = "LOCK TABLE " + entry.table + " IN SHARE ROW EXCLUSIVE MODE";
        if (auto held = co_await within(locked.query(lock), limit); !held) {
          co_return fail(target_role + held.error());
        }
      }
      // The rows after the last one written; a row of a child by inheritance says so in a
      // last column (the table's name is the parameter after the key).
      std::string sql = "SELECT *";
      std::vector<protocol::Value> parameters = after;
      Parameters batch_parameters = after.empty() ? Parameters{} : key_parameters;
      if (ask_whose) {
        sql += ", tableoid <> $" + std::to_string(parameters.size() + 1) + "::regclass";
        parameters.emplace_back(entry.table);
        batch_parameters.types.push_back(protocol::oid::kText);
        batch_parameters.formats.push_back(0);
      }
      sql += " FROM " + entry.table;
      if (!after.empty()) sql += " WHERE " + order.past;
      sql += " ORDER BY " + order.columns + " LIMIT " + std::to_string(kCopyBatch);
      if (!way.into_primary && !sqlite_locked) sql += " FOR SHARE";
      auto batch = co_await within(
          way.source->query(sql, batch_parameters.types, batch_parameters.formats, parameters),
          limit);
      if (!batch && batch.error().starts_with(kUndefinedTable)) { // dropped since: left to its DROP
        (void)abandon(pair, {});
        co_return Ok{};
      }
      if (!batch) co_return fail(source_role + batch.error());
      std::vector<bool> children;
      if (ask_whose) {
        batch->fields.pop_back();
        for (auto& row : batch->rows) {
          children.push_back(row.back() == "t");
          row.pop_back();
        }
      }
      if (key_at.empty()) {
        for (const std::string& column : shape->key_columns) {
          auto at = std::find_if(batch->fields.begin(), batch->fields.end(),
                                 [&](const auto& field) { return field.name == column; });
          if (at == batch->fields.end()) co_return fail(source_role + "no key column " + column);
          key_at.push_back(static_cast<size_t>(at - batch->fields.begin()));
          key_parameters.types.push_back(protocol::portable_type(at->type_oid));
          key_parameters.formats.push_back(0);
        }
      }
      const std::vector<std::vector<protocol::Value>> none_absent;
      Status written = co_await within(
          write_current(way, *shape, false, *batch, children, key_parameters, none_absent), limit);
      if (!written) co_return fail(target_role + written.error());
      if (auto committed = co_await within(locked.query("COMMIT"), limit); !committed) {
        co_return fail((way.into_primary ? target_role : source_role) + committed.error());
      }
      if (batch->rows.size() < kCopyBatch) break;
      after.clear();
      for (size_t i : key_at)
        after.push_back(batch->rows.back()[i]);
    }
    co_return Ok{};
  }

  // `step`, or an error once it has taken longer than `limit` (its connection is then in
  // doubt, to be closed).
  template <class T>
  static asio::awaitable<T> within(asio::awaitable<T> step, std::chrono::milliseconds limit) {
    asio::steady_timer timer(co_await asio::this_coro::executor, limit);
    auto outcome = co_await (std::move(step) || timer.async_wait(use_tuple));
    if (outcome.index() == 1) {
      co_return Error{"no answer within " + std::to_string(limit.count()) + " ms"};
    }
    co_return std::move(std::get<0>(outcome));
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
      auto counted =
          co_await side.link->query(protocol::count_equal_rows_sql(table, row.names),
                                    row.parameters.types, row.parameters.formats, row.values);
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
      auto written =
          co_await target.link->query(protocol::upsert_sql(shape, row.names), row.parameters.types,
                                      row.parameters.formats, row.values);
      if (!written) co_return fail(written.error());
    }
    if (*in_target > *in_source) {
      auto trimmed = co_await target.link->query(
          protocol::delete_equal_rows_sql(shape, row.names, *in_target - *in_source),
          row.parameters.types, row.parameters.formats, row.values);
      if (!trimmed) co_return fail(trimmed.error());
    }
    for (Link* link : {target.link, source.link}) {
      if (auto committed = co_await link->query("COMMIT"); !committed) {
        co_return fail(committed.error());
      }
    }
    co_return Ok{};
  }

  // The shape of the table `entry` names as the target has it, read again after kShapeTtl,
  // DDL through switchyard (the schema epoch) or a DDL entry replayed.
  asio::awaitable<Result<protocol::TableShape>> target_shape(const Direction& way,
                                                             const JournalEntry& entry) {
    std::string key = pass_key("shape", entry) + '\0' + entry.user; // a view's: by privilege
    uint64_t epoch = services_.schema_epoch().load();
    if (auto known = shapes_.find(key, epoch, Clock::now())) {
      shape_was_known_ = true;
      co_return std::move(*known);
    }
    auto shape = co_await query_table_shape(way.target->session.stream, way.target->reader,
                                            entry.table, dialect_of(*way.target_backend));
    if (shape) shapes_.remember(std::move(key), *shape, epoch, Clock::now());
    co_return shape;
  }

  Services& services_;
  std::shared_ptr<const Runtime> runtime_;
  std::map<std::string, Pair> pairs_;
  EpochCache<protocol::TableShape> shapes_{kShapeTtl};
  bool shape_was_known_ = false;           // the group replaying took a shape from shapes_
  uint64_t retried_with_fresh_shapes_ = 0; // the last group so tried again (its offset)
  // Rows of keyless tables reconciled by count while the journal had a backlog: a later
  // entry for an equal row is reconciled too, never inserted once more.
  std::set<std::string> reconciled_;
  //! Per pass over a table (pass_key), how many journal entries had been written when it
  //! last began: what those entries left to such a pass, it did.
  std::map<std::string, uint64_t> passes_;
  uint64_t failing_offset_ = 0;
  int attempts_ = 0;
};

} // namespace

asio::awaitable<void> replay_journal(Services& services) {
  Replayer replayer(services);
  co_await replayer.run();
}

} // namespace switchyard::proxy
