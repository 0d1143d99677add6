#include "proxy/secondary_link.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <deque>
#include <exception>
#include <iterator>
#include <limits>
#include <string_view>
#include <unordered_set>
#include <utility>

#include "protocol/extended.hpp"
#include "protocol/messages.hpp"
#include "protocol/pg_values.hpp"
#include "protocol/wire.hpp"
#include "proxy/backend_query.hpp"
#include "proxy/log_limiter.hpp"
#include "proxy/spawn.hpp"
#include "routing/stable_hash.hpp"

namespace switchyard::proxy {
namespace {

using Clock = std::chrono::steady_clock;
using monitoring::BackendRole;
using monitoring::MirrorFailure;
using monitoring::MirrorKind;

constexpr auto kSecondaryBackoff = std::chrono::seconds(1);
// How often a write the secondary refused looks whether the DDL it waits for is there.
constexpr auto kDdlPoll = std::chrono::milliseconds(2);
constexpr std::string_view kUndefinedColumn = "42703";
constexpr std::string_view kUndefinedTable = "42P01";
constexpr size_t kMaxSessionStatements = 1000;
constexpr size_t kMaxMergedCommits = 64;   // bounds one apply's size and its mirror.timeout risk
constexpr size_t kMaxGroupedWrites = 1024; // a group takes no further member past this many
constexpr const char* kPreparedRolledBack = "the primary rolled the prepared transaction back";
constexpr const char* kCommitUnanswered =
    "the session ended before the primary answered its COMMIT";
// The journal reason of rows written through a view, re-read for the columns it hides.
constexpr const char* kHiddenByView = "hidden_by_view";
constexpr const char* kImportedOnPrimary = "imported_on_primary"; // lo_import of a server file
// A missed COPY of more rows is journaled as its table, refreshed whole: a bulk load's rows
// would make the journal (written in the session's path) large, and refresh faster.
constexpr size_t kMaxCopyRowEntries = 10000;

int64_t ticks(Clock::time_point t) {
  return t.time_since_epoch().count();
}

// What a secondary connection's login is: the secondary and its role, the database, the user
// and the startup options.
std::string login_key(const Runtime& runtime, const LoginRequest& login) {
  std::string key = runtime.config->secondary_uri;
  for (const std::string& part :
       {std::to_string(runtime.role_generation), login.database, login.user}) {
    key += '\0';
    key += part;
  }
  for (const auto& [option, value] : login.options) {
    key += '\0';
    key += option + '=' + value;
  }
  return key;
}

} // namespace

struct SecondaryConnection {
  explicit SecondaryConnection(BackendSession s)
      : session(std::move(s)), reader(session.stream, protocol::Direction::kBackend,
                                      std::numeric_limits<uint32_t>::max()) {}
  BackendSession session;
  MessageReader reader;
  std::map<std::string, std::string> prepared; // SQL + types -> statement name
  uint64_t next_prepared = 0;
  uint64_t shared_rank = 0; // see SharedConnections
};

namespace {

//! A network thread's shared secondary connections, kept by its io_context.
class SharedSecondaryConnections : public asio::execution_context::service,
                                   public SharedConnections<SecondaryConnection> {
public:
  static asio::execution_context::id id;
  explicit SharedSecondaryConnections(asio::execution_context& context) : service(context) {}

private:
  void shutdown() override { clear(); }
};

// NOLINTNEXTLINE(cert-err58-cpp): asio's registry key; constructing it allocates nothing
asio::execution_context::id SharedSecondaryConnections::id;

} // namespace

//! What one result of the batch should be.
struct SecondaryLink::Unit {
  size_t op = std::numeric_limits<size_t>::max(); // index into the ops; max for BEGIN/COMMIT
  size_t row = 0;                                 // which row of an image op
  std::optional<uint64_t> expected_rows;          // checked when set
  std::optional<uint64_t> secondary_rows;         // what the secondary said, when it differed
  size_t rows = 1;                                // image rows from `row` on it wrote
};

//! How an apply went: applied (perhaps with row counts other than the primary's), or why not.
struct SecondaryLink::ApplyOutcome {
  enum class Kind { kApplied, kDown, kTimeout, kUnreachable, kRefused };
  Kind kind = Kind::kApplied;
  std::string error;
  bool maybe_applied = false;
  std::vector<Unit> divergent;
  //! The image ops whose rows lack columns their table chose values for (written through a
  //! view hiding them, TableShape::hidden_chosen): re-read from the primary once applied.
  std::vector<size_t> lacking;
};

//! A session's commit waiting in ApplyGroups (Services::apply_groups). The session waits
//! for it to be applied on `woken`, without cancellation, so its link and timer outlive the
//! member's wait; only a process shutting down ends that wait otherwise, once no thread runs.
struct SecondaryLink::GroupMember : GroupEntry {
  GroupMember(SecondaryLink& l, MirrorOps o, asio::steady_timer& w)
      : GroupEntry(&asio::query(l.executor_, asio::execution::context), o.size()), link(l),
        ops(std::move(o)), executor(l.executor_), woken(w) {}
  SecondaryLink& link;
  MirrorOps ops;
  asio::any_io_executor executor;      // the session's network thread
  asio::steady_timer& woken;           // the session's, cancelled on its thread once done
  bool done = false;                   // the group was applied, or failed (the session's thread)
  std::optional<ApplyOutcome> outcome; // none: the group failed, apply alone
};

SecondaryLink::SecondaryLink(Services& services, std::shared_ptr<const Runtime> runtime,
                             LoginRequest login, std::string peer,
                             const asio::any_io_executor& executor)
    : services_(services), runtime_(std::move(runtime)), login_(std::move(login)),
      peer_(std::move(peer)), login_key_(login_key(*runtime_, login_)),
      database_key_(SequenceMarks::database_key(runtime_->config->secondary_uri,
                                                runtime_->role_generation, login_.database)),
      executor_(executor), applied_(executor) {
  // A session shares for its whole life, not from its first write on: sessions that connect
  // for one transaction each would otherwise leave their thread with no session sharing
  // between writes, and their idle connections closed (a secondary login per 14
  // transactions of pgbench -C).
  if (shares_connections()) {
    shared_connections().join(login_key_);
    sharing_ = true;
  }
}

void SecondaryLink::settle() {
  backfill::DivergenceJournal* journal = services_.journal();
  for (uint64_t offset : unsettled_) {
    if (journal != nullptr) journal->settle(offset);
  }
  unsettled_.clear();
}

void SecondaryLink::uncount(Batch& batch) {
  size_t bytes = std::exchange(batch.bytes, 0);
  services_.async_queue_bytes() -= bytes;
  // Moved by the difference, not set: sessions of other threads move it at the same time.
  services_.metrics().async_queue_bytes().Decrement(static_cast<double>(bytes));
}

void SecondaryLink::settle(Batch& batch) {
  if (backfill::DivergenceJournal* journal = services_.journal()) {
    for (uint64_t offset : batch.settles)
      journal->settle(offset);
  }
  batch.settles.clear();
}

SecondaryLink::~SecondaryLink() {
  // Only a process shutting down ends a session before its queue is applied (close()
  // waits): journal what is left and release the turns, so no other session waits on them.
  release_ddl_barrier();
  // The primary's answer to the COMMIT these went ahead of never came: the replayer makes
  // their rows whatever the primary holds.
  primary_answered_commit(false, kCommitUnanswered);
  if (reserved_) {
    // Async: the primary may or may not have committed these, so their entries say they
    // may be applied, and a keyless table's rows are reconciled with the primary's.
    journal_ops(reserved_->ops, MirrorFailure::kPrimaryCommitFailed, kCommitUnanswered,
                Journaling::kEndedTransaction, true);
    services_.commit_order().done(reserved_->ticket);
  }
  backfill::DivergenceJournal* journal = services_.journal();
  for (Batch& batch : queue_) {
    if (batch.spilled) {
      if (journal != nullptr) journal->settle(*batch.spilled); // or the replayer stalls on it
    } else {
      journal_ops(batch.ops, MirrorFailure::kTimeout,
                  "the session ended before the secondary applied its committed writes",
                  Journaling::kApplier);
    }
    settle(batch);
    uncount(batch);
    services_.commit_order().done(batch.ticket);
  }
  services_.metrics().async_queue().Set(static_cast<double>(services_.commit_order().pending()));
  settle();
  auto& connections = services_.metrics().backend_connections(BackendRole::kSecondary);
  if (connection_) connections.Decrement();
  if (sharing_) {
    for (auto& surplus : shared_connections().leave(login_key_)) {
      surplus.reset();
      connections.Decrement();
    }
  }
}

SharedConnections<SecondaryConnection>& SecondaryLink::shared_connections() const {
  return asio::use_service<SharedSecondaryConnections>(
      asio::query(executor_, asio::execution::context));
}

namespace {

// The bytes of a COPY's data, all its chunks.
size_t copy_data_size(const MirrorOp& op) {
  size_t bytes = 0;
  for (const std::string& chunk : op.copy_data)
    bytes += chunk.size();
  return bytes;
}

// The memory an op keeps until the commit: its text, values and COPY data, and the op itself
// (about 1 KiB, its Statement most of it), which is most of a small statement's share.
size_t footprint(const MirrorOp& op) {
  using Values = std::vector<protocol::Value>;
  auto values = [](const Values& list) {
    size_t bytes = list.size() * sizeof(protocol::Value);
    for (const auto& value : list)
      bytes += value ? value->size() : 0;
    return bytes;
  };
  size_t bytes = sizeof(MirrorOp) + op.sql.size() + values(op.parameters);
  for (const auto& row : op.rows)
    bytes += sizeof(Values) + values(row);
  return bytes + op.copy_data.size() * sizeof(std::string) + copy_data_size(op);
}

} // namespace

void SecondaryLink::add(MirrorOp op) {
  size_t bytes = footprint(op);
  if (pending_bytes_ + bytes > runtime_->config->mirror.max_transaction_bytes) {
    // The replayer copies a large object as the primary's commit leaves it: the first entry
    // of it covers its later writes in the transaction.
    if (op.large_object && !too_large_objects_.insert(*op.large_object).second) return;
    journal_ops({op}, MirrorFailure::kTooLarge,
                "the transaction's writes exceed mirror.max_transaction_bytes",
                Journaling::kOpenTransaction);
    return;
  }
  pending_bytes_ += bytes;
  op.session_seq = session_seq_;
  op.transaction_seq = transaction_seq_;
  pending_.push_back(std::move(op));
}

void SecondaryLink::add_session_statement(std::string sql, const protocol::Statement& statement) {
  using Kind = SessionStatement::Kind;
  Kind kind = statement.node == "VariableSetStmt" ? Kind::kSetting
              : statement.node == "DiscardStmt"   ? Kind::kDiscard
                                                  : Kind::kPrepared;
  if (statement.drops_temporaries) { // DISCARD: no name is a temporary relation's any more
    temporary_names_.clear();
    lost_temporaries_.clear();
  }
  session_statements_.push_back(
      SessionStatement{++session_seq_, std::move(sql), kind,
                       statement.node == "DeallocateStmt" || statement.drops_all_prepared,
                       statement.transaction_scoped});
  if (session_statements_.size() > kMaxSessionStatements) forget_a_session_statement();
}

void SecondaryLink::discard() {
  pending_.clear();
  pending_bytes_ = 0;
  release_ddl_barrier(); // its DDL rolled back with the rest
}

void SecondaryLink::end_transaction(bool committed) {
  transaction_began_.reset();
  too_large_objects_.clear();
  if (!committed) undo_settings_after(transaction_seq_);
  savepoints_.clear();
  transaction_seq_ = session_seq_;
  if (session_seq_ == compacted_up_to_ || writes_hold_places()) return;
  compacted_up_to_ = session_seq_;
  // No write that has yet to reach the secondary holds a place among the statements now:
  // SET LOCALs are over, and repeats (ORMs re-send their SETs) leave only their last copy.
  std::erase_if(session_statements_,
                [](const SessionStatement& statement) { return statement.transaction_scoped; });
  std::vector<SessionStatement> kept;
  kept.reserve(session_statements_.size()); // `later` views the strings kept
  std::unordered_set<std::string_view> later;
  for (auto it = session_statements_.rbegin(); it != session_statements_.rend(); ++it) {
    if (later.contains(it->sql)) continue;
    kept.push_back(std::move(*it));
    later.insert(kept.back().sql);
  }
  session_statements_.assign(std::make_move_iterator(kept.rbegin()),
                             std::make_move_iterator(kept.rend()));
}

void SecondaryLink::savepoint(std::string name) {
  savepoints_.emplace_back(std::move(name), session_seq_);
}

void SecondaryLink::release_savepoint(const std::string& name) {
  // The latest savepoint of that name goes, with those made after it.
  auto found = std::find_if(savepoints_.rbegin(), savepoints_.rend(),
                            [&](const auto& savepoint) { return savepoint.first == name; });
  if (found != savepoints_.rend()) savepoints_.erase(std::next(found).base(), savepoints_.end());
}

void SecondaryLink::rollback_to_savepoint(const std::string& name) {
  // The savepoint itself stays; those made after it go.
  auto found = std::find_if(savepoints_.rbegin(), savepoints_.rend(),
                            [&](const auto& savepoint) { return savepoint.first == name; });
  if (found == savepoints_.rend()) return;
  undo_settings_after(found->second);
  savepoints_.erase(found.base(), savepoints_.end());
}

void SecondaryLink::undo_settings_after(uint64_t seq) {
  bool ran = false;
  std::erase_if(session_statements_, [&](const SessionStatement& statement) {
    if (statement.seq <= seq || !statement.transactional()) return false;
    ran |= statement.seq <= session_applied_;
    return true;
  });
  // The secondary committed settings the primary then rolled back (its COMMIT failed after
  // the secondary's): only a new connection is sure to be without them.
  if (ran && !applying_ops_) drop_connection();
}

void SecondaryLink::forget_a_session_statement() {
  // Only a statement the connection ran already and a later copy repeats can go: only a
  // reconnect would replay it, for writes queued between the two. A copy a rollback may still
  // undo does not count. Past ten times the bound (a secondary far behind), the oldest goes
  // regardless.
  std::unordered_set<std::string_view> later;
  auto forgotten = session_statements_.end();
  for (auto it = session_statements_.end(); it != session_statements_.begin();) {
    --it;
    if (it->seq <= session_applied_ && later.contains(it->sql)) forgotten = it;
    if (it->seq <= transaction_seq_ || !it->transactional()) later.insert(it->sql);
  }
  if (forgotten == session_statements_.end()) {
    if (session_statements_.size() <= 10 * kMaxSessionStatements) return;
    forgotten = session_statements_.begin();
  }
  if (!forgot_statements_) {
    spdlog::warn("session {}: more than {} session statements; the oldest are forgotten", peer_,
                 kMaxSessionStatements);
    forgot_statements_ = true;
  }
  session_statements_.erase(forgotten);
}

namespace {

asio::awaitable<void> cancel_on(std::shared_ptr<const Runtime> runtime, uint32_t pid,
                                uint32_t key) {
  auto sent = co_await send_cancel_request(*runtime->config->secondary, pid, key);
  // Expected to fail when the secondary is down, which is why the writes were abandoned.
  if (!sent) spdlog::debug("cancelling an abandoned write on the secondary: {}", sent.error());
}

// Terminate ends the backend at once rather than when it notices the closed socket.
asio::awaitable<void> say_goodbye(BackendSession& session) {
  std::string terminate;
  protocol::append_terminate(terminate);
  co_await session.stream.write_last_words(terminate);
}

} // namespace

void SecondaryLink::drop_connection() {
  read_transaction_open_ = false;
  borrowed_ = false;
  if (!connection_) return;
  // Writes still running there would commit whenever they got there, perhaps after the
  // replayer wrote a newer version of their rows: cancelled, they roll back unless already
  // committing (which their maybe_applied journal entries allow for). A read abandoned as
  // too slow would go on taking the secondary's time.
  if (std::exchange(sent_unanswered_, false) &&
      runtime_->config->secondary->kind == config::BackendKind::kPostgres) {
    spawn(executor_, cancel_on(runtime_, connection_->session.pid, connection_->session.key),
          "secondary cancel");
  }
  connection_->session.stream.close();
  connection_.reset();
  services_.metrics().backend_connections(BackendRole::kSecondary).Decrement();
  session_applied_ = 0;
  lost_temporaries_.merge(temporary_names_); // they were that connection's
  temporary_names_.clear();
}

void SecondaryLink::drop_if_closed() {
  if (connection_ && !read_transaction_open_ && connection_->session.stream.peer_closed()) {
    drop_connection();
  }
}

bool SecondaryLink::shares_connections() const {
  // Settings would stay on the connection for the next session to inherit, and a SQLite
  // secondary has no backend processes to keep warm.
  return session_statements_.empty() &&
         runtime_->config->secondary->kind == config::BackendKind::kPostgres;
}

bool SecondaryLink::may_share(const MirrorOps& ops) const {
  // Only writes switchyard phrases itself (row images; savepoints, which end with the
  // transaction) leave nothing on the connection for the next session to inherit.
  if (!shares_connections()) return false;
  return std::all_of(ops.begin(), ops.end(), [](const MirrorOp& op) {
    return op.statement.transaction != protocol::TransactionOp::kNone ||
           (op.kind == MirrorOp::Kind::kImage && !op.statement.target.temporary && !op.ddl);
  });
}

void SecondaryLink::give_back_shared() {
  if (!borrowed_ || !connection_) {
    borrowed_ = false;
    return;
  }
  if (connection_->session.transaction_status != 'I') { // ended half-way
    drop_connection();
    return;
  }
  borrowed_ = false;
  for (auto& surplus : shared_connections().give_back(
           login_key_, std::move(connection_), runtime_->config->mirror.shared_idle_timeout)) {
    retire(std::move(surplus));
  }
}

void SecondaryLink::retire(std::unique_ptr<SecondaryConnection> connection) {
  auto goodbye = [](std::unique_ptr<SecondaryConnection> c,
                    Services& services) -> asio::awaitable<void> {
    co_await say_goodbye(c->session);
    c->session.stream.close();
    services.metrics().backend_connections(BackendRole::kSecondary).Decrement();
  };
  spawn(executor_, goodbye(std::move(connection), services_), "secondary goodbye");
}

asio::awaitable<Status> SecondaryLink::ensure_connected(bool may_share, uint64_t settings_up_to) {
  // A connection the secondary closed while it sat idle (a restart, idle_session_timeout)
  // says so before anything is sent: replaced, rather than failing the writes it would carry.
  drop_if_closed();
  if (!connection_) {
    borrowed_ = may_share;
    if (borrowed_) {
      while ((connection_ = shared_connections().take(login_key_))) {
        if (!connection_->session.stream.peer_closed()) co_return Ok{};
        connection_->session.stream.close();
        connection_.reset();
        services_.metrics().backend_connections(BackendRole::kSecondary).Decrement();
      }
    }
    auto result = co_await connect_backend(*runtime_->config->secondary,
                                           runtime_->secondary_tls.get(), login_);
    if (auto* failed = std::get_if<BackendFailure>(&result)) {
      services_.metrics().backend_connect_failures(BackendRole::kSecondary).Increment();
      co_return Error{"could not connect to the secondary: " + failed->message};
    }
    connection_ =
        std::make_unique<SecondaryConnection>(std::move(std::get<BackendSession>(result)));
    services_.metrics().backend_connections(BackendRole::kSecondary).Increment();
    shapes_.clear();
    if (borrowed_) co_return Ok{}; // shared: no settings of this session's
  }
  // Settings come first: they decide how names resolve and values parse on the secondary.
  while (true) {
    auto next = std::find_if(session_statements_.begin(), session_statements_.end(),
                             [&](const SessionStatement& s) { return s.seq > session_applied_; });
    if (next == session_statements_.end() || next->seq > settings_up_to) break;
    SessionStatement statement = *next; // the session may add another while this one runs
    session_applied_ = statement.seq;
    auto done = co_await run_query(connection_->session.stream, connection_->reader, statement.sql);
    if (!done)
      spdlog::warn("session {}: secondary refused session statement: {}", peer_, done.error());
    if (statement.drops_prepared) connection_->prepared.clear(); // re-prepared on next use
  }
  co_return Ok{};
}

namespace {

// The name a table's shape is looked up and cached by on the secondary.
std::string shape_name(const protocol::TargetTable& table) {
  return table.temporary && table.schema.empty()
             ? "pg_temp." + protocol::quote_identifier(table.name)
             : table.qualified();
}

// Moves sequence $1 (a qualified name) on to $2 unless it is there already, it is gone or
// the login may not: a statement in the same batch must not fail for it.
constexpr std::string_view kAdvanceSequenceSql =
    "SELECT pg_catalog.setval(s, $2) FROM (SELECT pg_catalog.to_regclass($1) AS s) q "
    "WHERE CASE WHEN pg_catalog.has_sequence_privilege(s, 'SELECT') AND "
    "pg_catalog.has_sequence_privilege(s, 'UPDATE') "
    "THEN coalesce(pg_catalog.pg_sequence_last_value(s), 0) < $2 ELSE false END";

// The largest value of integer column `column` in the rows of `op` (text, or binary int2,
// int4 or int8), if it has one; rows `skipped` marks are left out.
std::optional<int64_t> largest_integer(const MirrorOp& op, size_t column,
                                       const std::vector<bool>& skipped = {}) {
  std::optional<int64_t> largest;
  bool binary = op.fields[column].format == 1;
  for (size_t r = 0; r < op.rows.size(); ++r) {
    const auto& row = op.rows[r];
    if (r < skipped.size() && skipped[r]) continue;
    if (column >= row.size() || !row[column]) continue;
    auto value =
        binary ? protocol::decode_int_binary(*row[column]) : protocol::parse_int8(*row[column]);
    if (value && (!largest || *value > *largest)) largest = *value;
  }
  return largest;
}

// Where INSERT image `op` holds the column `name` drawing from a sequence, when some row's
// value came from the sequence (not the client, whose own id moved the primary's sequence no
// more than it may move the secondary's).
std::optional<size_t> drawn_column(const MirrorOp& op, const std::string& name) {
  const protocol::Statement& insert = op.statement;
  auto at = std::find_if(op.fields.begin(), op.fields.end(),
                         [&](const auto& f) { return f.name == name; });
  if (at == op.fields.end()) return std::nullopt;
  // The image holds the table's columns in order.
  auto column = static_cast<size_t>(at - op.fields.begin());
  if (insert.values_every_column ||
      std::find(insert.valued_columns.begin(), insert.valued_columns.end(), name) !=
          insert.valued_columns.end() ||
      std::find(insert.valued_positions.begin(), insert.valued_positions.end(), column) !=
          insert.valued_positions.end()) {
    return std::nullopt;
  }
  return column;
}

// Whether INSERT image `op` run again on the secondary gives its rows the keys the images
// hold: each key column a constant or a parameter the client gave, or, for one row under a
// single key a sequence fills, drawn there (a row under another id is dropped after it,
// see drop_own_draw). Else a call or a DEFAULT (gen_random_uuid(), an id generator) may give
// the secondary's row a key of its own, which the images would leave beside theirs.
bool keys_repeat(const protocol::TableShape& shape, const MirrorOp& op) {
  const protocol::Statement& insert = op.statement;
  for (const std::string& key : shape.key_columns) {
    auto at = std::find_if(op.fields.begin(), op.fields.end(),
                           [&](const auto& f) { return f.name == key; });
    if (at == op.fields.end()) return false;
    auto column = static_cast<size_t>(at - op.fields.begin());
    if (drawn_column(op, key)) {
      bool drawn_once = op.rows.size() == 1 && shape.key_columns.size() == 1 &&
                        std::ranges::any_of(shape.sequences, [&](const auto& serial) {
                          return serial.first == key;
                        });
      if (!drawn_once) return false;
    } else if (insert.computes_every_column ||
               std::ranges::find(insert.computed_columns, key) != insert.computed_columns.end() ||
               std::ranges::find(insert.computed_positions, column) !=
                   insert.computed_positions.end()) {
      return false;
    }
  }
  return true;
}

// Whether no two of an image's rows have the same key, so one UPDATE joining them all finds
// each row once: the rows of an inheritance parent's children may repeat the parent's keys.
bool keys_distinct(const protocol::TableShape& shape, const MirrorOp& op) {
  std::vector<size_t> columns;
  for (const std::string& key : shape.key_columns) {
    auto at = std::ranges::find(op.fields, key, &protocol::FieldDescription::name);
    if (at == op.fields.end()) return false;
    columns.push_back(static_cast<size_t>(at - op.fields.begin()));
  }
  std::unordered_set<std::string> seen;
  for (const auto& row : op.rows) {
    std::string key;
    for (size_t column : columns) {
      const protocol::Value& value = row[column];
      key += value ? std::to_string(value->size()) + ':' + *value : "-";
    }
    if (!seen.insert(std::move(key)).second) return false;
  }
  return true;
}

// Whether an op may run inside the implicit transaction the extended protocol opens up to
// the next Sync: plain writes may; COPY, DDL, transaction control and unparsed text (which
// may hold several statements) need a transaction block of their own.
bool fits_implicit_transaction(const MirrorOp& op) {
  return op.statement.kind == protocol::StatementKind::kWrite &&
         op.statement.mirror != protocol::MirrorPlan::kCopyIn;
}

// Whether `sql` mentions the table `name` (as a word, in any case): may be DDL of it.
bool names_table(std::string_view sql, std::string_view name) {
  if (name.empty()) return false;
  auto lower = [](unsigned char c) { return static_cast<char>(std::tolower(c)); };
  auto word = [](unsigned char c) { return std::isalnum(c) != 0 || c == '_' || c >= 0x80; };
  auto same = [&](char a, char b) { return lower(a) == lower(b); };
  for (auto at = sql.begin();; ++at) {
    at = std::search(at, sql.end(), name.begin(), name.end(), same);
    if (at == sql.end()) return false;
    auto after = at + static_cast<std::ptrdiff_t>(name.size());
    if ((at == sql.begin() || !word(at[-1])) && (after == sql.end() || !word(*after))) return true;
  }
}

// The largest id INSERT image `op` drew from a sequence into `name` (at `column`): of the rows
// that left the column DEFAULT where others of its VALUES gave one. Such rows are known only
// when the images match the VALUES list one to one (not so when ON CONFLICT DO NOTHING or a
// BEFORE trigger dropped some): else none, rather than a client's id the sequence never gave.
std::optional<int64_t> largest_drawn(const MirrorOp& op, const std::string& name, size_t column) {
  const auto& partly = op.statement.partly_valued;
  auto mixed = std::ranges::find_if(partly, [&](const protocol::PartlyValued& p) {
    return p.column.empty() ? p.position == column : p.column == name;
  });
  if (mixed == partly.end()) return largest_integer(op, column);
  if (mixed->given.size() != op.rows.size()) return std::nullopt;
  return largest_integer(op, column, mixed->given);
}

} // namespace

asio::awaitable<Result<protocol::TableShape>>
SecondaryLink::shape_of(const MirrorOp& op, std::span<const std::string_view> earlier_ddl) {
  // DDL the batch runs before the op that names its table (CREATE TABLE, then rows for it)
  // runs in the lookup's transaction too, and the shape it gives is the batch's own: not
  // kept. Other DDL (an index built on another table) is not run twice.
  std::vector<std::string_view> ddl;
  std::ranges::copy_if(earlier_ddl, std::back_inserter(ddl), [&](std::string_view sql) {
    return names_table(sql, op.statement.target.name);
  });
  std::string key = shape_key(op);
  if (auto found = shapes_.find(key); ddl.empty() && found != shapes_.end()) {
    co_return found->second;
  }
  std::string shared = shared_shape_key(op, key);
  ShapeRegistry& registry = services_.shapes();
  uint64_t epoch = services_.schema_epoch().load();
  if (!shared.empty() && ddl.empty()) {
    if (auto known = registry.find(shared, epoch, ShapeRegistry::Clock::now())) {
      shapes_.emplace(key, *known);
      co_return std::move(*known);
    }
  }
  // Settings of the op's transaction run on the secondary inside the batch, after this
  // lookup: it runs under them in a transaction of its own, rolled back to undo them.
  std::vector<std::string_view> pending = settings_of(op, session_applied_);
  pending.insert(pending.end(), ddl.begin(), ddl.end());
  Stream& stream = connection_->session.stream;
  MessageReader& reader = connection_->reader;
  if (!pending.empty()) pending.insert(pending.begin(), "BEGIN");
  std::optional<std::string> failed;
  for (std::string_view sql : pending) {
    if (auto ran = co_await run_query(stream, reader, sql); !ran && !failed) failed = ran.error();
  }
  auto shape =
      co_await query_table_shape(stream, reader, shape_name(op.statement.target),
                                 dialect_of(*runtime_->config->secondary), ShapeUse::kMirror);
  if (!pending.empty()) (void)co_await run_query(stream, reader, "ROLLBACK");
  if (failed) {
    co_return Error{"a setting of the session or an earlier DDL failed on the secondary: " +
                    *failed};
  }
  if (!shape) co_return shape;
  if (shape->rewriting_triggers && !shape->may_disable_triggers) {
    static LogLimiter limiter;
    if (std::string note; limiter.due(note)) {
      spdlog::warn("session {}: {} has BEFORE triggers on the secondary, which may change the "
                   "values rows are written there with; the secondary's login may not set "
                   "session_replication_role to turn them off (GRANT SET ON PARAMETER "
                   "session_replication_role TO it){}",
                   peer_, shape->qualified, note);
    }
  }
  if (!ddl.empty()) co_return shape;
  shapes_.emplace(key, *shape);
  if (!shared.empty()) registry.remember(shared, *shape, epoch, ShapeRegistry::Clock::now());
  co_return shape;
}

std::string SecondaryLink::shape_key(const MirrorOp& op) const {
  // A temporary table's name needs no settings to resolve.
  std::string key;
  if (!op.statement.target.temporary) {
    for (std::string_view setting : settings_of(op)) {
      key += setting;
      key += '\0';
    }
  }
  key += shape_name(op.statement.target);
  return key;
}

std::string SecondaryLink::shared_shape_key(const MirrorOp& op, const std::string& key) const {
  // The session's own; so may be any table named without its schema once the session has
  // temporary tables, which come first in the search path.
  if (op.statement.target.temporary || (created_temporary_ && op.statement.target.schema.empty()))
    return {};
  // What a table name resolves by: the secondary and its role, the login (its database, its
  // user's default search_path, startup options), and the session's own settings.
  return login_key_ + '\0' + key;
}

std::string SecondaryLink::prepared_name(const std::string& sql, const std::vector<uint32_t>& types,
                                         std::string& out, std::vector<std::string>& new_names) {
  std::string key = sql;
  for (uint32_t type : types) {
    key += ',';
    key += std::to_string(type);
  }
  auto& prepared = connection_->prepared;
  if (auto found = prepared.find(key); found != prepared.end()) return found->second;
  std::string name = "switchyard_";
  name += std::to_string(++connection_->next_prepared);
  // Close first: a DEALLOCATE ALL or DISCARD the client ran may have dropped the name.
  protocol::append_close(out, 'S', name);
  protocol::append_parse(out, protocol::ParseMessage{name, sql, types});
  prepared.emplace(key, name);
  new_names.push_back(std::move(key));
  return name;
}

bool SecondaryLink::calls_writing_functions(const protocol::TableShape* shape,
                                            const MirrorOp& op) const {
  if (op.calls_writing_functions) return true;
  if (shape == nullptr || shape->writing_defaults.empty() || op.kind != MirrorOp::Kind::kImage ||
      op.statement.node != "InsertStmt" ||
      dialect_of(runtime_->config->primary) != protocol::Dialect::kPostgres) {
    return false;
  }
  // Functions the configuration says cannot write (read_routing.safe_functions).
  auto policy = services_.read_policy();
  auto may_write = [&](const std::string& name) {
    return std::ranges::find(policy->safe_functions, name) == policy->safe_functions.end();
  };
  return std::ranges::any_of(shape->writing_defaults, [&](const auto& column_default) {
    return drawn_column(op, column_default.column).has_value() &&
           std::ranges::any_of(column_default.functions, may_write);
  });
}

void SecondaryLink::note_sequence_values(const protocol::TableShape& shape, const MirrorOp& op) {
  for (const auto& serial : shape.sequences) {
    auto column = drawn_column(op, serial.first);
    if (!column) continue;
    if (auto largest = largest_drawn(op, serial.first, *column)) {
      services_.sequence_marks().note(database_key_, serial.second, *largest);
    }
  }
}

asio::awaitable<Status> SecondaryLink::apply(const MirrorOps& ops, bool atomic,
                                             std::vector<Unit>& units, std::vector<Unit>& divergent,
                                             std::vector<size_t>& lacking, bool& maybe_applied) {
  advances_.clear();
  struct Applying { // the ops hold their places among the session statements meanwhile
    bool& flag;
    explicit Applying(bool& f) : flag(f) { flag = true; }
    ~Applying() { flag = false; }
    Applying(const Applying&) = delete;
    Applying& operator=(const Applying&) = delete;
  } applying(applying_ops_);
  uint64_t settings = ops.empty() ? session_seq_ : ops.front().transaction_seq;
  if (auto connected = co_await ensure_connected(may_share(ops), settings); !connected)
    co_return connected;
  // The connection was replaced just now, with the temporary relations these ops name.
  if (std::ranges::any_of(ops, [&](const MirrorOp& op) { return names_lost_temporary(op); }))
    co_return Error{"the secondary connection that held the session's temporary tables was lost"};
  connection_->session.transaction_status = '?'; // until a ReadyForQuery tells
  if (std::any_of(ops.begin(), ops.end(),
                  [](const MirrorOp& op) { return op.statement.private_ddl; }))
    created_temporary_ = true;
  auto epoch = services_.schema_epoch().load() + private_ddl_;
  if (epoch != shapes_epoch_) {
    shapes_.clear();
    shapes_epoch_ = epoch;
  }

  // One Sync for the whole transaction when every op is a plain write: the writes and the
  // commit then cost the secondary one message cycle and one flush (no BEGIN and COMMIT
  // round of their own); an error rolls the implicit transaction back as COMMIT would.
  bool one_sync = atomic && std::all_of(ops.begin(), ops.end(), fits_implicit_transaction);
  bool block = atomic && !one_sync;
  std::string out;
  size_t ready_expected = 0;
  bool in_extended = false;
  // The statements this batch parses, in order: the key a new name has in
  // connection_->prepared, empty for the unnamed statement. A ParseComplete confirms each.
  std::vector<std::string> new_names;
  auto parse_unnamed = [&](std::string sql, std::vector<uint32_t> types) {
    protocol::append_parse(out, protocol::ParseMessage{"", std::move(sql), std::move(types)});
    new_names.emplace_back();
  };
  auto end_extended = [&] {
    if (!in_extended) return;
    protocol::append_sync(out);
    ++ready_expected;
    in_extended = false;
  };
  auto add_statement = [&](const MirrorOp& op, size_t index) {
    if (op.statement.mirror == protocol::MirrorPlan::kCopyIn) {
      // The data follows the COPY at once; should the COPY fail, PostgreSQL ignores it.
      end_extended();
      protocol::append_query(out, op.sql);
      // Grown once: the data may be max_transaction_bytes. (5: each message's tag and length.)
      out.reserve(out.size() + copy_data_size(op) + 5 * (op.copy_data.size() + 1));
      for (const std::string& chunk : op.copy_data) {
        protocol::MessageBuilder(out, 'd').bytes(chunk);
      }
      protocol::append_empty_message(out, 'c');
      ++ready_expected;
    } else if (op.parameters.empty() && !one_sync) {
      end_extended();
      protocol::append_query(out, op.sql);
      ++ready_expected;
    } else {
      in_extended = true;
      parse_unnamed(op.sql, op.parameter_types);
      protocol::append_bind(out,
                            protocol::BindMessage{"", "", op.parameter_formats, op.parameters, {}});
      protocol::append_execute(out, "", 0);
    }
    units.push_back(Unit{index, 0, op.ddl ? std::nullopt : op.primary_rows, std::nullopt});
  };

  if (block) {
    protocol::append_query(out, "BEGIN");
    ++ready_expected;
    units.push_back(Unit{});
  }
  // Before the secondary draws ids itself, its sequences catch up with the images.
  auto advance_lagging_sequences = [&](size_t index) {
    SequenceMarks::Advances lagging = services_.sequence_marks().take_lagging(database_key_);
    advances_.insert(advances_.end(), lagging.begin(), lagging.end());
    for (auto& [sequence, value] : lagging) {
      in_extended = true;
      std::string name = prepared_name(std::string(kAdvanceSequenceSql), {25, 20}, out, new_names);
      protocol::append_bind(
          out, protocol::BindMessage{"", name, {}, {sequence, std::to_string(value)}, {}});
      protocol::append_execute(out, "", 0);
      units.push_back(Unit{index, 0, std::nullopt, std::nullopt});
    }
  };
  // An image op's rows, written by one statement as the primary's statement wrote them, so
  // the secondary checks its foreign keys and deferrable unique constraints after them all
  // (a child before its parent, positions moved up by one). A single row takes a statement
  // prepared on the connection; more, unnamed statements of `per_statement` rows each
  // (`full`), the rest by `last`.
  struct RowWrite {
    size_t index = 0;              // of the op
    std::string prepared;          // one row's statement
    size_t per_statement = 1;      // rows, as many as kMaxStatementParameters allows
    std::string full;              // the statement for per_statement rows, if there are so many
    std::string last;              // ... for the rows after the last such statement
    std::vector<uint32_t> types;   // one row's parameters'
    std::vector<uint16_t> formats; // ...
    std::vector<size_t> columns;   // of the image, one per parameter
  };
  auto write_rows = [&](const RowWrite& write, bool check_count) {
    const MirrorOp& op = ops[write.index];
    size_t per_statement = write.per_statement;
    for (size_t row = 0; row < op.rows.size(); row += per_statement) {
      size_t rows = std::min(per_statement, op.rows.size() - row);
      std::vector<protocol::Value> values;
      values.reserve(write.columns.size() * rows);
      for (size_t r = row; r < row + rows; ++r) {
        for (size_t column : write.columns)
          values.push_back(op.rows[r][column]);
      }
      std::string statement = write.prepared;
      std::vector<uint16_t> formats = write.formats;
      if (write.prepared.empty()) {
        std::vector<uint32_t> types;
        types.reserve(write.types.size() * rows);
        for (size_t r = 0; r < rows; ++r) {
          types.insert(types.end(), write.types.begin(), write.types.end());
          if (r > 0) formats.insert(formats.end(), write.formats.begin(), write.formats.end());
        }
        parse_unnamed(rows == per_statement ? write.full : write.last, std::move(types));
      }
      protocol::append_bind(
          out, protocol::BindMessage{"", statement, std::move(formats), std::move(values), {}});
      protocol::append_execute(out, "", 0);
      std::optional<uint64_t> expected;
      if (check_count) expected = rows;
      units.push_back(Unit{write.index, row, expected, std::nullopt, rows});
    }
  };
  // An INSERT of one row the secondary ran itself drew its key from the secondary's own
  // sequence, which another session's draw on the primary may have put behind: its row under
  // an id other than the image's is dropped (the image writes the primary's), found by the
  // id this connection drew last (in a subquery, evaluated once: the key's index finds the
  // row). So is the row an upsert moved to that id.
  auto drop_own_draw = [&](const protocol::TableShape& shape, const MirrorOp& op, size_t index) {
    if (op.rows.size() != 1 || shape.key_columns.size() != 1) return;
    const std::string& key = shape.key_columns.front();
    auto serial = std::find_if(shape.sequences.begin(), shape.sequences.end(),
                               [&](const auto& s) { return s.first == key; });
    if (serial == shape.sequences.end()) return;
    auto column = drawn_column(op, key);
    auto id = column ? largest_integer(op, *column) : std::nullopt;
    if (!id) return;
    std::string quoted = protocol::quote_identifier(key);
    std::string sql = "DELETE FROM " + shape.qualified + " WHERE " + quoted +
                      " = (SELECT pg_catalog.currval(pg_catalog.to_regclass($1))) AND " + quoted +
                      " <> $2";
    in_extended = true;
    std::string name = prepared_name(sql, {25, 20}, out, new_names);
    protocol::append_bind(
        out, protocol::BindMessage{"", name, {}, {serial->second, std::to_string(*id)}, {}});
    protocol::append_execute(out, "", 0);
    units.push_back(Unit{index, 0, std::nullopt, std::nullopt});
  };
  // Images a BEFORE trigger stamped again (TableShape::rewriting_triggers), written once more
  // with session_replication_role = replica, which turns such triggers off: an upsert that
  // leaves the primary's values. All together, as each change of the role makes the
  // secondary plan its statements afresh, but before anything that may see them (a
  // statement, a setting, a DELETE).
  std::vector<RowWrite> rewrites;
  auto run_prepared = [&](std::string_view sql, size_t index) {
    std::string prepared = prepared_name(std::string(sql), {}, out, new_names);
    protocol::append_bind(out, protocol::BindMessage{"", prepared, {}, {}, {}});
    protocol::append_execute(out, "", 0);
    units.push_back(Unit{index, 0, std::nullopt, std::nullopt});
  };
  auto rewrite_without_triggers = [&] {
    if (rewrites.empty()) return;
    run_prepared(kTriggersOffSql, rewrites.front().index);
    for (const RowWrite& write : rewrites)
      write_rows(write, false);
    run_prepared(kTriggersBackSql, rewrites.back().index);
    rewrites.clear();
  };
  // Session statements the client ran between two of the writes run between them here too,
  // in the writes' transaction, as the primary ran them.
  uint64_t settings_sent = session_applied_;
  bool lasting_settings_sent = false; // PREPARE, DEALLOCATE: not undone should the batch fail
  auto interleave_settings = [&](const MirrorOp& op, size_t index) {
    for (const SessionStatement& statement : session_statements_) {
      if (statement.seq <= settings_sent || statement.seq > op.session_seq) continue;
      rewrite_without_triggers();
      in_extended = true;
      parse_unnamed(statement.sql, {});
      protocol::append_bind(out, protocol::BindMessage{"", "", {}, {}, {}});
      protocol::append_execute(out, "", 0);
      units.push_back(Unit{index, 0, std::nullopt, std::nullopt});
      if (statement.drops_prepared) connection_->prepared.clear();
      lasting_settings_sent |= !statement.transactional();
      settings_sent = statement.seq;
    }
  };
  std::vector<std::string_view> ddl_before; // the DDL of ops[0, index)
  for (size_t index = 0; index < ops.size(); ++index) {
    const MirrorOp& op = ops[index];
    if (index > 0 && ops[index - 1].ddl) ddl_before.push_back(ops[index - 1].sql);
    interleave_settings(op, index);
    if (op.kind == MirrorOp::Kind::kStatement) {
      rewrite_without_triggers();
      if (op.statement.kind == protocol::StatementKind::kWrite ||
          op.statement.kind == protocol::StatementKind::kUnknown) {
        advance_lagging_sequences(index);
      }
      add_statement(op, index);
      for (const auto& [sequence, value] : op.sequence_values)
        services_.sequence_marks().note(database_key_, sequence, value);
      services_.metrics().mirrored(MirrorKind::kStatement).Increment();
      continue;
    }
    auto shape = co_await shape_of(op, ddl_before);
    if (!shape) co_return Error{shape.error()};
    const protocol::Statement& statement = op.statement;
    bool update = statement.node == "UpdateStmt";
    bool keyless = shape->key_columns.empty();
    // An UPDATE's SET, or an upsert's DO UPDATE SET, moving rows to other keys.
    bool key_change =
        std::ranges::any_of(statement.set_columns, [&](const auto& c) { return shape->is_key(c); });
    // Without a key a row cannot be found again, a key change leaves the old key behind, and
    // a function may write other tables: run the statement itself (then, with a key, still
    // write the exact values; rows it deleted are gone already). Not an INSERT that may give
    // its rows other keys there: what its functions wrote elsewhere is reported instead.
    bool calls_writing = calls_writing_functions(&*shape, op);
    if (calls_writing && !keyless && statement.node == "InsertStmt" && !key_change &&
        !keys_repeat(*shape, op)) {
      calls_writing = false;
      services_.metrics().mirror_failures(MirrorFailure::kNotMirrorable).Increment();
      static LogLimiter limiter;
      if (std::string note; limiter.due(note)) {
        spdlog::warn("session {}: what the functions an INSERT into {} calls wrote elsewhere "
                     "is not mirrored (run again, it could give its rows other keys); verify "
                     "those tables: {}{}",
                     peer_, shape->qualified, op.sql, note);
      }
    }
    bool runs_itself = key_change || calls_writing;
    if ((keyless && statement.image_op == protocol::RowImageOp::kDelete) || (keyless && update) ||
        runs_itself) {
      rewrite_without_triggers();
      advance_lagging_sequences(index); // an upsert's new rows may draw their ids
      add_statement(op, index);
      if (statement.node == "InsertStmt") drop_own_draw(*shape, op, index);
      services_.metrics().mirrored(MirrorKind::kKeyFallback).Increment();
      if (keyless || !runs_itself || statement.image_op == protocol::RowImageOp::kDelete) continue;
    }
    if (op.rows.empty()) continue;
    std::vector<size_t> columns;
    std::vector<std::string> names; // the columns an upsert writes
    if (statement.image_op == protocol::RowImageOp::kDelete) {
      rewrite_without_triggers(); // a row written again after its DELETE would come back
      for (const std::string& key : shape->key_columns) {
        auto at = std::find_if(op.fields.begin(), op.fields.end(),
                               [&](const auto& f) { return f.name == key; });
        if (at == op.fields.end()) {
          co_return Error{"the row image of " + shape->qualified + " lacks key column " + key};
        }
        columns.push_back(static_cast<size_t>(at - op.fields.begin()));
      }
    } else {
      for (size_t i = 0; i < op.fields.size(); ++i) {
        const std::string& name = op.fields[i].name;
        if (shape->is_generated(name)) continue;
        columns.push_back(i);
        names.push_back(name);
      }
      if (statement.node == "InsertStmt") note_sequence_values(*shape, op);
    }
    std::vector<uint32_t> types;
    std::vector<uint16_t> formats;
    for (size_t column : columns) {
      types.push_back(protocol::portable_type(op.fields[column].type_oid));
      formats.push_back(op.fields[column].format);
    }
    // An UPDATE of a parent by inheritance returned its children's rows too, which an upsert
    // would write into the parent: its rows are updated by key where they are. So are an
    // UPDATE's rows of a table whose triggers tell an INSERT from an UPDATE, and an INSERT's
    // are inserted (not upserted): the secondary fires the triggers the primary did. Several
    // rows go by one UPDATE, which fires statement triggers once as the primary's did, unless
    // their keys repeat (a parent's and a child's row): then an UPDATE each.
    bool by_key = update && !keyless && (shape->inheriting_children || shape->kind_triggers);
    bool one_update = by_key && op.rows.size() > 1 && keys_distinct(*shape, op);
    bool deleting = statement.image_op == protocol::RowImageOp::kDelete;
    bool inserting = !update && !deleting && shape->kind_triggers && statement.set_columns.empty();
    enum class Write { kUpsert, kInsert, kUpdate, kDelete };
    auto sql = [&](Write kind, size_t rows, std::span<const uint32_t> row_types = {}) {
      switch (kind) {
      case Write::kDelete: return protocol::delete_sql(*shape, rows);
      case Write::kUpdate: return protocol::update_sql(*shape, names, rows, row_types);
      case Write::kInsert: return protocol::insert_sql(*shape, names, rows);
      case Write::kUpsert: break;
      }
      return protocol::upsert_sql(*shape, names, rows);
    };
    Write kind = deleting    ? Write::kDelete
                 : by_key    ? Write::kUpdate
                 : inserting ? Write::kInsert
                             : Write::kUpsert;
    if (by_key && sql(kind, 1).empty()) continue; // it sets key columns only: done above
    in_extended = true;
    // The statements writing `write`'s rows as `as`.
    auto set_statements = [&](RowWrite& write, Write as) {
      write.per_statement = as == Write::kUpdate && !one_update
                                ? 1
                                : protocol::rows_per_statement(write.columns.size());
      if (size_t rows = op.rows.size(); rows == 1 || write.per_statement == 1) {
        write.prepared = prepared_name(sql(as, 1), write.types, out, new_names);
      } else {
        size_t full = write.per_statement;
        if (rows >= full) write.full = sql(as, full, write.types);
        if (rows % full != 0) write.last = sql(as, rows % full, write.types);
      }
    };
    RowWrite write;
    write.index = index;
    write.types = std::move(types);
    write.formats = std::move(formats);
    write.columns = std::move(columns);
    set_statements(write, kind);
    write_rows(write, deleting || by_key || inserting);
    // Written first with the secondary's triggers on, as they ran on the primary (AFTER
    // triggers: a counter, an audit row; BEFORE triggers filling a column only it has), then
    // over the rows those wrote (an upsert, where the first was a plain INSERT).
    if (shape->rewriting_triggers && shape->may_disable_triggers && !keyless && !deleting) {
      if (inserting) {
        RowWrite upsert;
        upsert.index = index;
        upsert.types = write.types;
        upsert.formats = write.formats;
        upsert.columns = write.columns;
        set_statements(upsert, Write::kUpsert);
        rewrites.push_back(std::move(upsert));
      } else {
        rewrites.push_back(std::move(write));
      }
    }
    // An UPDATE leaves the columns a view hides as they were, unless a trigger sets them.
    if (!shape->hidden_chosen.empty() && !deleting &&
        (statement.node == "InsertStmt" || shape->rewriting_triggers)) {
      lacking.push_back(index);
    }
    services_.metrics().mirrored(MirrorKind::kRowImage).Increment();
  }
  rewrite_without_triggers();
  end_extended();
  if (block) {
    protocol::append_query(out, "COMMIT");
    ++ready_expected;
    units.push_back(Unit{});
  }

  if (out.empty()) { // every image was empty: nothing changed
    connection_->session.transaction_status = 'I';
    co_return Ok{};
  }
  Stream& stream = connection_->session.stream;
  if (auto ec = co_await stream.write_all(out); ec) {
    drop_connection();
    co_return Error{"lost the secondary connection: " + ec.message()};
  }
  maybe_applied = true; // until the answers say otherwise
  sent_unanswered_ = true;
  std::deque<std::string> unconfirmed(new_names.begin(), new_names.end());
  std::string error;
  std::string last_tag;
  size_t unit = 0;
  while (ready_expected > 0) {
    auto frame = co_await connection_->reader.read_frame();
    if (!frame) {
      drop_connection();
      co_return Error{"lost the secondary connection: " + frame.error()};
    }
    switch (frame->tag) {
    case '1':
      if (!unconfirmed.empty()) unconfirmed.pop_front();
      break;
    case 'C': {
      last_tag = std::string(frame->body.substr(0, frame->body.find('\0')));
      if (error.empty() && unit < units.size() && units[unit].expected_rows) {
        auto rows = protocol::affected_rows(last_tag);
        if (rows && *rows != *units[unit].expected_rows) {
          units[unit].secondary_rows = *rows;
          divergent.push_back(units[unit]);
        }
      }
      ++unit;
      break;
    }
    case 'I': ++unit; break;
    case 'E':
      if (error.empty()) error = describe_error(frame->body);
      ++unit;
      break;
    case 'Z':
      --ready_expected;
      connection_->session.transaction_status = frame->body.empty() ? '?' : frame->body[0];
      break;
    default: break;
    }
  }
  sent_unanswered_ = false;
  for (const std::string& key : unconfirmed) {
    if (!key.empty()) connection_->prepared.erase(key);
  }
  // An error rolls an atomic batch back whole; statements run one by one keep what went before.
  maybe_applied = !atomic && !error.empty();
  if (!error.empty() || (block && last_tag != "COMMIT")) {
    // Running a PREPARE again would fail, skipping it might miss one: a new connection
    // replays the session's statements afresh.
    if (lasting_settings_sent) drop_connection();
    co_return Error{error.empty() ? "the secondary rolled the transaction back" : error};
  }
  // Not on failure: settings roll back with the transaction, and running one again is harmless.
  session_applied_ = settings_sent;
  co_return Ok{};
}

asio::awaitable<void> SecondaryLink::commit(bool atomic) {
  if (!pending_.empty()) {
    MirrorOps ops = std::move(pending_);
    pending_.clear();
    pending_bytes_ = 0;
    set_aside_lost_temporaries(ops, Journaling::kOpenTransaction);
    if (groupable(ops, atomic)) {
      ops = co_await apply_together(std::move(ops), Journaling::kOpenTransaction);
    } else {
      co_await apply_batch(ops, atomic, Journaling::kOpenTransaction);
    }
    committed_ahead_ = std::move(ops);
  }
  // What the secondary missed is on disk before the primary commits it.
  if (journal_unflushed()) co_await journal_flushed();
}

void SecondaryLink::primary_answered_commit(bool committed, const std::string& error) {
  MirrorOps ops = std::exchange(committed_ahead_, {});
  if (committed || ops.empty()) return;
  MirrorOps undone;
  for (MirrorOp& op : ops) {
    if (!op.ddl) {
      undone.push_back(std::move(op));
    } else {
      log_ddl_rolled_back(op.sql, error);
    }
  }
  // The primary's transaction has ended: the replayer may take them at once. The secondary
  // committed them (those it failed journaled themselves), so their entries say they may be
  // applied: a keyless table's rows are reconciled by count, never inserted once more.
  journal_ops(undone, MirrorFailure::kPrimaryCommitFailed, error, Journaling::kEndedTransaction,
              true);
}

void SecondaryLink::log_ddl_rolled_back(const std::string& sql, const std::string& error) const {
  spdlog::error("session {}: the secondary committed DDL the primary then rolled back ({}); "
                "undo it there by hand: {}",
                peer_, error, sql);
}

void SecondaryLink::primary_prepared(const std::string& key) {
  MirrorOps ops = std::exchange(committed_ahead_, {});
  if (ops.empty()) return;
  PreparedWrites writes;
  MirrorOps rows;
  for (MirrorOp& op : ops) {
    if (op.ddl) {
      writes.ddl.push_back(std::move(op.sql));
    } else {
      rows.push_back(std::move(op));
    }
  }
  // Built now, with the session's settings and temporary tables as the writes ran; the
  // secondary committed them, so they may be applied (see primary_answered_commit).
  writes.entries =
      journal_entries(rows, MirrorFailure::kPreparedRolledBack, kPreparedRolledBack, true);
  for (const std::string& forgotten :
       services_.prepared_transactions().keep(key, std::move(writes))) {
    spdlog::warn("session {}: too many prepared transactions unfinished; switchyard forgot the "
                 "writes of {}, which stay on the secondary should they be rolled back",
                 peer_, forgotten.substr(forgotten.rfind('\0') + 1));
  }
}

void SecondaryLink::prepared_transaction_finished(const std::string& key, bool committed) {
  std::optional<PreparedWrites> writes = services_.prepared_transactions().take(key);
  if (committed || !writes) return;
  for (const std::string& sql : writes->ddl)
    log_ddl_rolled_back(sql, kPreparedRolledBack);
  // Its transaction has ended: the replayer may take them at once.
  hold_until_committed(record_in_journal(writes->entries, MirrorFailure::kPreparedRolledBack,
                                         kPreparedRolledBack, &journal_ticket_),
                       Journaling::kEndedTransaction);
}

bool SecondaryLink::groupable(const MirrorOps& ops, bool atomic) const {
  // A connection of the session's own may hold its temp tables, which would catch other
  // members' writes to tables of the same name: such a session applies alone.
  bool own_connection = connection_ && !borrowed_;
  return atomic && !own_connection && may_share(ops) &&
         std::all_of(ops.begin(), ops.end(), fits_implicit_transaction);
}

asio::awaitable<MirrorOps> SecondaryLink::apply_together(MirrorOps ops, Journaling journaling) {
  co_await end_read_transaction(); // the writes get a transaction of their own
  asio::steady_timer woken(executor_, Clock::time_point::max());
  auto member = std::make_shared<GroupMember>(*this, std::move(ops), woken);
  ApplyGroups& groups = services_.apply_groups();
  if (groups.join(login_key_, member)) {
    spawn(executor_, apply_groups(groups, login_key_), "secondary group apply");
  }
  // Not cancellable: the group holds this session's writes (and this link) until it is
  // applied, within mirror.timeout.
  if (!member->done) {
    co_await woken.async_wait(asio::bind_cancellation_slot(asio::cancellation_slot(), use_tuple));
  }
  if (member->outcome) {
    journal_outcome(member->ops, *member->outcome, journaling);
  } else {
    co_await apply_batch(member->ops, true, journaling);
  }
  co_return std::move(member->ops);
}

namespace {

//! Tells a member its group is done, on its session's thread (`here` is the applier's).
template <class Member> void wake(const std::shared_ptr<Member>& member, const void* here) {
  auto done = [member] {
    member->done = true;
    member->woken.cancel();
  };
  if (member->thread == here) {
    done();
  } else {
    asio::post(member->executor, done);
  }
}

} // namespace

asio::awaitable<void> SecondaryLink::apply_groups(ApplyGroups& groups, std::string key) {
  const void* here = &asio::query(co_await asio::this_coro::executor, asio::execution::context);
  while (true) {
    ApplyGroups::Turn turn = groups.next(key, here, kMaxMergedCommits, kMaxGroupedWrites);
    if (turn.elsewhere) {
      // Only another thread's sessions wait: one of their links applies, on their thread.
      const auto& next = static_cast<const GroupMember&>(*turn.elsewhere);
      spawn(next.executor, apply_groups(groups, std::move(key)), "secondary group apply");
      co_return;
    }
    if (turn.group.empty()) co_return;
    std::vector<std::shared_ptr<GroupMember>> group;
    MirrorOps ops;
    for (auto& entry : turn.group) {
      group.push_back(std::static_pointer_cast<GroupMember>(std::move(entry)));
      std::move(group.back()->ops.begin(), group.back()->ops.end(), std::back_inserter(ops));
    }
    // The first member's link, of this thread, applies the group: its session waits, idle.
    SecondaryLink& applier = group.front()->link;
    ApplyOutcome outcome;
    try {
      outcome = co_await applier.try_apply(ops, true);
    } catch (const std::exception& e) { // the members must not wait forever
      applier.drop_connection();        // in whatever state the exception left it
      outcome.kind = ApplyOutcome::Kind::kRefused;
      outcome.error = e.what();
    }
    if (group.size() > 1) {
      applier.services_.metrics().grouped_commits().Increment(
          static_cast<double>(group.size() - 1));
    }
    size_t begin = 0;
    for (auto& member : group) {
      size_t end = begin + member->ops.size();
      std::move(ops.begin() + static_cast<std::ptrdiff_t>(begin),
                ops.begin() + static_cast<std::ptrdiff_t>(end), member->ops.begin());
      // A refusal rolled back every member's writes for one member's sake: each tries alone,
      // as one refused for what DDL under way adds does (it may wait for it, see apply_batch).
      if (outcome.kind != ApplyOutcome::Kind::kRefused ||
          (group.size() == 1 && !lacks_what_ddl_adds(outcome))) {
        ApplyOutcome own{outcome.kind, outcome.error, outcome.maybe_applied, {}, {}};
        for (const Unit& unit : outcome.divergent) {
          if (unit.op < begin || unit.op >= end) continue;
          own.divergent.push_back(unit);
          own.divergent.back().op -= begin;
        }
        for (size_t op : outcome.lacking) {
          if (op >= begin && op < end) own.lacking.push_back(op - begin);
        }
        member->outcome = std::move(own);
      }
      wake(member, here);
      begin = end;
    }
  }
}

bool SecondaryLink::lacks_what_ddl_adds(const ApplyOutcome& outcome) {
  return outcome.kind == ApplyOutcome::Kind::kRefused &&
         (outcome.error.starts_with(kUndefinedColumn) ||
          outcome.error.starts_with(kUndefinedTable));
}

asio::awaitable<bool> SecondaryLink::secondary_ddl_since(uint64_t applied) {
  auto timeout = runtime_->config->mirror.timeout;
  auto sent = Clock::time_point(Clock::duration(services_.ddl_sent_at().load()));
  auto deadline = Clock::now() + timeout;
  asio::steady_timer poll(executor_);
  while (services_.secondary_ddl_applied().load() == applied) {
    if (Clock::now() - sent > timeout || Clock::now() >= deadline) co_return false;
    poll.expires_after(kDdlPoll);
    co_await poll.async_wait(use_tuple);
  }
  co_return true;
}

asio::awaitable<SecondaryLink::ApplyOutcome> SecondaryLink::try_apply(const MirrorOps& ops,
                                                                      bool atomic) {
  ApplyOutcome outcome;
  if (secondary_failed_recently()) {
    outcome.kind = ApplyOutcome::Kind::kDown;
    outcome.error = "the secondary failed moments ago; retrying later";
    co_return outcome;
  }
  // A batch of the async applier's reaching the secondary before the entries an earlier one
  // left in the journal are on disk would, after a crash, leave the secondary with the later
  // writes and no record of the earlier ones it missed.
  if (applier_ticket_ != 0) co_await flushed(applier_ticket_);
  auto started = Clock::now();
  std::vector<Unit> units;
  asio::steady_timer timer(co_await asio::this_coro::executor, runtime_->config->mirror.timeout);
  auto result = co_await (
      apply(ops, atomic, units, outcome.divergent, outcome.lacking, outcome.maybe_applied) ||
      timer.async_wait(use_tuple));
  if (result.index() == 1) {
    services_.sequence_marks().put_back(database_key_, advances_);
    drop_connection();
    services_.secondary_down_until() = ticks(Clock::now() + kSecondaryBackoff);
    outcome.kind = ApplyOutcome::Kind::kTimeout;
    outcome.error = "no answer from the secondary within mirror.timeout";
    co_return outcome;
  }
  Status& applied = std::get<0>(result);
  bool unreachable = !connection_; // else the secondary answered, if with a refusal
  give_back_shared();
  if (!applied) {
    services_.sequence_marks().put_back(database_key_, advances_);
    if (unreachable) services_.secondary_down_until() = ticks(Clock::now() + kSecondaryBackoff);
    outcome.kind = unreachable ? ApplyOutcome::Kind::kUnreachable : ApplyOutcome::Kind::kRefused;
    outcome.error = applied.error();
    co_return outcome;
  }
  std::chrono::duration<double> elapsed = Clock::now() - started;
  services_.metrics().mirror_seconds().Observe(elapsed.count());
  note_temporaries(ops);
  bool ddl = false;
  bool shared_ddl = false; // DDL that only created temporary objects is this session's own
  for (const MirrorOp& op : ops) {
    ddl = ddl || op.ddl;
    shared_ddl = shared_ddl || (op.ddl && !op.statement.private_ddl);
  }
  if (ddl) {
    ++services_.secondary_ddl_applied();
    if (shared_ddl) {
      ++services_.schema_epoch();
    } else {
      ++private_ddl_;
    }
  }
  co_return outcome;
}

void SecondaryLink::journal_outcome(const MirrorOps& ops, const ApplyOutcome& outcome,
                                    Journaling journaling) {
  switch (outcome.kind) {
  case ApplyOutcome::Kind::kApplied:
    journal_what_images_lacked(ops, outcome.lacking, journaling);
    break;
  case ApplyOutcome::Kind::kDown:
    journal_ops(ops, MirrorFailure::kConnect, outcome.error, journaling);
    return;
  case ApplyOutcome::Kind::kTimeout:
    journal_ops(ops, MirrorFailure::kTimeout, outcome.error, journaling, outcome.maybe_applied);
    return;
  case ApplyOutcome::Kind::kUnreachable:
  case ApplyOutcome::Kind::kRefused:
    journal_ops(ops,
                outcome.kind == ApplyOutcome::Kind::kUnreachable ? MirrorFailure::kConnect
                                                                 : MirrorFailure::kSecondaryError,
                outcome.error, journaling, outcome.maybe_applied);
    return;
  }
  if (outcome.divergent.empty()) return;
  // Journal just the rows (or statements) whose counts differed.
  MirrorOps differing;
  std::string note;
  for (const Unit& unit : outcome.divergent) {
    if (ops[unit.op].statement.fills_table != protocol::TableFill::kNone) continue; // copied
    MirrorOp op = ops[unit.op];
    if (op.kind == MirrorOp::Kind::kImage) {
      const auto& rows = ops[unit.op].rows;
      auto first = rows.begin() + static_cast<std::ptrdiff_t>(unit.row);
      op.rows.assign(first, first + static_cast<std::ptrdiff_t>(unit.rows));
    }
    differing.push_back(std::move(op));
    note += "statement " + std::to_string(unit.op) + ": primary " +
            std::to_string(unit.expected_rows.value_or(0)) + " rows, secondary " +
            std::to_string(unit.secondary_rows.value_or(0)) + "; ";
  }
  if (differing.empty()) return;
  journal_ops(differing, MirrorFailure::kRowCount, "affected rows differ: " + note, journaling);
}

void SecondaryLink::note_sent(bool ddl_on_its_own) {
  if (runtime_->config->write_mode != config::WriteMode::kAsync) return;
  CommitOrder& order = services_.commit_order();
  if (ddl_on_its_own && !ddl_barrier_) {
    ddl_barrier_ = order.take_ddl_barrier();
    transaction_began_.reset(); // what the session sends next comes after its DDL
  } else if (!transaction_began_) {
    transaction_began_ = order.position();
  }
}

std::optional<uint64_t> SecondaryLink::answered_ddl_barrier() {
  if (ddl_barrier_) services_.commit_order().ddl_answered(*ddl_barrier_);
  return std::exchange(ddl_barrier_, std::nullopt);
}

void SecondaryLink::release_ddl_barrier() {
  if (auto barrier = answered_ddl_barrier()) release(*barrier);
}

void SecondaryLink::release(uint64_t ticket) {
  CommitOrder& order = services_.commit_order();
  order.done(ticket);
  services_.metrics().async_queue().Set(static_cast<double>(order.pending()));
}

void SecondaryLink::reserve() {
  std::optional<uint64_t> began = std::exchange(transaction_began_, std::nullopt);
  std::optional<uint64_t> ddl_barrier = answered_ddl_barrier();
  if (pending_.empty() || reserved_) {
    if (ddl_barrier) release(*ddl_barrier); // the DDL failed
    return;
  }
  Batch batch;
  batch.ops = std::move(pending_);
  batch.bytes = std::exchange(pending_bytes_, 0);
  pending_.clear();
  std::vector<uint64_t> keys;
  bool barrier = ddl_barrier || !row_keys(batch.ops, keys);
  if (barrier) services_.metrics().async_barriers().Increment();
  batch.ticket = ddl_barrier ? *ddl_barrier : services_.commit_order().take(keys, barrier, began);
  batch.scoped_settings =
      std::any_of(session_statements_.begin(), session_statements_.end(),
                  [&](const auto& s) { return s.transaction_scoped && s.seq > transaction_seq_; });
  reserved_ = std::move(batch);
}

void SecondaryLink::hand_over(bool committed) {
  if (!reserved_) return;
  Batch batch = std::move(*reserved_);
  reserved_.reset();
  if (!committed) {
    release(batch.ticket); // the primary rolled it back
    return;
  }
  batch.settles = std::exchange(unsettled_, {});
  enqueue(std::move(batch));
}

void SecondaryLink::hand_over_applied() {
  std::optional<uint64_t> ddl_barrier = answered_ddl_barrier();
  if (pending_.empty()) {
    if (ddl_barrier) release(*ddl_barrier); // the DDL failed
    return;
  }
  Batch batch;
  batch.ops = std::move(pending_);
  batch.bytes = std::exchange(pending_bytes_, 0);
  pending_.clear();
  batch.atomic = false;
  services_.metrics().async_barriers().Increment();
  batch.ticket = ddl_barrier ? *ddl_barrier : services_.commit_order().take({}, true);
  enqueue(std::move(batch));
}

void SecondaryLink::enqueue(Batch batch) {
  batch.committed_at = Clock::now();
  CommitOrder& order = services_.commit_order();
  auto& metrics = services_.metrics();
  const config::MirrorSettings& mirror = runtime_->config->mirror;
  std::atomic<uint64_t>& queued_bytes = services_.async_queue_bytes();
  const char* full = nullptr;
  if (order.pending() > mirror.async_queue) {
    full = "more committed transactions await the secondary than mirror.async_queue allows";
  } else if (queued_bytes.fetch_add(batch.bytes) + batch.bytes > mirror.async_queue_bytes) {
    queued_bytes -= batch.bytes;
    full = "the committed transactions awaiting the secondary would keep more memory than "
           "mirror.async_queue_bytes allows";
  }
  if (full != nullptr) {
    // Full: the writes wait in the journal instead of memory, released to the replayer in
    // their turn so no earlier write can land after them.
    batch.spilled = journal(batch.ops, MirrorFailure::kQueueFull, full,
                            nullptr); // no more durable than the queue it stands in for
    batch.ops.clear();
    batch.ops.shrink_to_fit();
    batch.bytes = 0;
  }
  metrics.async_queue_bytes().Increment(static_cast<double>(batch.bytes));
  queue_.push_back(std::move(batch));
  metrics.async_queue().Set(static_cast<double>(order.pending()));
  if (!applying_) {
    applying_ = true;
    spawn(executor_, apply_queue(), "async mirror");
  }
}

const protocol::TableShape*
SecondaryLink::known_shape(const MirrorOp& op, std::optional<protocol::TableShape>& shared) const {
  std::string own_key = shape_key(op);
  if (auto shape = shapes_.find(own_key); shape != shapes_.end()) return &shape->second;
  if (std::string key = shared_shape_key(op, own_key); !key.empty()) {
    shared =
        services_.shapes().find(key, services_.schema_epoch().load(), ShapeRegistry::Clock::now());
    if (shared) return &*shared;
  }
  return nullptr;
}

bool SecondaryLink::row_keys(const MirrorOps& ops, std::vector<uint64_t>& keys) const {
  for (const MirrorOp& op : ops) {
    if (op.statement.transaction != protocol::TransactionOp::kNone) continue; // savepoints
    if (op.kind != MirrorOp::Kind::kImage) return false;
    std::optional<protocol::TableShape> shared;
    const protocol::TableShape* known = known_shape(op, shared);
    if (known == nullptr || calls_writing_functions(known, op)) return false;
    const std::string& table = known->qualified; // a view's rows are its table's
    const protocol::Statement& statement = op.statement;
    const std::vector<std::string>& key_columns = known->key_columns;
    if (key_columns.empty()) {
      if (statement.node == "InsertStmt") continue; // new rows without a key commute
      return false;
    }
    std::vector<size_t> positions;
    for (const std::string& column : key_columns) {
      if (std::find(statement.set_columns.begin(), statement.set_columns.end(), column) !=
          statement.set_columns.end()) {
        return false; // a key change: the old key matters too
      }
      auto at = std::find_if(op.fields.begin(), op.fields.end(),
                             [&](const auto& field) { return field.name == column; });
      if (at == op.fields.end()) return false;
      positions.push_back(static_cast<size_t>(at - op.fields.begin()));
    }
    for (const auto& row : op.rows) {
      std::string key = table;
      for (size_t position : positions) {
        key += '\0';
        if (row[position]) key += *row[position];
      }
      keys.push_back(routing::stable_hash(key));
    }
  }
  return true;
}

bool SecondaryLink::mergeable(const Batch& batch) {
  return !batch.spilled && batch.atomic && !batch.scoped_settings &&
         std::all_of(batch.ops.begin(), batch.ops.end(), fits_implicit_transaction);
}

asio::awaitable<void> SecondaryLink::apply_queue() {
  CommitOrder& order = services_.commit_order();
  auto& metrics = services_.metrics();
  while (!queue_.empty()) {
    Batch& head = queue_.front();
    co_await order.wait_ready(head.ticket);
    size_t taken = 1;
    if (head.spilled) {
      if (backfill::DivergenceJournal* j = services_.journal()) j->settle(*head.spilled);
    } else {
      // The session's later commits waiting behind this one go along in the same secondary
      // transaction while all they wait for is done or in it: one round trip and one commit
      // on the secondary for many, so a secondary that fell behind catches up. Should it
      // fail, every one of them is journaled, as each would have been.
      std::vector<uint64_t> tickets{head.ticket};
      size_t most = mergeable(head) ? std::min(queue_.size(), kMaxMergedCommits) : 1;
      while (taken < most && mergeable(queue_[taken]) &&
             order.ready_with(queue_[taken].ticket, tickets)) {
        tickets.push_back(queue_[taken++].ticket);
      }
      MirrorOps ops = std::move(head.ops);
      for (size_t i = 1; i < taken; ++i)
        std::move(queue_[i].ops.begin(), queue_[i].ops.end(), std::back_inserter(ops));
      set_aside_lost_temporaries(ops, Journaling::kApplier);
      if (taken > 1) metrics.async_merged_commits().Increment(static_cast<double>(taken - 1));
      // Its writes must not reach the secondary before the entries earlier batches left in
      // the journal are on disk (see try_apply). A group apply, run by another session's
      // link, would not wait for them, so the wait is here. While the secondary is down the
      // batch goes to the journal too and need not wait: applied alone, its try_apply still
      // waits should the secondary be back by then.
      if (applier_ticket_ != 0 && !secondary_failed_recently()) {
        co_await flushed(applier_ticket_);
      }
      // Other sessions' commits that are ready too may share the secondary transaction.
      if (applier_ticket_ == 0 && groupable(ops, head.atomic)) {
        co_await apply_together(std::move(ops), Journaling::kApplier);
      } else {
        co_await apply_batch(ops, head.atomic, Journaling::kApplier);
      }
    }
    for (; taken > 0; --taken) {
      settle(queue_.front());
      uncount(queue_.front());
      std::chrono::duration<double> lag = Clock::now() - queue_.front().committed_at;
      metrics.async_lag_seconds().Observe(lag.count());
      order.done(queue_.front().ticket);
      queue_.pop_front();
    }
    metrics.async_queue().Set(static_cast<double>(order.pending()));
  }
  applying_ = false;
  applied_.cancel(); // wakes close(), waiting for the queue to empty
}

asio::awaitable<void> SecondaryLink::apply_batch(const MirrorOps& ops, bool atomic,
                                                 Journaling journaling) {
  if (ops.empty()) co_return;
  co_await end_read_transaction(); // the writes get a transaction of their own
  uint64_t ddl_applied = services_.secondary_ddl_applied().load();
  ApplyOutcome outcome = co_await try_apply(ops, atomic);
  // A write another session's DDL made possible: the primary ran it after that DDL, the
  // secondary before its copy of the DDL (autocommit DDL reaches the secondary after the
  // primary committed it), and refused it for the column or table it lacks. In sync mode it
  // is applied again once the secondary has the DDL, rather than journaled and counted as
  // the secondary's error. (The async queue applies in commit order; the DDL may be behind.)
  if (lacks_what_ddl_adds(outcome) && runtime_->config->write_mode == config::WriteMode::kSync &&
      co_await secondary_ddl_since(ddl_applied)) {
    services_.metrics().mirror_retried_after_ddl().Increment();
    outcome = co_await try_apply(ops, atomic);
  }
  journal_outcome(ops, outcome, journaling);
}

std::vector<const protocol::TargetTable*> SecondaryLink::relations_of(const MirrorOp& op) {
  std::vector<const protocol::TargetTable*> relations;
  auto of_the_session = [](const protocol::TargetTable& t) {
    return !t.name.empty() && (t.schema.empty() || t.schema == "pg_temp");
  };
  for (const protocol::TargetTable& relation : op.statement.names_relations) {
    if (of_the_session(relation)) relations.push_back(&relation);
  }
  if (op.statement.names_relations.empty() && of_the_session(op.statement.target))
    relations.push_back(&op.statement.target);
  for (const protocol::TargetTable& relation : op.statement.written_tables) {
    if (of_the_session(relation)) relations.push_back(&relation);
  }
  return relations;
}

bool SecondaryLink::session_only(const MirrorOp& op) {
  if (op.statement.private_ddl) return true;
  return !op.ddl && op.statement.transaction == protocol::TransactionOp::kNone &&
         !op.statement.target.name.empty() && op.statement.target.temporary;
}

bool SecondaryLink::statement_write(const MirrorOp& op) {
  return op.kind == MirrorOp::Kind::kStatement && !op.ddl;
}

bool SecondaryLink::names_lost_temporary(const MirrorOp& op) const {
  if (lost_temporaries_.empty()) return false;
  // A CREATE of one: the primary had none of the name left, so the secondary gets it anew.
  // DDL the primary said acts on relations other sessions see runs as the client ran it; DDL
  // not asked about, by a lost name, acted on the session's temporary relation on the primary.
  if (op.ddl && (op.primary_said_shared || op.statement.names_relations.empty())) return false;
  // A DROP of the session's own relation (the primary said so) that this connection did not
  // create was on one lost since; an index's name is not noted (PostgreSQL may have chosen
  // it), so one on a temporary table lost with its connection counts here too. Set aside
  // needlessly, such a DROP leaves an index on the secondary's own temporary table.
  bool drop = op.statement.private_ddl && op.statement.node == "DropStmt";
  return std::ranges::any_of(relations_of(op), [&](const protocol::TargetTable* relation) {
    return lost_temporaries_.contains(relation->name) ||
           (drop && !temporary_names_.contains(relation->name));
  });
}

void SecondaryLink::note_temporaries(const MirrorOps& ops) {
  for (const MirrorOp& op : ops) {
    bool created = op.statement.private_ddl && op.statement.names_relations.empty();
    bool dropped = op.statement.node == "DropStmt";
    if (!created && !dropped) continue;
    for (const protocol::TargetTable* relation : relations_of(op)) {
      if (created) {
        // ON COMMIT DROP: gone again once the ops, a transaction's, were applied.
        if (!op.statement.dropped_at_commit) temporary_names_.insert(relation->name);
      } else {
        temporary_names_.erase(relation->name);
      }
      lost_temporaries_.erase(relation->name);
    }
  }
}

void SecondaryLink::set_aside_lost_temporaries(MirrorOps& ops, Journaling journaling) {
  // A connection lost with the session's temporary tables says so now (ensure_connected
  // would find out only after the ops were set aside).
  if (!temporary_names_.empty()) drop_if_closed();
  if (lost_temporaries_.empty()) return;
  MirrorOps kept;
  MirrorOps writes; // row images of a table by the bare name of a lost one
  size_t dropped = 0;
  for (MirrorOp& op : ops) {
    if (!names_lost_temporary(op)) {
      kept.push_back(std::move(op));
    } else if (session_only(op) || op.ddl || statement_write(op)) {
      ++dropped;
      if (op.statement.node == "DropStmt") { // the primary has none of these names left
        for (const protocol::TargetTable* relation : relations_of(op))
          lost_temporaries_.erase(relation->name);
      }
    } else {
      writes.push_back(std::move(op));
    }
  }
  ops = std::move(kept);
  if (dropped > 0) {
    services_.metrics()
        .mirror_failures(MirrorFailure::kTemporaryLost)
        .Increment(static_cast<double>(dropped));
    static LogLimiter limiter;
    if (std::string note; limiter.due(note)) {
      spdlog::warn("session {}: {} statements on temporary tables the secondary connection lost "
                   "not mirrored (they were the session's own){}",
                   peer_, dropped, note);
    }
  }
  if (!writes.empty()) {
    journal_ops(writes, MirrorFailure::kTemporaryLost,
                "the secondary connection that held the session's temporary tables was lost",
                journaling);
  }
}

std::optional<uint64_t> SecondaryLink::journal(const MirrorOps& ops, MirrorFailure reason,
                                               const std::string& error, uint64_t* ticket,
                                               bool maybe_applied) {
  return record_in_journal(journal_entries(ops, reason, error, maybe_applied), reason, error,
                           ticket);
}

std::optional<uint64_t>
SecondaryLink::record_in_journal(const std::vector<backfill::JournalEntry>& entries,
                                 MirrorFailure reason, const std::string& error, uint64_t* ticket) {
  services_.metrics().mirror_failures(reason).Increment();
  auto offset = append_to_journal(entries, ticket);
  static LogLimiter limiter;
  if (std::string note; offset && limiter.due(note)) {
    spdlog::warn("session {}: {} writes journaled for the secondary ({}): {}{}", peer_,
                 entries.size(), monitoring::to_string(reason), error, note);
  }
  return offset;
}

std::vector<backfill::JournalEntry> SecondaryLink::journal_entries(const MirrorOps& ops,
                                                                   MirrorFailure reason,
                                                                   const std::string& error,
                                                                   bool maybe_applied) {
  std::vector<backfill::JournalEntry> entries;
  std::set<std::string> gone_at_commit; // temporary tables these ops created ON COMMIT DROP
  for (const MirrorOp& op : ops) {
    // Savepoints only shape the transaction; the replayer re-reads each row as committed.
    if (op.statement.transaction != protocol::TransactionOp::kNone) continue;
    // What the secondary missed of a temporary relation, the session's copy there lacks.
    bool temporary = false;
    for (const protocol::TargetTable* relation : relations_of(op)) {
      const std::string& name = relation->name;
      if (!op.statement.private_ddl && !relation->temporary && !temporary_names_.contains(name) &&
          !lost_temporaries_.contains(name) && !gone_at_commit.contains(name))
        continue;
      temporary = true;
      if (op.statement.dropped_at_commit) { // its transaction's ops are these: it goes with them
        gone_at_commit.insert(name);
        lost_temporaries_.erase(name);
      } else if (!gone_at_commit.contains(name)) {
        lost_temporaries_.insert(name);
      }
    }
    // A statement (a COPY, not a row image the replayer re-reads from the primary) on such a
    // name could run nowhere but on the session's own connection; so could DDL acting on one
    // (not creating it) that the primary was not asked about.
    bool ddl_on_temporary =
        op.ddl && !op.primary_said_shared && !op.statement.names_relations.empty();
    if (session_only(op) || (temporary && (statement_write(op) || ddl_on_temporary))) continue;
    backfill::JournalEntry entry = entry_for(op);
    entry.reason = monitoring::to_string(reason);
    entry.error = error;
    entry.maybe_applied = maybe_applied;
    if (op.kind == MirrorOp::Kind::kImage && !op.statement.target.temporary) {
      append_row_entries(op, entry, entries);
      // What the functions it called wrote elsewhere no entry names: reported for repair.
      std::optional<protocol::TableShape> shared;
      if (calls_writing_functions(known_shape(op, shared), op)) {
        backfill::JournalEntry statement = entry_for(op);
        statement.reason = entry.reason;
        statement.error = error;
        statement.maybe_applied = maybe_applied;
        entries.push_back(statement_entry(op, std::move(statement)));
      }
      continue;
    }
    // The primary gave these ids: a statement the secondary runs later still draws after them.
    for (const auto& [sequence, value] : op.sequence_values)
      services_.sequence_marks().note(database_key_, sequence, value);
    if (op.statement.copy_from) {
      // The rows it wrote, by their keys in its data; else its table is refreshed whole.
      if (auto rows = copy_row_entries(op, entry)) {
        std::move(rows->begin(), rows->end(), std::back_inserter(entries));
        continue;
      }
      entry.kind = backfill::JournalEntry::Kind::kTable;
      entry.table = op.statement.target.qualified();
      entry.reason = "filled_by_copy";
      entries.push_back(std::move(entry));
      continue;
    }
    if (op.large_object) {
      entry.kind = backfill::JournalEntry::Kind::kLargeObject;
      entry.large_object = *op.large_object;
      entries.push_back(std::move(entry));
      continue;
    }
    // No image carries the rows of a writing CTE or a MERGE: the tables it wrote are
    // brought in line with the primary's, whole.
    if (!op.ddl && !op.statement.written_tables.empty()) {
      entry.kind = backfill::JournalEntry::Kind::kTable;
      entry.reason = "written_by_statement";
      for (const protocol::TargetTable& table : op.statement.written_tables) {
        entry.table = table.qualified();
        entries.push_back(entry);
      }
      continue;
    }
    entries.push_back(statement_entry(op, std::move(entry)));
    if (op.statement.fills_table != protocol::TableFill::kNone) {
      entries.push_back(table_copy_entry(op));
    }
  }
  return entries;
}

void SecondaryLink::append_row_entries(const MirrorOp& op, backfill::JournalEntry entry,
                                       std::vector<backfill::JournalEntry>& entries) {
  entry.kind = backfill::JournalEntry::Kind::kRow;
  entry.table = op.statement.target.qualified();
  entry.op = op.statement.image_op == protocol::RowImageOp::kDelete ? "delete"
             : op.statement.node == "InsertStmt"                    ? "insert"
                                                                    : "update";
  for (const auto& field : op.fields) {
    entry.columns.push_back(field.name);
    entry.types.push_back(field.type_oid);
    entry.formats.push_back(field.format);
  }
  entry.statement_rows = static_cast<uint32_t>(op.rows.size());
  entry.assigned = op.statement.set_columns;
  for (const auto& row : op.rows) {
    entry.values = row;
    entries.push_back(entry);
    entry.statement_rows = 0;
    entry.assigned.clear();
  }
}

backfill::JournalEntry SecondaryLink::entry_for(const MirrorOp& op) const {
  backfill::JournalEntry entry;
  entry.missed_by = runtime_->roles_swapped ? "old" : "new";
  entry.user = login_.user;
  entry.database = login_.database;
  entry.fingerprint = protocol::fingerprint(op.sql);
  for (std::string_view setting : settings_of(op))
    entry.settings.emplace_back(setting);
  return entry;
}

backfill::JournalEntry SecondaryLink::statement_entry(const MirrorOp& op,
                                                      backfill::JournalEntry base) {
  base.kind = backfill::JournalEntry::Kind::kStatement;
  base.sql = op.sql;
  base.ddl = op.ddl;
  base.types = op.parameter_types;
  base.formats = op.parameter_formats;
  base.values = op.parameters;
  return base;
}

backfill::JournalEntry SecondaryLink::table_copy_entry(const MirrorOp& op) const {
  backfill::JournalEntry entry = entry_for(op);
  entry.kind = backfill::JournalEntry::Kind::kTable;
  entry.table = op.statement.target.qualified();
  entry.reason = op.statement.fills_table == protocol::TableFill::kQuery ? "filled_by_query"
                                                                         : "filled_by_default";
  return entry;
}

std::optional<std::vector<backfill::JournalEntry>>
SecondaryLink::copy_row_entries(const MirrorOp& op, const backfill::JournalEntry& base) {
  if (op.copy_key.empty() || op.copy_data.empty()) return std::nullopt;
  std::string data;
  data.reserve(copy_data_size(op)); // once: the data may be max_transaction_bytes
  for (const std::string& piece : op.copy_data)
    data += piece;
  const protocol::CopyFormat& format = op.statement.copy_from->format;
  bool binary = format.kind == protocol::CopyFormat::Kind::kBinary;
  std::vector<protocol::CopyRow> rows;
  if (binary) {
    auto tuples = protocol::binary_copy_rows(data);
    if (!tuples) return std::nullopt;
    rows = std::move(*tuples);
  } else {
    rows = protocol::copy_rows(data, format);
  }
  if (rows.empty() || rows.size() > kMaxCopyRowEntries) return std::nullopt;
  backfill::JournalEntry entry = base;
  entry.kind = backfill::JournalEntry::Kind::kRow;
  entry.table = op.statement.target.qualified();
  entry.op = "insert";
  for (const auto& column : op.copy_key) {
    entry.columns.push_back(column.second);
    entry.types.push_back(0); // the replayer's lookup takes the column's
    entry.formats.push_back(binary ? 1 : 0);
  }
  entry.statement_rows = static_cast<uint32_t>(rows.size());
  std::vector<backfill::JournalEntry> entries;
  entries.reserve(rows.size());
  for (const protocol::CopyRow& row : rows) {
    std::string_view line = std::string_view(data).substr(row.begin, row.end - row.begin);
    entry.values.clear();
    if (binary) {
      auto fields = protocol::binary_copy_fields(line.substr(2)); // after the field count
      if (!fields) return std::nullopt;
      for (const auto& column : op.copy_key) {
        if (column.first >= fields->size() || !(*fields)[column.first]) return std::nullopt;
        entry.values.emplace_back(std::string(*(*fields)[column.first]));
      }
    } else {
      std::vector<std::string_view> fields = protocol::copy_fields(line, format);
      for (const auto& column : op.copy_key) {
        if (column.first >= fields.size()) return std::nullopt;
        entry.values.emplace_back(protocol::copy_field_value(fields[column.first], format));
      }
    }
    entries.push_back(entry);
    entry.statement_rows = 0;
  }
  return entries;
}

std::optional<uint64_t>
SecondaryLink::append_to_journal(const std::vector<backfill::JournalEntry>& entries,
                                 uint64_t* ticket) {
  backfill::DivergenceJournal* journal = services_.journal();
  if (journal == nullptr || entries.empty()) return std::nullopt;
  uint64_t offset = 0;
  auto appended = journal->append(entries, &offset);
  if (!appended) {
    spdlog::error("session {}: {} writes missed the secondary and could not be journaled: {}",
                  peer_, entries.size(), appended.error());
    return std::nullopt;
  }
  if (ticket != nullptr) *ticket = *appended;
  auto& metrics = services_.metrics();
  metrics.journal_entries().Increment(static_cast<double>(entries.size()));
  metrics.journal_backlog().Set(static_cast<double>(journal->backlog()));
  return offset;
}

asio::awaitable<void> SecondaryLink::flushed(uint64_t& waited) {
  uint64_t ticket = waited;
  backfill::DivergenceJournal* journal = services_.journal();
  if (ticket == 0 || journal == nullptr) co_return;
  if (!journal->durable(ticket)) {
    Status synced = co_await asio::async_initiate<const asio::use_awaitable_t<>, void(Status)>(
        [journal, ticket](auto handler) {
          // The flusher thread calls back; the session resumes on its own thread.
          auto waiting = std::make_shared<decltype(handler)>(std::move(handler));
          journal->when_durable(ticket, [waiting](Status status) {
            auto executor = asio::get_associated_executor(*waiting);
            asio::post(executor, [waiting, status = std::move(status)]() mutable {
              std::move (*waiting)(std::move(status));
            });
          });
        },
        asio::use_awaitable);
    if (!synced) {
      spdlog::error("session {}: journaled writes the secondary missed may not be on disk: {}",
                    peer_, synced.error());
    }
  }
  // Another append for the same waiter may have come meanwhile.
  if (waited == ticket) waited = 0;
}

void SecondaryLink::journal_what_images_lacked(const MirrorOps& ops,
                                               const std::vector<size_t>& lacking,
                                               Journaling journaling) {
  std::vector<backfill::JournalEntry> entries;
  for (const MirrorOp& op : ops) {
    if (op.statement.fills_table != protocol::TableFill::kNone) {
      entries.push_back(table_copy_entry(op));
    }
    if (op.copy_large_object && op.large_object) {
      backfill::JournalEntry entry = entry_for(op);
      entry.kind = backfill::JournalEntry::Kind::kLargeObject;
      entry.large_object = *op.large_object;
      entry.reason = kImportedOnPrimary;
      entries.push_back(std::move(entry));
    }
  }
  for (size_t index : lacking) {
    const MirrorOp& op = ops[index];
    backfill::JournalEntry entry = entry_for(op);
    entry.reason = kHiddenByView;
    size_t first = entries.size();
    append_row_entries(op, std::move(entry), entries);
    // The images applied any key change already: the rows are only read again.
    for (size_t i = first; i < entries.size(); ++i)
      entries[i].assigned.clear();
  }
  hold_until_committed(append_to_journal(entries, &ticket_of(journaling)), journaling);
}

std::vector<std::string_view> SecondaryLink::settings_of(const MirrorOp& op, uint64_t after) const {
  std::vector<std::string_view> settings;
  for (const SessionStatement& statement : session_statements_) {
    if (statement.seq > op.session_seq) break;
    if (statement.seq <= after) continue;
    if (statement.kind == SessionStatement::Kind::kDiscard && statement.drops_prepared) {
      settings.clear();
    } else if (statement.kind == SessionStatement::Kind::kSetting &&
               (!statement.transaction_scoped || statement.seq > op.transaction_seq)) {
      settings.push_back(statement.sql);
    }
  }
  return settings;
}

void SecondaryLink::journal_ops(const MirrorOps& ops, MirrorFailure reason,
                                const std::string& error, Journaling journaling,
                                bool maybe_applied) {
  hold_until_committed(journal(ops, reason, error, &ticket_of(journaling), maybe_applied),
                       journaling);
}

void SecondaryLink::hold_until_committed(std::optional<uint64_t> offset, Journaling journaling) {
  if (!offset) return;
  if (journaling == Journaling::kOpenTransaction) {
    unsettled_.push_back(*offset); // the replayer waits for the primary's commit
  } else if (backfill::DivergenceJournal* j = services_.journal()) {
    j->settle(*offset);
  }
}

void SecondaryLink::journal_unmirrorable(MirrorOp op, const std::string& why) {
  op.session_seq = session_seq_; // the settings it ran under resolve its table's name
  op.transaction_seq = transaction_seq_;
  MirrorOps ops;
  ops.push_back(std::move(op));
  journal_ops(ops, MirrorFailure::kNotMirrorable, why, Journaling::kOpenTransaction);
}

bool SecondaryLink::secondary_failed_recently() const {
  return services_.secondary_down_until().load() > ticks(Clock::now());
}

bool SecondaryLink::available() const {
  auto now = ticks(Clock::now());
  return services_.secondary_down_until().load() <= now &&
         services_.secondary_reads_down_until().load() <= now;
}

asio::awaitable<Status> SecondaryLink::start_read(const Read& read) {
  // A read leaves nothing behind on the connection, nor does a read transaction once rolled
  // back: without settings of its own the session borrows a shared connection until then.
  if (auto connected = co_await ensure_connected(shares_connections()); !connected) {
    services_.secondary_down_until() = ticks(Clock::now() + kSecondaryBackoff);
    co_return connected;
  }
  if (read.begin != nullptr && !read_transaction_open_) {
    auto begun = co_await run_query(connection_->session.stream, connection_->reader, *read.begin);
    if (!begun) {
      if (borrowed_) drop_connection(); // in whatever state the failed BEGIN left it
      co_return Error{begun.error()};
    }
    read_transaction_open_ = true;
  }
  connection_->session.transaction_status = '?'; // until the read's ReadyForQuery tells
  std::string out;
  if (read.bind == nullptr) {
    protocol::append_query(out, read.sql);
  } else {
    std::vector<std::string> new_names;
    std::string name = prepared_name(std::string(read.sql), *read.parameter_types, out, new_names);
    unconfirmed_read_statement_ = new_names.empty() ? std::string() : std::move(new_names[0]);
    protocol::BindMessage bind = *read.bind;
    bind.portal.clear();
    bind.statement = name;
    protocol::append_bind(out, bind);
    protocol::append_execute(out, "", 0);
    protocol::append_sync(out);
  }
  if (auto ec = co_await connection_->session.stream.write_all(out); ec) {
    abandon_read();
    co_return Error{"lost the secondary connection: " + ec.message()};
  }
  sent_unanswered_ = true;
  co_return Ok{};
}

asio::awaitable<Result<protocol::Frame>> SecondaryLink::read_frame() {
  if (!connection_) co_return Error{"no secondary connection"};
  auto frame = co_await connection_->reader.read_frame();
  if (frame && frame->tag == '1') unconfirmed_read_statement_.clear();
  if (frame && frame->tag == 'Z') {
    sent_unanswered_ = false;
    if (!unconfirmed_read_statement_.empty()) {
      connection_->prepared.erase(
          unconfirmed_read_statement_); // its Parse failed: prepare it anew next time
      unconfirmed_read_statement_.clear();
    }
    connection_->session.transaction_status = frame->body.empty() ? '?' : frame->body[0];
    // The read is over. Callers look no further than a ReadyForQuery's tag, so the
    // connection may go back (or be retired) before its frame is returned.
    if (borrowed_ && !read_transaction_open_) give_back_shared();
  }
  co_return frame;
}

bool SecondaryLink::has_frame() const {
  return connection_ && connection_->reader.has_frame();
}

void SecondaryLink::abandon_read() {
  drop_connection();
  services_.secondary_reads_down_until() = ticks(Clock::now() + kSecondaryBackoff);
}

asio::awaitable<void> SecondaryLink::end_read_transaction() {
  if (!read_transaction_open_) co_return;
  read_transaction_open_ = false;
  if (!connection_) co_return;
  asio::steady_timer timer(co_await asio::this_coro::executor, runtime_->config->mirror.timeout);
  auto ended = co_await (run_query(connection_->session.stream, connection_->reader, "ROLLBACK") ||
                         timer.async_wait(use_tuple));
  if (ended.index() == 1 || !std::get<0>(ended)) {
    abandon_read();
    co_return;
  }
  connection_->session.transaction_status = 'I';
  give_back_shared();
}

asio::awaitable<void> SecondaryLink::close() {
  while (applying_) { // committed transactions are applied (or journaled) before the end
    applied_.expires_at(Clock::time_point::max());
    co_await applied_.async_wait(use_tuple);
  }
  if (std::exchange(sharing_, false)) {
    for (auto& surplus : shared_connections().leave(login_key_))
      retire(std::move(surplus));
  }
  if (!connection_) co_return;
  co_await say_goodbye(connection_->session);
  drop_connection();
}

} // namespace switchyard::proxy
