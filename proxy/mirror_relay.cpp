#include "proxy/mirror_relay.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <deque>
#include <functional>
#include <limits>
#include <random>
#include <span>
#include <unordered_map>

#include "protocol/classify.hpp"
#include "protocol/copy_data.hpp"
#include "protocol/extended.hpp"
#include "protocol/frame.hpp"
#include "protocol/large_objects.hpp"
#include "protocol/messages.hpp"
#include "protocol/pg_values.hpp"
#include "protocol/row_image.hpp"
#include "protocol/wire.hpp"
#include "proxy/backend_query.hpp"
#include "proxy/bound_plans.hpp"
#include "proxy/function_volatility.hpp"
#include "proxy/log_limiter.hpp"
#include "proxy/message_reader.hpp"
#include "proxy/oid_translation.hpp"
#include "proxy/secondary_link.hpp"
#include "proxy/secondary_read.hpp"
#include "proxy/shape_registry.hpp"
#include "proxy/text_hash.hpp"

namespace switchyard::proxy {
namespace {

using Clock = std::chrono::steady_clock;

using monitoring::BackendRole;
using monitoring::CloseReason;
using protocol::MirrorPlan;
using protocol::StatementKind;
using protocol::TransactionOp;
using routing::ReadTarget;
using routing::RouteReason;
namespace sqlstate = protocol::sqlstate;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

constexpr size_t kClassificationCacheSize = 1024;
// About what 1,024 ordinary statements cost there, twice over.
constexpr size_t kClassificationCacheBytes = size_t{2} << 20;
// Reads parsed into the unnamed statement whose PreparedInfo is kept, and the largest Parse.
constexpr size_t kUnnamedReads = 64;
constexpr size_t kMaxUnnamedRead = 4096;
constexpr size_t kFlushThreshold = size_t{64} * 1024;
// Requests sent to the primary and not yet answered, past which the session reads no more
// from its client until they are: each costs an Expect, and a client that sends without
// reading its answers is otherwise held back only by socket buffers (megabytes of them).
constexpr size_t kMaxRequestsInFlight = 2048;
// The secondary RowDescriptions a session keeps translated (see describe_as_primary), and for
// how long before it asks the shared translation again.
constexpr size_t kDescribedBodies = 256;
constexpr auto kDescribedTtl = std::chrono::seconds(30);
// How often a write held by the role fence looks again; the fence is closed only briefly.
constexpr auto kRoleFencePoll = std::chrono::milliseconds(2);
// How often DDL waiting for other sessions' Binds looks again; they are answered within a
// round trip to the primary unless a lock holds them.
constexpr auto kBoundPlanPoll = std::chrono::milliseconds(1);
// Functions a session keeps to ask the primary's catalog about (see learn_functions).
constexpr size_t kFunctionsToLearn = 64;

// What the primary runs in place of a statement switchyard refuses: it fails with `sqlstate`
// and `message` as PostgreSQL fails a statement, so the error arrives in protocol order, the
// extended protocol skips to Sync and a transaction block the statement is in aborts. A
// SQLite primary has no DO; switchyard's SQLite engine has a function for it.
std::string refusal(std::string_view sqlstate, std::string_view message,
                    protocol::Dialect dialect) {
  std::string quoted;
  for (char c : message) {
    if (c == '\'') quoted += '\'';
    if (c == '%' && dialect == protocol::Dialect::kPostgres) quoted += '%'; // RAISE's format
    quoted += c;
  }
  if (dialect == protocol::Dialect::kSqlite) {
    return fmt::format("SELECT switchyard_raise('{}', '{}')", sqlstate, quoted);
  }
  return fmt::format("DO $switchyard$BEGIN RAISE EXCEPTION '{}' USING ERRCODE = '{}'; "
                     "END$switchyard$",
                     quoted, sqlstate);
}

// DDL while mirror.ddl is reject.
std::string ddl_refusal(protocol::Dialect dialect) {
  return refusal("0A000", "DDL is refused while switchyard mirrors writes (mirror.ddl is reject)",
                 dialect);
}

// A Query of more statements than limits.max_statements_per_query: 54000, as PostgreSQL
// refuses what exceeds its own limits.
std::string statement_limit_refusal(size_t max_statements, protocol::Dialect dialect) {
  return refusal("54000",
                 "the query holds more than " + std::to_string(max_statements) +
                     " statements, the most switchyard classifies in one query string "
                     "(limits.max_statements_per_query); send them in several queries",
                 dialect);
}

// A FunctionCall writing through a large-object descriptor switchyard did not see opened (a
// query calling lo_open among other things did, or none is open): what it writes, and where,
// cannot be told the secondary.
std::string unknown_descriptor_refusal(int32_t descriptor, protocol::Dialect dialect) {
  return refusal("0A000",
                 "switchyard mirrors writes through large-object descriptors that lo_open "
                 "opened as a FunctionCall (libpq's lo_open) or as a statement of that call "
                 "alone; descriptor " +
                     std::to_string(descriptor) +
                     " is not one of those (a larger query opened it, or it is not open), so "
                     "this write could not reach the secondary: open the object with libpq's "
                     "lo_open or SELECT lo_open(oid, mode)",
                 dialect);
}

// "cached plan must not change result type": a prepared statement's table changed under it.
constexpr std::string_view kResultTypeChanged = "0A000";

// A SQL-prepared write prepared again is prepared under this name first (see
// statements_preparing_again); switchyard's own protocol-level statement and portal running
// those statements in the extended protocol have the other (SQL and protocol-level statement
// names share one namespace).
constexpr std::string_view kProbeName = "switchyard_probe";
constexpr std::string_view kInternalName = "switchyard_internal";

//! A statement the client prepared (Parse), as switchyard classified and rewrote it.
struct PreparedInfo {
  std::string text; // the client's statement, without a trailing semicolon
  std::vector<uint32_t> types;
  std::shared_ptr<const protocol::Classification> classification;
  const protocol::Statement* statement = nullptr; // set when the text is one statement
  bool rewritten = false;                         // row image appended
  std::string prepare_image; // a PREPARE as sent, with its write's row image (sql_prepared_)
  //! When the text is an `EXECUTE name`: its own classification. What it runs is resolved
  //! again at each Bind (resolve_execute), as the name may have been prepared again.
  std::shared_ptr<const protocol::Classification> executes;
  //! The primary's RowDescription of a portal of this statement bound with these result
  //! formats: lets a Describe of a portal whose read the secondary answers skip the primary
  //! (see HeldBind). Like a table shape (ShapeRegistry) it holds until DDL through switchyard
  //! moves the session's schema epoch (session_schema_epoch) and for kTtl at most, for DDL that
  //! bypassed this process (another switchyard of the fleet). A cache, hence mutable.
  struct Description {
    std::vector<uint16_t> result_formats;
    uint64_t schema_epoch = 0;
    Clock::time_point described_at;
    std::string message;
  };
  mutable std::optional<Description> description;
  //! A rewritten statement as the primary has it prepared, with its row image (`t.*`): the
  //! session's schema epoch it was prepared at (none: to prepare again, see on_bind), and its
  //! width once a Describe told it. Books, hence mutable.
  struct Width {
    size_t client = 0; //!< the client's own columns
    size_t total = 0;  //!< those, the image marker and the image
  };
  mutable std::optional<uint64_t> prepared_epoch;
  mutable std::optional<Width> primary_width;
};

struct PortalInfo {
  std::shared_ptr<const PreparedInfo> prepared;
  protocol::BindMessage bind;
  //! Where an Execute of the portal ran. Only the first may be routed: another continues
  //! where that one stopped, which only the primary can do.
  enum class Ran { kNot, kOnPrimary, kOnSecondary } ran = Ran::kNot;
  //! The client's Bind while the primary has not had it (the secondary answered the portal).
  std::string unsent_bind;
};

enum class ExpectKind {
  kParse,
  kBind,
  kDescribeStatement,
  kDescribePortal,
  kExecute,
  kClose,
  kSync,
  kQuery
};

//! A session's SQL-level prepared statement that is a row-image write or a plain read, with
//! what it runs: the primary has a write with the image appended, so an EXECUTE of it returns
//! the image; an EXECUTE of a read writes nothing, so it is not mirrored.
struct SqlPreparedStatement {
  std::shared_ptr<const protocol::Classification> runs;
  //! A write's PREPARE as the primary ran it (with the image) and the schema epoch it ran
  //! at: prepared again once DDL moved the epoch, as a protocol-level one is (see
  //! prepare_again), since the image `t.*` changes with its table.
  std::string prepare_sql;
  std::optional<uint64_t> epoch; // none: to prepare again (refused so, see sql_name)
};
using SqlPrepared = std::unordered_map<std::string, SqlPreparedStatement>;

//! A response the primary owes, in the order the requests were sent.
struct Expect {
  explicit Expect(ExpectKind k) : kind(k) {}
  ExpectKind kind;
  bool internal = false;        // switchyard's own request: its answers are swallowed
  bool capture = false;         // ... and read into captured_ (run_captured)
  bool swallow_copy_in = false; // a COPY whose CopyInResponse switchyard sent already
  bool hold_ready = false;      // ReadyForQuery is kept back for the client pump
  size_t completes_to_drop = 0; // statements put in front of the client's query (a BEGIN,
                                // a PREPARE again): their CommandCompletes are not its
  size_t position_shift = 0;    // characters put there: error cursors move back by these
  bool drop_complete = false;   // switchyard's COMMIT/ROLLBACK closing a wrapped write
  bool rewritten = false;       // strip the row image from what the client sees
  std::string sql_name; // an EXECUTE's SQL-prepared write: prepared again after a 0A000 refusal
  std::optional<SqlPrepared> prepared_before; // put back if this PREPARE/DEALLOCATE fails
  // What a Parse or Close changed in switchyard's books: the statement of that name before it
  // (null: none), and a Close's portal, put back when PostgreSQL refuses or skips the message.
  std::optional<std::pair<std::string, std::shared_ptr<const PreparedInfo>>> statement_before;
  std::optional<std::pair<std::string, PortalInfo>> closed_portal;
  std::shared_ptr<const protocol::Classification> keep; // keeps `statement` alive
  const protocol::Statement* statement = nullptr;
  std::unique_ptr<MirrorOp> op; // the write to mirror once the primary ran it (used once)
  // A large-object call (a FunctionCall, or a statement that is one call): its answer says
  // what the secondary must do (used once).
  std::optional<protocol::LargeObjectCall> large_object_call;
  bool digest = false;    // a read being compared: digest its rows as they pass
  bool shadow = false;    // a shadow comparison's run: digest the answer, show none
  bool hand_over = false; // a COMMIT (or a Sync or Query that ends a cycle's implicit
                          // transaction) whose writes go to the secondary after it (async)
  std::optional<Clock::time_point> read_started; // a safe read: timed for the latency gate
  std::shared_ptr<const PreparedInfo> describes; // a portal's Describe: cache the answer here
  std::vector<uint16_t> result_formats;          // ... for a portal bound with these
  //! A rewritten statement's Describe or Bind: its width, or a refusal of it, goes to its
  //! books (PreparedInfo::primary_width, prepared_epoch).
  std::shared_ptr<const PreparedInfo> rewritten_statement;
  //! ... bound with the plan it was prepared with, or an EXECUTE of such a SQL-prepared
  //! write: DDL on its table waits for its answer (see BoundPlans).
  BoundPlans::Hold bound_plan;
  BoundPlans::DdlUnderWay ddl_under_way; // DDL: until its answer is in (see BoundPlans)
  bool private_ddl = false; // DDL no other session sees: private_ddl_ moves, not the shared epoch
};

//! Serializes writes to the client from the two pumps, keeping their order. Each waits for
//! what the session journaled to be on disk first (SecondaryLink::journal_unflushed).
class ClientWriter {
public:
  ClientWriter(Stream& stream, SecondaryLink& link) : stream_(stream), link_(link) {}

  //! The error of the write that failed, if one did; what follows it goes nowhere.
  asio::awaitable<error_code> write(std::string_view bytes) {
    if (client_gone_) co_return error_;
    pending_.append(bytes);
    if (busy_) co_return error_;
    busy_ = true;
    while (!pending_.empty() && !client_gone_) {
      if (link_.journal_unflushed()) co_await link_.journal_flushed();
      writing_.swap(pending_);
      pending_.clear();
      if (auto ec = co_await stream_.write_all(writing_)) {
        error_ = ec;
        client_gone();
        // The client pump learns it at its next read, which may wait on a socket that
        // fails only for writes.
        stream_.socket().cancel(ec);
      }
    }
    busy_ = false;
    co_return error_;
  }

  //! The client logged off or hung up: what the session still answers goes nowhere, and
  //! a socket the client closed is no reason to stop finishing its requests.
  void client_gone() {
    client_gone_ = true;
    pending_.clear();
  }

  //! The error of the write to the client that failed; empty while none did.
  const error_code& failure() const { return error_; }

private:
  Stream& stream_;
  SecondaryLink& link_;
  std::string pending_;
  std::string writing_;
  bool busy_ = false;
  bool client_gone_ = false;
  error_code error_;
};

bool ends_transaction(TransactionOp op) {
  return op == TransactionOp::kCommit || op == TransactionOp::kPrepare;
}

// Statements whose mirroring must wait for the responses before them.
bool needs_barrier(const protocol::Statement& s) {
  return s.mirror != MirrorPlan::kNone ||
         (s.transaction != TransactionOp::kNone && s.transaction != TransactionOp::kBegin);
}

// Writes switchyard wraps in a transaction when the client runs one alone in autocommit. A
// lone DDL statement is not wrapped (CREATE INDEX CONCURRENTLY and friends refuse transaction
// blocks) and is mirrored right after it ran; session statements need no transaction.
bool wants_wrap(const protocol::Statement& s) {
  return s.mirror != MirrorPlan::kNone && s.kind != StatementKind::kDdl &&
         s.kind != StatementKind::kSession;
}

// The command tag PostgreSQL answers a BEGIN with, when `text` is one switchyard may answer
// itself: BEGIN or START TRANSACTION as the first word (nothing in front to interpret).
std::optional<std::string_view> begin_tag(std::string_view text) {
  size_t start = text.find_first_not_of(" \t\r\n");
  if (start == std::string_view::npos) return std::nullopt;
  auto starts_with = [&](std::string_view word) {
    if (text.size() - start < word.size()) return false;
    for (size_t i = 0; i < word.size(); ++i) {
      if (std::tolower(static_cast<unsigned char>(text[start + i])) != word[i]) return false;
    }
    return true;
  };
  if (starts_with("begin")) return "BEGIN";
  if (starts_with("start")) return "START TRANSACTION";
  return std::nullopt;
}

// Characters of UTF-8 text, as PostgreSQL counts an error's cursor position.
size_t character_count(std::string_view text) {
  return static_cast<size_t>(std::count_if(text.begin(), text.end(), [](char c) {
    return (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  }));
}

constexpr std::string_view kWrapBegin = "BEGIN;";
constexpr std::string_view kQuestionName = "switchyard_question"; // ask_primary's statement

} // namespace

class MirrorRelay::Impl {
public:
  Impl(Stream& client, BackendSession& primary, Services& services,
       std::shared_ptr<const Runtime> runtime, monitoring::RelayStats& stats,
       SessionActivity& activity, const std::string& primary_database, LoginRequest secondary_login,
       routing::SessionIdentity identity, std::string peer, const std::string& client_leftover)
      : primary_(primary), services_(services), runtime_(std::move(runtime)), stats_(stats),
        activity_(activity), peer_(peer),
        oid_key_(std::to_string(runtime_->role_generation) + '\0' + primary_database + '\0' +
                 secondary_login.database),
        router_(std::move(identity)), client_reader_(client, protocol::Direction::kFrontend,
                                                     runtime_->config->limits.max_message_size),
        primary_reader_(primary.stream, protocol::Direction::kBackend,
                        std::numeric_limits<uint32_t>::max()),
        writer_(client, link_), link_(services, runtime_, std::move(secondary_login),
                                      std::move(peer), primary.stream.socket().get_executor()),
        cache_(kClassificationCacheSize, kClassificationCacheBytes),
        wake_(primary.stream.socket().get_executor()) {
    client_reader_.prepend(client_leftover);
    functions_ = services_.function_volatility(oid_key_);
    known_read_only_ = [this](const std::string& name) {
      return functions_
          ->read_only(name, services_.schema_epoch().load(std::memory_order_relaxed), Clock::now())
          .value_or(false);
    };
    primary_reader_.prepend(primary.leftover);
    primary.leftover.clear();
  }

  asio::awaitable<Closing> run() {
    auto ended =
        co_await (closing_on_exception(client_pump()) || closing_on_exception(server_pump()));
    // Bytes the primary sent past the last answer read (a notification, say) stay with the
    // connection: one that has any is not kept for another client.
    primary_.leftover = primary_reader_.take_leftover();
    co_return std::visit([](Closing& c) { return std::move(c); }, ended);
  }

  asio::awaitable<void> finish() { co_await link_.close(); }

private:
  // ---- client side: requests, rewritten, to the primary -------------------------------

  asio::awaitable<Closing> client_pump() {
    while (true) {
      // A write to the client failed: none of its requests read since is run.
      if (writer_.failure()) co_return co_await client_lost(writer_.failure());
      auto frame = co_await client_reader_.read_frame();
      if (!frame) {
        if (client_reader_.last_fault() == protocol::FrameFault::kNone) {
          if (writer_.failure()) continue; // it cancelled this read
          // No ?: inside the co_await: GCC 12 destroys such a temporary twice.
          std::string detail = client_reader_.peer_closed() ? "closed by peer" : frame.error();
          co_return co_await client_lost(std::move(detail));
        }
        // PostgreSQL answers what came before a message it cannot take, then refuses it.
        if (auto c = co_await drain()) co_return std::move(*c);
        bool too_large = client_reader_.last_fault() == protocol::FrameFault::kTooLarge;
        co_return refuse(too_large ? CloseReason::kMessageTooLarge
                                   : CloseReason::kProtocolViolation,
                         sqlstate::kProtocolViolation, frame.error());
      }
      activity_.last_activity = Clock::now();
      if (stale_roles() && expects_.empty() && activity_.transaction_status == 'I' &&
          !expected_in_transaction_) {
        co_return refuse(CloseReason::kRoleSwap, sqlstate::kAdminShutdown,
                         std::string(kRoleSwapMessage));
      }
      if (!functions_to_learn_.empty() && idle_outside_transaction()) {
        if (auto c = co_await learn_functions()) co_return std::move(*c);
      }
      std::optional<Closing> closing = co_await on_client_message(*frame);
      if (closing) co_return std::move(*closing);
      if (expects_.size() >= kMaxRequestsInFlight) {
        if (auto c = co_await answered_down_to(kMaxRequestsInFlight / 2)) co_return std::move(*c);
      } else if (!client_reader_.has_leftover() || to_primary_.size() > kFlushThreshold) {
        if (auto c = co_await flush_primary()) co_return std::move(*c);
      }
    }
  }

  asio::awaitable<std::optional<Closing>> on_client_message(const protocol::Frame& frame) {
    if (skipping_to_sync()) {
      drop_held();
      if (frame.tag != 'S' && frame.tag != 'X') co_return std::nullopt;
    }
    if (held_bind_ && frame.tag != 'D' && frame.tag != 'E') release_held_bind();
    if (held_parse_ && !held_bind_ && frame.tag != 'B') release_held_parse();
    if ((frame.tag == 'P' || frame.tag == 'B') && created_temporary_ && !cycle_open() &&
        expects_.empty()) {
      if (auto c = co_await ask_at_cycle_start_if_own_temporaries(frame)) co_return c;
    }
    if (deferred_begin_ && frame.tag != 'Q') {
      if (auto c = co_await send_deferred_begin(frame.tag)) co_return c;
    }
    switch (frame.tag) {
    case 'Q': {
      auto closing = co_await on_query(frame.body.substr(0, frame.body.find('\0')));
      // A Query ends a cycle as a Sync does, unless the cycle failed and PostgreSQL skipped it.
      if (!cycle_failed_) cycle_start_bytes_ = primary_bytes_queued();
      co_return closing;
    }
    case 'P': co_return on_parse(frame);
    case 'B': {
      std::optional<Closing> closing = on_bind(frame);
      if (closing || !undescribed_bind_) co_return closing;
      co_return co_await bind_once_described();
    }
    case 'D': co_return on_describe(frame);
    case 'E': co_return co_await on_execute(frame);
    case 'C': co_return on_close(frame);
    case 'S': co_return co_await on_sync(frame);
    case 'X': // finish() ends the primary connection, as for the other relays
      if (auto c = co_await finish_requests_sent()) co_return c;
      co_return Closing{CloseReason::kClientTerminate, {}, {}};
    case 'F': co_return co_await on_function_call(frame);
    default: forward(frame); co_return std::nullopt; // Flush, COPY data
    }
  }

  // A FunctionCall (the fastpath interface). One of the large-object functions (libpq's lo_*)
  // is mirrored once the primary answered it, as SQL naming the object rather than the
  // descriptor (LargeObjectDescriptors); one that writes outside a transaction block runs in
  // one switchyard opens, and commits after the secondary. Other functions reach the primary
  // alone.
  asio::awaitable<std::optional<Closing>> on_function_call(const protocol::Frame& frame) {
    temporaries_asked_.reset(); // the function may create or drop them
    auto call = protocol::parse_function_call(frame.body);
    auto function = call ? protocol::large_object_function(call->function) : std::nullopt;
    Expect expect{ExpectKind::kQuery};
    bool wrap = false;
    if (function && protocol::writes(*function)) {
      if (services_.role_fence().draining()) co_await pass_role_fence();
      // The descriptors it may name are known, and the transaction status is the primary's.
      if (auto c = co_await drain()) co_return c;
      if (auto descriptor = large_objects_.unknown_descriptor(*function, *call)) {
        append_client_query(unknown_descriptor_refusal(*descriptor, primary_dialect()), expect);
        expects_.push_back(std::move(expect));
        co_return std::nullopt;
      }
      transaction_wrote_ = true;
      transaction_took_locks_ = true;
      wrap = activity_.transaction_status == 'I';
      if (wrap) {
        protocol::append_query(to_primary_, "BEGIN");
        Expect begin{ExpectKind::kQuery};
        begin.internal = true;
        begin.hold_ready = true;
        expects_.push_back(std::move(begin));
      }
    }
    forward(frame);
    if (function) expect.large_object_call = protocol::LargeObjectCall{*function, std::move(*call)};
    expect.hold_ready = wrap;
    expects_.push_back(std::move(expect));
    activity_.sync_sent(Clock::now());
    if (!wrap) co_return std::nullopt;
    query_failed_ = false;
    if (auto c = co_await drain()) co_return c;
    co_return co_await end_wrapped_transaction(!query_failed_);
  }

  asio::awaitable<std::optional<Closing>> on_query(std::string_view sql) {
    unsent_parse_.clear();      // a Query ends the unnamed statement on the primary too
    temporaries_asked_.reset(); // what the Query runs may create or drop them
    size_t max_statements = runtime_->config->limits.max_statements_per_query;
    protocol::ClassifiedQuery query = cache_.get(sql, max_statements);
    std::string refusal;
    if (query.classification->too_many_statements) {
      refusal = statement_limit_refusal(max_statements, primary_dialect());
      sql = refusal;
      query = cache_.get(sql);
      auto pinned = std::make_shared<protocol::Classification>(*query.classification);
      for (protocol::Statement& s : pinned->statements)
        s.pinned_call = true; // the primary's answer, never a read routed to the secondary
      query.classification = std::move(pinned);
    }
    if (query.classification->statements.size() == 1) { // an EXECUTE of a read is that read
      if (auto executed = executed_statement(query.classification->statements[0]);
          executed && executed->statements[0].kind == StatementKind::kRead) {
        query.classification = std::move(executed);
      }
    }
    const auto& classification = query.classification;
    activity_.sync_sent(Clock::now());
    if (deferred_begin_ && classification->error.empty() && classification->statements.empty()) {
      std::string answer; // an empty query: nothing for the primary to see yet
      protocol::append_empty_message(answer, 'I');
      protocol::append_ready_for_query(answer, 'T');
      co_return co_await write_ready(answer);
    }
    if (deferred_begin_ && !classification->error.empty()) {
      send_hidden_begin(); // PostgreSQL's parser refuses the query too: nothing of it runs
    }
    if (auto tag = deferrable_begin(*classification, sql)) {
      co_return co_await defer_begin(classification->statements[0], query.text(sql, 0), *tag);
    }
    // A Query sent before the Sync of extended messages runs in their implicit transaction
    // and ends it, or PostgreSQL skips it when one of them failed: it stays on the primary.
    bool mid_cycle = cycle_open();
    if (note_unknown_functions(classification->statements) && idle_outside_transaction()) {
      if (auto c = co_await learn_functions()) co_return c;
    }
    auto read_policy = services_.read_policy(); // routing follows reloads and the cutover
    const config::ReadRouting& policy = *read_policy;
    std::optional<routing::RouteDecision> route;
    if (classification->error.empty() && !mid_cycle) {
      route = route_reads(classification->statements, policy);
    }
    if (route) {
      ReadJob job;
      job.sql = sql;
      job.ordered =
          std::any_of(classification->statements.begin(), classification->statements.end(),
                      [](const protocol::Statement& s) { return s.ordered; });
      co_return co_await serve_reads(job, *route, policy);
    }
    count_unsafe_reads(classification->statements);
    stats_.add_queries(BackendRole::kPrimary, 1);
    const auto& statements = classification->statements;
    bool barrier = false;
    bool ddl = false;
    bool writes = false;
    std::optional<bool> in_transaction_after; // where the query leaves the session, if it moves
    for (size_t i = 0; i < statements.size(); ++i) {
      const protocol::Statement& s = statements[i];
      barrier |= needs_barrier(s);
      writes |= s.mirror != MirrorPlan::kNone;
      ddl |= s.kind == StatementKind::kDdl;
      note_for_routing(s, query.text(sql, i));
      if (s.transaction == TransactionOp::kBegin) in_transaction_after = true;
      if (s.transaction == TransactionOp::kCommit || s.transaction == TransactionOp::kRollback) {
        in_transaction_after = false;
      }
    }
    // The cycle's autocommit writes wait in its implicit transaction, which this Query ends:
    // switchyard wraps the Query, the BEGIN making that transaction a block it commits after
    // the secondary (or rolls back).
    bool joins_cycle = cycle_writes_;
    barrier |= cycle_writes_ || cycle_autocommit_mirror_;
    // Set once the answers ahead are in: the last of them resets it from its ReadyForQuery.
    auto expect_transaction = [&] {
      if (in_transaction_after) expected_in_transaction_ = *in_transaction_after;
    };
    if (!barrier || (ddl && runtime_->config->mirror.ddl == config::DdlPolicy::kReject)) {
      expect_transaction();
    }
    if (ddl && runtime_->config->mirror.ddl == config::DdlPolicy::kReject) {
      Expect expect{ExpectKind::kQuery};
      append_client_query(ddl_refusal(primary_dialect()), expect);
      expects_.push_back(std::move(expect));
      co_return std::nullopt;
    }
    if (!barrier) {
      link_.note_sent(false); // a read, whose locks may hold back DDL sent after it
      Expect expect{ExpectKind::kQuery};
      append_client_query(sql, expect);
      expects_.push_back(std::move(expect));
      co_return std::nullopt;
    }

    if (writes && services_.role_fence().draining()) co_await pass_role_fence();
    if (auto c = co_await drain()) co_return c;
    if (skipping_to_sync()) co_return std::nullopt; // an earlier message of the cycle failed
    std::optional<bool> own_temporaries;            // the primary's answer, if asked
    if (!mid_cycle && statements.size() == 1 && may_act_on_own_temporaries(statements[0])) {
      bool own = false;
      if (auto c = co_await ask_if_own_temporaries(statements[0], own)) co_return c;
      own_temporaries = own;
    }
    expect_transaction();
    cycle_writes_ = false;
    cycle_autocommit_mirror_ = false; // committed below once the Query's answer is in
    // An autocommit write becomes a transaction we commit after the secondary has applied it.
    // Mid-cycle the last ReadyForQuery is older than the cycle's BEGIN or COMMIT.
    bool autocommit = mid_cycle ? !expected_in_transaction_ : activity_.transaction_status == 'I';
    // PostgreSQL runs the statements of one Query in one implicit transaction: split up, they
    // are wrapped to keep it (SET a; SELECT 1/0 leaves no setting behind, CREATE TABLE w;
    // SELECT 1/0 no table). DDL that refuses a transaction block refuses an implicit one too.
    bool wrap =
        !classification->has_transaction_control() && !statements.empty() &&
        (joins_cycle ||
         (autocommit && (statements.size() > 1 ||
                         (!ddl && std::any_of(statements.begin(), statements.end(), wants_wrap)))));
    query_failed_ = false;
    bool last_ready_forwarded = false;
    if (statements.empty()) { // empty or unparsable, behind the cycle's writes or autocommit DDL
      Expect expect{ExpectKind::kQuery};
      expect.hold_ready = true;
      if (joins_cycle && !classification->error.empty()) {
        link_.discard(); // PostgreSQL refuses the Query and rolls the cycle back
      } else if (joins_cycle) {
        expect.hand_over = hands_over(TransactionOp::kCommit);
        if (expect.hand_over) {
          link_.reserve();
        } else {
          co_await link_.commit();
        }
      }
      append_client_query(sql, expect);
      expects_.push_back(std::move(expect));
      if (auto c = co_await drain()) co_return c;
    }
    bool in_client_block = !autocommit;
    for (size_t i = 0; i < statements.size() && !query_failed_; ++i) {
      auto executed = executed_statement(statements[i]);
      const protocol::Statement& s = executed ? executed->statements[0] : statements[i];
      std::string_view text = query.text(sql, i);
      if (s.transaction == TransactionOp::kBegin) in_client_block = true;
      if (s.transaction == TransactionOp::kCommit || s.transaction == TransactionOp::kRollback) {
        in_client_block = false;
      }
      if (s.transaction == TransactionOp::kRollback || ends_transaction(s.transaction)) {
        co_await link_.end_read_transaction();
      }
      if (hands_over(s.transaction)) {
        link_.reserve();
      } else if (ends_transaction(s.transaction)) {
        co_await commit_secondary_first();
      }
      auto prepare_image = prepare_with_row_image(text, s);
      std::string send = prepare_image ? *prepare_image
                         : s.mirror == MirrorPlan::kRowImage && !executed
                             ? protocol::with_row_image(text, s, primary_dialect())
                             : std::string(text);
      Expect expect{ExpectKind::kQuery};
      note_prepared_names(s, prepare_image.value_or(std::string()), expect);
      if (executed && s.mirror == MirrorPlan::kRowImage) {
        expect.bound_plan = services_.bound_plans().hold(s.target.name);
        std::string ahead;
        for (const std::string& again : statements_preparing_again(
                 statements[i], expect.bound_plan.epoch(), expect.prepared_before)) {
          ahead += again;
          ahead += "\n;"; // the newline ends a trailing "-- comment"
          ++expect.completes_to_drop;
        }
        // Prepared again in the EXECUTE's transaction, with no DDL between.
        if (!ahead.empty()) expect.bound_plan = BoundPlans::Hold();
        expect.position_shift += character_count(ahead);
        send.insert(0, ahead);
        expect.sql_name = statements[i].prepared_name;
      }
      if (i == 0 && wrap) {
        send.insert(0, kWrapBegin);
        ++expect.completes_to_drop;
        expect.position_shift += kWrapBegin.size();
      }
      // Only the last statement's ReadyForQuery may reach the client, and not when the
      // transaction switchyard opened must still be closed, nor before DDL run outside a
      // transaction reached the secondary (another session's next write may need it).
      bool last = i + 1 == statements.size();
      expect.hold_ready = wrap || !last || s.kind == StatementKind::kDdl;
      last_ready_forwarded = !expect.hold_ready;
      expect.rewritten = s.mirror == MirrorPlan::kRowImage;
      expect.keep = executed ? executed : classification;
      expect.statement = &s;
      expect.private_ddl = s.private_ddl || own_temporaries.value_or(false);
      expect.op = make_op(s, text, nullptr, own_temporaries);
      if (s.large_object_call)
        expect.large_object_call = protocol::sql_large_object_call(text, nullptr);
      if (s.kind == StatementKind::kDdl) {
        if (auto c = co_await before_sending_ddl(s, expect)) co_return c;
      }
      note_sent(s, in_client_block, expect.private_ddl);
      expect.hand_over = hands_over(s.transaction);
      copy_in_started_ = false;
      if (s.copy_from && s.copy_from->extendable && statements.size() == 1 &&
          activity_.transaction_status != 'E' &&
          primary_dialect() == protocol::Dialect::kPostgres) {
        if (auto c = co_await relay_copy_with_defaults(s, send, std::move(expect), wrap))
          co_return c;
      } else {
        append_client_query(send, expect);
        expects_.push_back(std::move(expect));
        if (s.mirror == MirrorPlan::kCopyIn) {
          if (auto c = co_await relay_copy_in()) co_return c;
        }
      }
      // The last statement, answered straight to the client, needs no wait when it is a write
      // inside the client's transaction or the COMMIT/ROLLBACK ending it: nothing is left to
      // do after it, and the next statement that needs its answer drains first (a client
      // that waits for answers finds it in).
      bool in_block = s.transaction == TransactionOp::kNone
                          ? expected_in_transaction_
                          : s.transaction == TransactionOp::kCommit ||
                                s.transaction == TransactionOp::kRollback;
      if (last && last_ready_forwarded && in_block && s.kind != StatementKind::kDdl &&
          s.mirror != MirrorPlan::kCopyIn) {
        expect_transaction(); // the earlier statements' ReadyForQuery predates a COMMIT in flight
        co_return std::nullopt;
      }
      if (auto c = co_await drain()) co_return c;
    }
    if (wrap) co_return co_await end_wrapped_transaction(!query_failed_);
    if (activity_.transaction_status == 'I') co_await commit_autocommit_ddl();
    if (last_ready_forwarded) co_return std::nullopt;
    std::string ready;
    protocol::append_ready_for_query(ready, held_status_);
    co_return co_await write_ready(ready);
  }

  // Once the primary asks for COPY data, relays the client's CopyData to it, keeping a copy
  // for the secondary (up to mirror.max_transaction_bytes), until CopyDone or CopyFail.
  asio::awaitable<std::optional<Closing>> relay_copy_in() {
    if (auto c = co_await flush_primary()) co_return c;
    while (!copy_in_started_ && !expects_.empty()) {
      wake_.expires_at(Clock::time_point::max());
      co_await wake_.async_wait(use_tuple);
    }
    if (!copy_in_started_) co_return std::nullopt; // the COPY failed before any data
    copy_in_started_ = false;
    copy_data_.clear();
    copy_too_large_ = false;
    co_return co_await relay_copy_data(0);
  }

  // The client's next message during a COPY; nullopt, with `closing` set, when the client
  // is gone or sent something unreadable.
  asio::awaitable<std::optional<protocol::Frame>>
  read_copy_message(std::optional<Closing>& closing) {
    auto frame = co_await client_reader_.read_frame();
    if (!frame) {
      closing = client_reader_.last_fault() == protocol::FrameFault::kNone
                    ? Closing{CloseReason::kClientDisconnect, "closed during COPY", {}}
                    : protocol_violation(frame.error());
      co_return std::nullopt;
    }
    activity_.last_activity = Clock::now();
    co_return *frame;
  }

  // Relays the client's CopyData to the primary, keeping a copy for the secondary in
  // copy_data_ (`bytes` kept already) up to mirror.max_transaction_bytes, until CopyDone or
  // CopyFail.
  asio::awaitable<std::optional<Closing>> relay_copy_data(size_t bytes) {
    size_t limit = runtime_->config->mirror.max_transaction_bytes;
    while (true) {
      std::optional<Closing> closing;
      auto frame = co_await read_copy_message(closing);
      if (!frame) co_return closing;
      forward(*frame);
      if (frame->tag == 'd' && !copy_too_large_) {
        bytes += frame->body.size();
        copy_too_large_ = bytes > limit;
        if (copy_too_large_) {
          copy_data_.clear();
        } else {
          copy_data_.emplace_back(frame->body);
        }
      }
      if (frame->tag == 'c' || frame->tag == 'f') break;
      if (frame->tag != 'd' && frame->tag != 'H' && frame->tag != 'S')
        break; // PostgreSQL fails the COPY
      if (to_primary_.size() > kFlushThreshold) {
        if (auto c = co_await flush_primary()) co_return c;
      }
    }
    co_return co_await flush_primary();
  }

  // A COPY FROM STDIN leaves the columns it does not list to their defaults, which the
  // secondary would evaluate again: other serial ids, times, random values. When the table
  // has such columns, switchyard answers the CopyInResponse itself and keeps the data; at
  // CopyDone the primary evaluates the defaults for every row, in the COPY's transaction (so
  // now() is that transaction's), and the COPY runs on both databases with those columns
  // listed and their values appended to the rows. Data that ends otherwise than in CopyDone
  // or outgrows mirror.max_transaction_bytes reaches the primary as the client's COPY.
  asio::awaitable<std::optional<Closing>> relay_copy_with_defaults(const protocol::Statement& s,
                                                                   std::string_view send,
                                                                   Expect expect, bool wrap) {
    const protocol::CopyFrom& copy = *s.copy_from;
    std::string table = s.target.qualified();
    if (auto c = co_await ask_primary(protocol::column_defaults_sql(table))) co_return c;
    if (!captured_.error.empty()) co_return co_await fail_captured(wrap);
    std::optional<CopyFill> fill = copy_fill(copy);
    std::vector<std::pair<size_t, std::string>> key =
        copy_key(fill ? fill->columns : copy.columns, copy);
    if (!fill) {
      if (expect.op) expect.op->copy_key = std::move(key);
      append_client_query(send, expect);
      expects_.push_back(std::move(expect));
      co_return co_await relay_copy_in();
    }
    bool binary = copy.format.kind == protocol::CopyFormat::Kind::kBinary;
    std::string response; // the COPY's format, and the same for every column
    response += binary ? '\1' : '\0';
    protocol::append_u16(response, static_cast<uint16_t>(fill->given));
    for (size_t i = 0; i < fill->given; ++i)
      protocol::append_u16(response, binary ? 1 : 0);
    std::string out;
    out.swap(to_client_);
    protocol::append_message(out, 'G', response);
    if (auto ec = co_await writer_.write(out); ec) co_return co_await client_lost(ec);

    std::string data;
    size_t limit = runtime_->config->mirror.max_transaction_bytes;
    char ending = 0; // CopyDone, CopyFail or a message that fails the COPY; 0 when too large
    std::string ending_body;
    while (data.size() <= limit) {
      std::optional<Closing> closing;
      auto frame = co_await read_copy_message(closing);
      if (!frame) co_return closing;
      if (frame->tag == 'd') {
        data.append(frame->body);
      } else if (frame->tag != 'H' && frame->tag != 'S') { // PostgreSQL ignores those in COPY
        ending = frame->tag;
        ending_body = frame->body;
        break;
      }
    }
    std::vector<protocol::CopyRow> rows;
    if (ending == 'c') {
      // Malformed binary data fills nothing: PostgreSQL answers it.
      rows = binary ? protocol::binary_copy_rows(data).value_or(std::vector<protocol::CopyRow>{})
                    : protocol::copy_rows(data, copy.format);
    }
    // Rows with too few fields are left so, for PostgreSQL to name the column they miss; in
    // binary data, rows with too many as well.
    size_t filled_rows =
        static_cast<size_t>(std::count_if(rows.begin(), rows.end(), [&](const auto& row) {
          return binary ? row.fields == fill->given : row.fields >= fill->given;
        }));
    expect.swallow_copy_in = true;
    if (filled_rows == 0) { // PostgreSQL answers as it would have: no rows, or no CopyDone
      append_client_query(send, expect);
      expects_.push_back(std::move(expect));
      co_return co_await send_copy_data(data, ending, ending_body, ending != 0);
    }

    std::string values_sql = protocol::copy_values_sql(copy, fill->expressions, filled_rows);
    if (wrap) values_sql.insert(0, kWrapBegin);
    captured_limit_ = limit - data.size();
    auto closing = co_await run_captured(values_sql);
    captured_limit_ = std::numeric_limits<size_t>::max();
    if (closing) co_return closing;
    if (!captured_.error.empty()) co_return co_await fail_captured(wrap);
    if (captured_.overflow) { // more values than data: the primary takes the COPY alone
      if (wrap) send.remove_prefix(kWrapBegin.size()); // BEGIN went with the values
      expect.completes_to_drop = 0;
      expect.position_shift = 0;
      append_client_query(send, expect);
      expects_.push_back(std::move(expect));
      co_return co_await send_copy_data(data, 'c', {}, false);
    }
    protocol::CopyFormat values_format = copy.format;
    values_format.header = false;
    std::vector<protocol::CopyRow> value_rows =
        binary ? protocol::binary_copy_rows(captured_.copy_out)
                     .value_or(std::vector<protocol::CopyRow>{})
               : protocol::copy_rows(captured_.copy_out, values_format);
    size_t skip = binary ? 2 : 0; // a binary tuple's field count
    std::vector<std::string_view> values;
    values.reserve(value_rows.size());
    for (const protocol::CopyRow& row : value_rows) {
      values.push_back(std::string_view(captured_.copy_out)
                           .substr(row.begin + skip, row.end - row.begin - skip));
    }
    std::string filled =
        binary
            ? protocol::append_binary_copy_fields(data, rows, fill->given, values,
                                                  fill->expressions.size())
            : protocol::append_copy_fields(data, rows, fill->given, values, copy.format.delimiter);
    data = std::string();
    captured_ = Captured{};
    std::string sql = protocol::copy_from_sql(copy, table, fill->columns);
    expect.op = make_op(s, sql, nullptr);
    if (expect.op) {
      expect.op->sequence_values = filled_ids(*fill, values, values_format);
      expect.op->copy_key = std::move(key);
    }
    expect.completes_to_drop = 0; // the BEGIN went with the values
    expect.position_shift = 0;
    append_client_query(sql, expect);
    expects_.push_back(std::move(expect));
    co_return co_await send_copy_data(filled, 'c', {}, true);
  }

  // Sends COPY data switchyard kept to the primary, then the message that ended it (0: the
  // data outgrew mirror.max_transaction_bytes and the rest is still to be relayed). The
  // secondary gets the data too when `mirrored`, and it was not too large.
  asio::awaitable<std::optional<Closing>>
  send_copy_data(std::string_view data, char ending, std::string_view ending_body, bool mirrored) {
    copy_data_.clear();
    copy_too_large_ = ending == 0 || !mirrored;
    for (size_t at = 0; at < data.size(); at += kFlushThreshold) {
      std::string_view piece = data.substr(at, kFlushThreshold);
      protocol::append_message(to_primary_, 'd', piece);
      if (!copy_too_large_) copy_data_.emplace_back(piece);
      if (auto c = co_await flush_primary()) co_return c;
    }
    if (ending == 0) co_return co_await relay_copy_data(data.size());
    protocol::append_message(to_primary_, ending, ending_body);
    co_return co_await flush_primary();
  }

  //! The columns a COPY leaves to a default, from the catalog rows ask_primary read.
  struct CopyFill {
    std::vector<std::string> columns;     // the client's, then those switchyard fills
    size_t given = 0;                     // how many of them the client's data has
    std::vector<std::string> expressions; // the defaults of the others
    std::vector<std::string> sequences;   // per expression: a serial's sequence, or ""
  };

  // The highest id the primary filled into each serial or identity column of a COPY, by its
  // sequence: `values` are the filled fields of each row, in `format`.
  static SequenceMarks::Advances filled_ids(const CopyFill& fill,
                                            std::span<const std::string_view> values,
                                            const protocol::CopyFormat& format) {
    SequenceMarks::Advances ids;
    if (std::all_of(fill.sequences.begin(), fill.sequences.end(),
                    [](const std::string& sequence) { return sequence.empty(); })) {
      return ids;
    }
    std::vector<std::optional<int64_t>> largest(fill.sequences.size());
    bool binary = format.kind == protocol::CopyFormat::Kind::kBinary;
    for (std::string_view row : values) {
      std::vector<std::optional<std::string_view>> fields;
      if (binary) {
        fields = protocol::binary_copy_fields(row).value_or(fields);
      } else {
        for (std::string_view field : protocol::copy_fields(row, format))
          fields.emplace_back(field);
      }
      for (size_t i = 0; i < fields.size() && i < largest.size(); ++i) {
        if (fill.sequences[i].empty() || !fields[i]) continue;
        auto id =
            binary ? protocol::decode_int_binary(*fields[i]) : protocol::parse_int8(*fields[i]);
        if (id && (!largest[i] || *id > *largest[i])) largest[i] = *id;
      }
    }
    for (size_t i = 0; i < largest.size(); ++i) {
      if (largest[i]) ids.emplace_back(fill.sequences[i], *largest[i]);
    }
    return ids;
  }

  // nullopt when no column is left to a default, and when PostgreSQL refuses the COPY before
  // any data (no such table or column): it then answers the client's COPY itself.
  std::optional<CopyFill> copy_fill(const protocol::CopyFrom& copy) const {
    CopyFill fill;
    fill.columns = copy.columns;
    std::optional<std::vector<std::string>> every = splittable_columns(copy);
    if (!every) return std::nullopt;
    const std::vector<std::string>& names = *every;
    if (fill.columns.empty()) fill.columns = names;
    for (const std::string& column : fill.columns) {
      if (std::count(fill.columns.begin(), fill.columns.end(), column) != 1 ||
          std::find(names.begin(), names.end(), column) == names.end()) {
        return std::nullopt;
      }
    }
    fill.given = fill.columns.size();
    for (size_t i = 0; i < names.size(); ++i) {
      const protocol::Value& expression = captured_.rows[i][2];
      auto given_end = fill.columns.begin() + static_cast<std::ptrdiff_t>(fill.given);
      if (expression && std::find(fill.columns.begin(), given_end, names[i]) == given_end) {
        fill.columns.push_back(names[i]);
        // In the column's type: binary data must be (nextval() is a bigint, the id an int).
        fill.expressions.push_back("CAST((" + *expression + ") AS " + *captured_.rows[i][3] + ")");
        fill.sequences.push_back(captured_.rows[i][4].value_or(""));
      }
    }
    if (fill.expressions.empty()) return std::nullopt;
    return fill;
  }

  // Where the primary key's columns are among `columns`, those of a COPY's data (none given:
  // every column), by the catalog rows column_defaults_sql captured (see MirrorOp::copy_key);
  // none when the table has no key, the data lacks one of its columns, or cannot be split
  // byte by byte.
  std::vector<std::pair<size_t, std::string>> copy_key(const std::vector<std::string>& columns,
                                                       const protocol::CopyFrom& copy) const {
    std::optional<std::vector<std::string>> every = splittable_columns(copy);
    if (!every) return {};
    const std::vector<std::string>& data_columns = columns.empty() ? *every : columns;
    std::vector<std::pair<size_t, std::string>> key;
    for (const auto& row : captured_.rows) {
      if (row[5] != "t") continue;
      auto at = std::find(data_columns.begin(), data_columns.end(), *row[0]);
      if (at == data_columns.end()) return {};
      key.emplace_back(static_cast<size_t>(at - data_columns.begin()), *row[0]);
    }
    return key;
  }

  // Every column a COPY can write, by the catalog rows column_defaults_sql captured; nullopt
  // when they are not all there, or the COPY's data cannot be split byte by byte: multi-byte
  // characters of its encoding (the session's, or an ENCODING option's) may hold bytes that
  // look like ASCII.
  std::optional<std::vector<std::string>> splittable_columns(const protocol::CopyFrom& copy) const {
    bool own_encoding = std::any_of(copy.options.begin(), copy.options.end(),
                                    [](const auto& option) { return option.first == "encoding"; });
    if (own_encoding || captured_.rows.empty()) return std::nullopt;
    std::vector<std::string> names;
    for (const auto& row : captured_.rows) {
      if (row.size() != 6 || !row[0] || !row[1] || !row[3]) return std::nullopt;
      if (protocol::encoding_embeds_ascii(*row[1])) return std::nullopt;
      names.push_back(*row[0]);
    }
    return names;
  }

  // Runs switchyard's own query on the primary, in the session, and reads its answer into
  // captured_; the client sees nothing of it. A simple Query, which may hold several
  // statements: only for the client's own Query, which dropped its unnamed statement already.
  asio::awaitable<std::optional<Closing>> run_captured(std::string_view sql) {
    Expect expect = captured_answer();
    append_client_query(sql, expect);
    co_return co_await await_captured(std::move(expect));
  }

  // One statement of switchyard's own, answered as run_captured's, through a named statement
  // and portal: a simple Query between the client's messages would drop its unnamed
  // statement, which it may execute again (libpq's PQprepare with an empty name).
  asio::awaitable<std::optional<Closing>> ask_primary(std::string_view sql) {
    if (deferred_begin_) send_hidden_begin();
    Expect expect = captured_answer();
    auto close = [this] {
      protocol::append_close(to_primary_, 'P', kQuestionName); // else kept till COMMIT
      protocol::append_close(to_primary_, 'S', kQuestionName);
    };
    close(); // what a question that failed after its Parse left: it skipped the Closes
    std::string name(kQuestionName);
    protocol::append_parse(to_primary_, protocol::ParseMessage{name, std::string(sql), {}});
    protocol::append_bind(to_primary_, protocol::BindMessage{name, name, {}, {}, {}});
    protocol::append_execute(to_primary_, name, 0);
    close();
    protocol::append_sync(to_primary_);
    co_return co_await await_captured(std::move(expect));
  }

  Expect captured_answer() {
    captured_ = Captured{};
    Expect expect{ExpectKind::kQuery};
    expect.internal = true;
    expect.capture = true;
    expect.hold_ready = true; // its status lands in held_status_
    return expect;
  }

  asio::awaitable<std::optional<Closing>> await_captured(Expect expect) {
    expects_.push_back(std::move(expect));
    auto closing = co_await drain();
    holding_ = false; // nothing of the client's waits for that ReadyForQuery
    co_return closing;
  }

  void on_captured_answer(const protocol::Frame& frame) {
    switch (frame.tag) {
    case 'D':
      if (auto values = protocol::parse_data_row(frame.body)) captured_.rows.push_back(*values);
      break;
    case 'd':
      captured_.overflow |= captured_.copy_out.size() + frame.body.size() > captured_limit_;
      if (!captured_.overflow) captured_.copy_out.append(frame.body);
      break;
    case 'E':
      stats_.add_backend_errors(BackendRole::kPrimary, 1);
      transaction_failed_ = true;
      captured_.error = frame.body;
      break;
    case 'Z': on_ready(frame); break;
    default: break;
    }
  }

  // switchyard's own query for the client's statement failed: the client gets its error in
  // the statement's place (on_query ends a wrapped transaction).
  asio::awaitable<std::optional<Closing>> fail_captured(bool wrap) {
    protocol::append_message(to_client_, 'E', captured_.error);
    query_failed_ = true;
    if (wrap) co_return std::nullopt;
    std::string ready;
    protocol::append_ready_for_query(ready, held_status_);
    co_return co_await write_ready(ready);
  }

  // Commits (after the secondary) or rolls back the transaction switchyard opened around an
  // autocommit write; its ReadyForQuery is the one the client waits for.
  asio::awaitable<std::optional<Closing>> end_wrapped_transaction(bool succeeded) {
    if (!succeeded) {
      link_.discard();
    } else if (hands_over(TransactionOp::kCommit)) {
      link_.reserve();
    } else {
      co_await link_.commit();
    }
    expected_in_transaction_ = false;
    if (!succeeded && held_status_ == 'I') {
      // It failed before its BEGIN ran (a syntax error fails the whole Query): a ROLLBACK
      // would only earn the client a "no transaction in progress" warning.
      std::string ready;
      protocol::append_ready_for_query(ready, 'I');
      co_return co_await write_ready(ready);
    }
    protocol::append_query(to_primary_, succeeded ? "COMMIT" : "ROLLBACK");
    Expect expect{ExpectKind::kQuery};
    expect.drop_complete = true;
    expect.hand_over = succeeded && hands_over(TransactionOp::kCommit);
    expects_.push_back(std::move(expect));
    co_return co_await flush_primary();
  }

  // write_mode sync, a COMMIT (or PREPARE TRANSACTION) of the client's with every answer
  // before it in: the secondary commits the transaction's writes first — unless a statement
  // of it failed, when the primary answers ROLLBACK and the writes go nowhere.
  asio::awaitable<void> commit_secondary_first() {
    if (transaction_failed_) {
      link_.discard();
    } else {
      co_await link_.commit();
    }
  }

  // write_mode async: a COMMIT's writes go to the secondary once the primary confirmed it
  // (PREPARE TRANSACTION keeps the sync order: it may still be rolled back).
  bool hands_over(TransactionOp op) const {
    return op == TransactionOp::kCommit &&
           runtime_->config->write_mode == config::WriteMode::kAsync;
  }

  // DDL (or a setting) the client ran outside a transaction, which the primary has done.
  asio::awaitable<void> commit_autocommit_ddl() {
    if (runtime_->config->write_mode == config::WriteMode::kAsync) {
      link_.hand_over_applied();
    } else {
      co_await link_.commit(false);
      link_.primary_answered_commit(true); // it did, first
      link_.settle(); // the primary committed it first: what the secondary missed may replay
    }
  }

  std::optional<Closing> on_parse(const protocol::Frame& frame) {
    auto parse = protocol::parse_parse(frame.body);
    if (!parse) return protocol_violation(parse.error());
    if (parse->statement.empty()) {
      unsent_parse_.clear(); // replaced: the primary's unnamed statement no longer matters
      if (auto known = unnamed_reads_.find(frame.body); known != unnamed_reads_.end()) {
        statements_[""] = known->second;
        if (may_be_routed(known->second.get())) {
          held_parse_.emplace();
          protocol::append_message(*held_parse_, frame.tag, frame.body);
          return std::nullopt;
        }
        protocol::append_message(to_primary_, frame.tag, frame.body);
        expects_.push_back(Expect{ExpectKind::kParse});
        return std::nullopt;
      }
    }
    auto info = std::make_shared<PreparedInfo>();
    info->types = parse->parameter_types;
    // Over the limit it is one unknown statement, which the primary refuses: a prepared
    // statement holds one.
    protocol::ClassifiedQuery query =
        cache_.get(parse->query, runtime_->config->limits.max_statements_per_query);
    info->classification = query.classification;
    info->text = parse->query;
    const auto& statements = info->classification->statements;
    note_unknown_functions(statements); // learned before the client's next message
    if (statements.size() == 1) {
      info->statement = &statements[0];
      info->text = std::string(query.text(parse->query, 0));
      if (info->statement->kind == StatementKind::kDdl &&
          runtime_->config->mirror.ddl == config::DdlPolicy::kReject) {
        parse->query = ddl_refusal(primary_dialect());
        info->statement = nullptr;
      } else if (info->statement->node == "ExecuteStmt") {
        info->executes = info->classification;
        resolve_execute(*info);
      } else if (info->statement->mirror == MirrorPlan::kRowImage) {
        parse->query = protocol::with_row_image(info->text, *info->statement, primary_dialect());
        info->rewritten = true;
        info->prepared_epoch = plan_epoch();
      } else if (auto prepare_image = prepare_with_row_image(info->text, *info->statement)) {
        parse->query = *prepare_image;
        info->prepare_image = std::move(*prepare_image);
      }
    }
    if (parse->statement.empty() && info->statement != nullptr && !info->rewritten &&
        info->statement->kind == StatementKind::kRead && frame.body.size() <= kMaxUnnamedRead) {
      // Clients that bind values parse the same reads into the unnamed statement again and
      // again: one PreparedInfo per text keeps its cached RowDescription between them.
      if (unnamed_reads_.size() >= kUnnamedReads) unnamed_reads_.clear();
      unnamed_reads_.emplace(frame.body, info);
    }
    Expect expect{ExpectKind::kParse};
    std::shared_ptr<const PreparedInfo>& entry = statements_[parse->statement];
    expect.statement_before.emplace(parse->statement, std::exchange(entry, std::move(info)));
    protocol::append_parse(to_primary_, *parse);
    expects_.push_back(std::move(expect));
    return std::nullopt;
  }

  std::optional<Closing> on_bind(const protocol::Frame& frame) {
    auto bind = protocol::parse_bind(frame.body);
    if (!bind) return protocol_violation(bind.error());
    auto found = statements_.find(bind->statement);
    std::shared_ptr<const PreparedInfo> prepared =
        found == statements_.end() ? nullptr : found->second;
    if (prepared && prepared->executes && executed_now(*prepared) != prepared->classification) {
      auto resolved = std::make_shared<PreparedInfo>(*prepared); // the name was prepared again
      resolved->description.reset();
      resolve_execute(*resolved);
      found->second = resolved;
      prepared = std::move(resolved);
    }
    if (prepared && prepared->rewritten && !prepared->statement->has_returning) {
      bind->result_formats.clear(); // the client expects no rows; the image comes as text
    }
    if (bind->portal.empty() && (!held_parse_ || bind->statement.empty()) &&
        may_be_routed(prepared.get())) {
      held_bind_ = HeldBind{};
      held_bind_->unnamed_statement = bind->statement.empty();
      protocol::append_message(held_bind_->bind, frame.tag, frame.body);
    } else {
      if (held_parse_) release_held_parse();
      if (bind->statement.empty()) send_unsent_parse();
      if (prepared && prepared->rewritten) {
        BoundPlans::Hold hold; // taken before the epoch is compared (see BoundPlans)
        if (prepared->executes) {
          prepare_sql_name_again(prepared->executes->statements[0]);
        } else {
          hold = services_.bound_plans().hold(prepared->statement->target.name);
          if (!prepared->statement->returning_star &&
              prepared_before_ddl(*prepared, hold.epoch() + private_ddl_)) {
            hold = BoundPlans::Hold(); // prepared again in the Bind's transaction: no DDL between
            prepare_again(bind->statement, prepared);
          }
        }
        if (!fit_result_formats(*prepared, bind->result_formats)) {
          describe_internally(bind->statement, prepared);
          undescribed_bind_ =
              UndescribedBind{*bind, prepared, std::move(hold)}; // see bind_once_described
        } else {
          send_bind(*bind, prepared, std::move(hold));
        }
      } else {
        send_bind(*bind, nullptr);
      }
    }
    std::string portal = bind->portal; // not in the assignment: its right side, run first, moves
    portals_[portal] = PortalInfo{prepared, std::move(*bind), PortalInfo::Ran::kNot, {}};
    return std::nullopt;
  }

  void send_bind(const protocol::BindMessage& bind, std::shared_ptr<const PreparedInfo> rewritten,
                 BoundPlans::Hold hold = {}) {
    protocol::append_bind(to_primary_, bind);
    Expect expect{ExpectKind::kBind};
    expect.rewritten_statement = std::move(rewritten);
    expect.bound_plan = std::move(hold);
    expects_.push_back(std::move(expect));
  }

  // ---- a rewritten write prepared again, and bound with formats for its image ------------
  //
  // A column added to (or dropped from) a table changes what the row image `t.*` returns,
  // and PostgreSQL refuses to run a prepared statement whose result changed ("cached plan
  // must not change result type", 0A000), though the client's own columns are unchanged.

  // Whether a rewritten statement must be prepared again before it is bound, at schema epoch
  // `epoch`: it was prepared before DDL through switchyard, or refused so since (DDL that
  // bypassed it). Not asked of a client's own `RETURNING *`, which changes with the table
  // too: PostgreSQL's refusal is then the client's to see, as without switchyard; nor of an
  // `EXECUTE name`, which is not the statement prepared.
  static bool prepared_before_ddl(const PreparedInfo& prepared, uint64_t epoch) {
    return prepared.prepared_epoch != epoch;
  }

  // The schema epoch as this session's own books see it: DDL through switchyard, and this
  // session's private DDL (a temporary table may take the place of a table its statements
  // name). Both only grow, so the sum moves exactly when either does.
  uint64_t session_schema_epoch() const {
    return services_.schema_epoch().load(std::memory_order_relaxed) + private_ddl_;
  }
  // BoundPlans::plan_epoch as this session's books see it.
  std::optional<uint64_t> plan_epoch() const {
    auto shared = services_.bound_plans().plan_epoch();
    return shared ? std::optional<uint64_t>(*shared + private_ddl_) : std::nullopt;
  }

  // Prepares the statement `name` again on the primary, under the same name, and describes it.
  // Should the text no longer prepare (a column it names was dropped), the client sees that
  // error in place of its Bind's, as it would have seen it at the Bind; the books stay stale,
  // so the next Bind tries again.
  void prepare_again(const std::string& name, const std::shared_ptr<const PreparedInfo>& prepared) {
    protocol::append_close(to_primary_, 'S', name);
    protocol::append_parse(
        to_primary_,
        protocol::ParseMessage{
            name, protocol::with_row_image(prepared->text, *prepared->statement, primary_dialect()),
            prepared->types});
    for (ExpectKind kind : {ExpectKind::kClose, ExpectKind::kParse}) {
      Expect expect{kind};
      expect.internal = true;
      expects_.push_back(std::move(expect));
    }
    describe_internally(name, prepared);
    prepared->prepared_epoch = plan_epoch();
    prepared->primary_width.reset();
  }

  // The write an `EXECUTE name` runs prepared again under its name where DDL changed its
  // table (see statements_preparing_again), ahead of the client's Bind: each statement by a
  // Parse, Bind and Execute of switchyard's own statement and portal. The statement is closed
  // before the Execute (its portal runs on without it), so none is left when one fails; a
  // portal left in a failed transaction block ends with it, and is closed first anyway.
  // Should the probe fail, the client sees that error in place of its Bind's answer.
  void prepare_sql_name_again(const protocol::Statement& execute) {
    std::optional<SqlPrepared> books_before;
    for (const std::string& sql :
         statements_preparing_again(execute, session_schema_epoch(), books_before)) {
      protocol::append_close(to_primary_, 'P', kInternalName);
      protocol::append_parse(to_primary_,
                             protocol::ParseMessage{std::string(kInternalName), sql, {}});
      protocol::BindMessage bind;
      bind.portal = kInternalName;
      bind.statement = kInternalName;
      protocol::append_bind(to_primary_, bind);
      protocol::append_close(to_primary_, 'S', kInternalName);
      protocol::append_execute(to_primary_, kInternalName, 0);
      protocol::append_close(to_primary_, 'P', kInternalName);
      for (ExpectKind kind : {ExpectKind::kClose, ExpectKind::kParse, ExpectKind::kBind,
                              ExpectKind::kClose, ExpectKind::kExecute, ExpectKind::kClose}) {
        Expect expect{kind};
        expect.internal = true;
        // The books are put back from the first message that fails or is skipped.
        if (kind == ExpectKind::kExecute && books_before) {
          expect.prepared_before = std::move(books_before);
          books_before = std::nullopt;
        }
        expects_.push_back(std::move(expect));
      }
    }
  }

  void describe_internally(const std::string& name, std::shared_ptr<const PreparedInfo> prepared) {
    protocol::append_describe(to_primary_, 'S', name);
    Expect describe{ExpectKind::kDescribeStatement};
    describe.internal = true;
    describe.rewritten = true;
    describe.rewritten_statement = std::move(prepared);
    expects_.push_back(std::move(describe));
  }

  // The client's result formats fitted to the statement the primary runs. PostgreSQL takes
  // none, one for all, or exactly one per column; one per column (pgJDBC's, binary for ids)
  // must cover the image's columns too, which are text. False when that takes the
  // statement's width and no Describe told it yet.
  static bool fit_result_formats(const PreparedInfo& prepared, std::vector<uint16_t>& formats) {
    if (formats.size() < 2) return true;
    if (!prepared.primary_width) return false;
    // A count other than the client's columns is PostgreSQL's to refuse.
    if (formats.size() == prepared.primary_width->client) {
      formats.resize(prepared.primary_width->total, 0);
    }
    return true;
  }

  // Sends the Bind on_bind kept back once the primary described its statement.
  asio::awaitable<std::optional<Closing>> bind_once_described() {
    auto [bind, prepared, hold] = std::move(*undescribed_bind_);
    undescribed_bind_.reset();
    if (auto closing = co_await drain()) co_return closing;
    if (skipping_to_sync()) co_return std::nullopt; // an error before it: PostgreSQL skips it
    fit_result_formats(*prepared, bind.result_formats);
    send_bind(bind, std::move(prepared), std::move(hold));
    co_return std::nullopt;
  }

  // ---- a routed bound read's Bind and Describe kept from the primary ------------------

  // Whether a portal of `prepared`, bound now, may have its read answered by the secondary:
  // a read outside any transaction (a portal of a transaction block could outlive the cycle).
  // Only the unnamed portal is held: binding it again replaces it, where binding a named
  // portal that exists is an error only the primary can raise.
  bool may_be_routed(const PreparedInfo* prepared) const {
    return prepared != nullptr && prepared->statement != nullptr && !prepared->rewritten &&
           prepared->statement->kind == StatementKind::kRead &&
           activity_.transaction_status == 'I' && !expected_in_transaction_ && link_.available();
  }

  // The cached RowDescription answering a Describe of `portal`, if still valid.
  const std::string* cached_description(const PortalInfo& portal) const {
    if (!portal.prepared || !portal.prepared->description) return nullptr;
    const PreparedInfo::Description& cached = *portal.prepared->description;
    if (cached.result_formats != portal.bind.result_formats ||
        cached.schema_epoch != session_schema_epoch() ||
        Clock::now() - cached.described_at > ShapeRegistry::kTtl) {
      return nullptr;
    }
    return &cached.message;
  }

  // The held Bind (and Describe) go to the primary after all: the read runs there.
  void release_held_bind() {
    HeldBind held = std::move(*held_bind_);
    held_bind_.reset();
    if (held_parse_) {
      release_held_parse();
    } else if (held.unnamed_statement) {
      send_unsent_parse();
    }
    to_primary_ += held.bind;
    expects_.push_back(Expect{ExpectKind::kBind});
    if (held.description) {
      protocol::append_describe(to_primary_, 'P', "");
      expects_.push_back(Expect{ExpectKind::kDescribePortal});
    }
  }

  // PostgreSQL skipped the held messages with the rest of a failed cycle: it has neither
  // the unnamed statement nor the unnamed portal they would have made.
  void drop_held() {
    if (held_bind_) portals_.erase("");
    if (held_parse_) statements_.erase("");
    held_bind_.reset();
    held_parse_.reset();
  }

  // The held Parse goes to the primary after all, its ParseComplete for the client.
  void release_held_parse() {
    to_primary_ += *held_parse_;
    held_parse_.reset();
    expects_.push_back(Expect{ExpectKind::kParse});
  }

  // A message needs the unnamed statement the secondary's read left unsent: its Parse,
  // with the ParseComplete the client already had from switchyard hidden.
  void send_unsent_parse() {
    if (unsent_parse_.empty()) return;
    to_primary_ += unsent_parse_;
    unsent_parse_.clear();
    Expect parse{ExpectKind::kParse};
    parse.internal = true;
    expects_.push_back(std::move(parse));
  }

  // A message names a portal the secondary answered, so the primary needs it: its Bind,
  // with the BindComplete the client already had from switchyard hidden.
  void create_on_primary(PortalInfo& portal) {
    if (portal.unsent_bind.empty()) return;
    if (portal.bind.statement.empty()) send_unsent_parse();
    to_primary_ += portal.unsent_bind;
    portal.unsent_bind.clear();
    Expect bind{ExpectKind::kBind};
    bind.internal = true;
    expects_.push_back(std::move(bind));
  }

  // The client executes again a portal the secondary ran to its end, which PostgreSQL
  // answers from the end (no rows): the primary's portal is run there first, unseen.
  void run_out_on_primary(PortalInfo& portal, const std::string& name) {
    create_on_primary(portal);
    protocol::append_execute(to_primary_, name, 0);
    Expect run{ExpectKind::kExecute};
    run.internal = true;
    expects_.push_back(std::move(run));
    portal.ran = PortalInfo::Ran::kOnPrimary;
  }

  std::optional<Closing> on_describe(const protocol::Frame& frame) {
    auto target = protocol::parse_target(frame.body);
    if (!target) return protocol_violation(target.error());
    std::shared_ptr<const PreparedInfo> prepared;
    PortalInfo* portal = nullptr;
    if (target->kind == 'S') {
      if (auto found = statements_.find(target->name); found != statements_.end())
        prepared = found->second;
      if (target->name.empty()) send_unsent_parse();
    } else if (auto found = portals_.find(target->name); found != portals_.end()) {
      portal = &found->second;
      prepared = portal->prepared;
      bool held = held_bind_ && !held_bind_->description && target->name.empty();
      if (const std::string* cached = held ? cached_description(*portal) : nullptr) {
        held_bind_->description = *cached; // answered with the read, or sent if it falls back
        return std::nullopt;
      }
    }
    if (held_bind_) release_held_bind();
    if (portal != nullptr) create_on_primary(*portal);
    forward(frame);
    Expect expect{target->kind == 'S' ? ExpectKind::kDescribeStatement
                                      : ExpectKind::kDescribePortal};
    expect.rewritten = prepared && prepared->rewritten;
    if (expect.rewritten) {
      expect.rewritten_statement = prepared;
      expect.sql_name = executed_sql_name(*prepared); // PostgreSQL checks it when describing
    }
    if (portal != nullptr && may_be_routed(prepared.get())) {
      expect.describes = prepared;
      expect.result_formats = portal->bind.result_formats;
    }
    expects_.push_back(std::move(expect));
    return std::nullopt;
  }

  asio::awaitable<std::optional<Closing>> on_execute(const protocol::Frame& frame) {
    auto execute = protocol::parse_execute(frame.body);
    if (!execute) co_return protocol_violation(execute.error());
    if (held_bind_ && !execute->portal.empty()) release_held_bind();
    auto found = portals_.find(execute->portal);
    PortalInfo* portal = found == portals_.end() ? nullptr : &found->second;
    const PreparedInfo* prepared = portal ? portal->prepared.get() : nullptr;
    const protocol::Statement* s = prepared ? prepared->statement : nullptr;
    std::shared_ptr<const protocol::Classification> keep =
        prepared ? prepared->classification : nullptr;
    // Asked when the statement was parsed or bound, with nothing run since.
    std::optional<bool> own_temporaries;
    if (auto asked = std::exchange(temporaries_asked_, nullptr); keep && asked == keep)
      own_temporaries = temporaries_own_;
    if (s != nullptr && !prepared->rewritten) {
      // An EXECUTE of a read is that read, by what the name stands for now (see on_query).
      if (auto executed = executed_statement(*s);
          executed && executed->statements[0].kind == StatementKind::kRead) {
        keep = std::move(executed);
        s = keep->statements.data();
      }
    }
    if (portal != nullptr && portal->ran == PortalInfo::Ran::kOnSecondary) {
      run_out_on_primary(*portal, execute->portal);
    }
    // A read fetched whole, by the portal's first Execute, may be routed; one fetched in
    // parts keeps its portal's backend.
    if (s != nullptr && execute->max_rows == 0 && !prepared->rewritten &&
        portal->ran == PortalInfo::Ran::kNot) {
      auto read_policy = services_.read_policy();
      const config::ReadRouting& policy = *read_policy;
      if (auto route = route_reads(std::span(s, 1), policy)) {
        if (route->target == ReadTarget::kSecondary && !binary_results_portable(portal->bind)) {
          *route = {ReadTarget::kPrimary, RouteReason::kUnsafe};
        }
        co_return co_await serve_reads(ReadJob{prepared->text, s->ordered, portal, &frame}, *route,
                                       policy);
      }
      count_unsafe_reads(std::span(s, 1));
    }
    if (held_bind_) release_held_bind();
    if (portal != nullptr) portal->ran = PortalInfo::Ran::kOnPrimary;
    stats_.add_queries(BackendRole::kPrimary, 1);
    if (s == nullptr) {
      forward(frame);
      expects_.push_back(Expect{ExpectKind::kExecute});
      co_return std::nullopt;
    }
    note_for_routing(*s, prepared->text);
    if (s->transaction == TransactionOp::kRollback && link_.read_transaction_open()) {
      if (auto c = co_await drain()) co_return c;
      if (skipping_to_sync()) co_return std::nullopt;
      co_await link_.end_read_transaction();
    }
    if (ends_transaction(s->transaction)) {
      if (auto c = co_await drain()) co_return c;
      // An earlier message of the cycle failed: PostgreSQL skips this COMMIT, and the
      // secondary must not commit either.
      if (skipping_to_sync()) co_return std::nullopt;
      co_await link_.end_read_transaction();
      if (hands_over(s->transaction)) {
        link_.reserve();
      } else {
        co_await commit_secondary_first();
      }
    }
    if (s->transaction == TransactionOp::kBegin) expected_in_transaction_ = true;
    if (s->transaction == TransactionOp::kCommit || s->transaction == TransactionOp::kRollback) {
      expected_in_transaction_ = false;
    }
    if (s->mirror != MirrorPlan::kNone && services_.role_fence().draining()) {
      co_await pass_role_fence();
      if (skipping_to_sync()) co_return std::nullopt;
    }
    if (s->mirror != MirrorPlan::kNone && !expected_in_transaction_) {
      // The cycle's implicit transaction holds the write until the Sync (see on_sync).
      (wants_wrap(*s) ? cycle_writes_ : cycle_autocommit_mirror_) = true;
    }
    Expect expect{ExpectKind::kExecute};
    expect.private_ddl = s->private_ddl || own_temporaries.value_or(false);
    if (s->kind == StatementKind::kDdl) {
      if (auto c = co_await before_sending_ddl(*s, expect)) co_return c;
    }
    if (prepared->rewritten) {
      // The image's columns come from a Describe of our own, answered just before the rows.
      protocol::append_describe(to_primary_, 'P', execute->portal);
      Expect describe{ExpectKind::kDescribePortal};
      describe.internal = true;
      expects_.push_back(std::move(describe));
      // Without RETURNING of its own the client expects no rows, so no row limit applies.
      uint32_t max_rows = s->has_returning ? execute->max_rows : 0;
      protocol::append_execute(to_primary_, execute->portal, max_rows);
    } else {
      forward(frame);
    }
    expect.rewritten = prepared->rewritten;
    expect.sql_name = executed_sql_name(*prepared);
    note_prepared_names(*s, prepared->prepare_image, expect);
    expect.keep = std::move(keep);
    expect.statement = s;
    expect.op = make_op(*s, prepared->text, portal, own_temporaries);
    if (s->large_object_call) {
      expect.large_object_call = protocol::sql_large_object_call(prepared->text, &portal->bind);
    }
    note_sent(*s, expected_in_transaction_, expect.private_ddl);
    expect.hand_over = hands_over(s->transaction);
    expects_.push_back(std::move(expect));
    if (s->mirror == MirrorPlan::kCopyIn) {
      // The data follows, and often a Sync before it (tokio-postgres) that PostgreSQL
      // ignores in COPY: relay it all here, before the pump takes a Sync as a cycle's end.
      copy_in_started_ = false;
      co_return co_await relay_copy_in();
    }
    co_return std::nullopt;
  }

  // ---- BEGIN answered at once, sent with the next query --------------------------------

  // The tag to answer `sql` with when it is a BEGIN switchyard may defer: the session is idle
  // with nothing in flight, and the query is that one statement.
  std::optional<std::string_view> deferrable_begin(const protocol::Classification& c,
                                                   std::string_view sql) const {
    if (!c.error.empty() || c.statements.size() != 1 ||
        c.statements[0].transaction != TransactionOp::kBegin || deferred_begin_ ||
        !expects_.empty() || cycle_open() || activity_.transaction_status != 'I' ||
        expected_in_transaction_) {
      return std::nullopt;
    }
    return begin_tag(sql);
  }

  // An idle session's BEGIN is answered at once and reaches the primary in front of the
  // session's next query, in the same Query message: one round trip to the primary fewer
  // per transaction. A BEGIN takes no snapshot and no lock, so only now() (and
  // pg_stat_activity) tell: they read the time of that next query. Should the BEGIN fail
  // there, PostgreSQL runs none of the query after it.
  asio::awaitable<std::optional<Closing>> defer_begin(const protocol::Statement& s,
                                                      std::string_view text, std::string_view tag) {
    stats_.add_queries(BackendRole::kPrimary, 1);
    note_for_routing(s, text);
    expected_in_transaction_ = true;
    activity_.transaction_status = 'T';
    deferred_begin_ = std::string(text);
    std::string answer;
    protocol::MessageBuilder(answer, 'C').cstring(tag);
    protocol::append_ready_for_query(answer, 'T');
    co_return co_await write_ready(answer);
  }

  // Appends a query of the client's for the primary, behind the BEGIN it deferred, if any.
  void append_client_query(std::string_view text, Expect& expect) {
    if (!deferred_begin_) {
      protocol::append_query(to_primary_, text);
      return;
    }
    std::string prefixed = std::move(*deferred_begin_);
    deferred_begin_.reset();
    prefixed += "\n;"; // the newline ends a trailing "-- comment" of the BEGIN
    ++expect.completes_to_drop;
    expect.position_shift += character_count(prefixed);
    prefixed += text;
    protocol::append_query(to_primary_, prefixed);
  }

  // The deferred BEGIN as a Query of its own whose answers the client does not see.
  void send_hidden_begin() {
    protocol::append_query(to_primary_, *deferred_begin_);
    deferred_begin_.reset();
    Expect expect{ExpectKind::kQuery};
    expect.internal = true;
    expect.hold_ready = true;
    expects_.push_back(std::move(expect));
  }

  // Before any other message reaches the primary, so must the BEGIN deferred before it.
  asio::awaitable<std::optional<Closing>> send_deferred_begin(char tag) {
    switch (tag) {
    case 'X': // nothing began on the primary, nothing to end: its connection may be kept
      deferred_begin_.reset();
      activity_.transaction_status = 'I';
      co_return std::nullopt;
    case 'd':
    case 'c':
    case 'f': co_return std::nullopt; // COPY messages outside a COPY: PostgreSQL ignores them
    case 'P':
    case 'B':
    case 'D':
    case 'E':
    case 'C':
    case 'S':
    case 'H':
      run_named(*deferred_begin_); // ahead of the cycle, which it fails if it fails
      deferred_begin_.reset();
      co_return std::nullopt;
    default: break;
    }
    // A FunctionCall runs whatever came before it: wait and make sure the BEGIN held.
    send_hidden_begin();
    if (auto c = co_await drain()) co_return c;
    if (activity_.transaction_status == 'T') co_return std::nullopt;
    co_return refuse(CloseReason::kBackendRejected, sqlstate::kInternalError,
                     "the primary database did not begin the transaction this session began");
  }

  // Whether a role swap happened since this session began: its primary is the old one.
  bool stale_roles() const {
    return services_.role_fence().generation() != runtime_->role_generation;
  }

  // A write of a session with the current roles waits while sessions with the roles from
  // before a swap remain (see RoleFence): writes in the two database orders never overlap.
  // Callers check draining() first, so the write path pays one atomic load, no coroutine.
  asio::awaitable<void> pass_role_fence() {
    RoleFence& fence = services_.role_fence();
    asio::steady_timer timer(co_await asio::this_coro::executor);
    while (fence.draining() && !stale_roles()) {
      timer.expires_after(kRoleFencePoll);
      co_await timer.async_wait(use_tuple);
    }
  }

  // A transaction statement (the client's deferred BEGIN) through a named statement and
  // portal, closed again, leaving the client's statements and portals as they were. Should
  // it fail, PostgreSQL skips the rest of the cycle and the client gets the error.
  void run_named(std::string_view sql) {
    constexpr std::string_view kName = "switchyard_own";
    protocol::append_parse(to_primary_,
                           protocol::ParseMessage{std::string(kName), std::string(sql), {}});
    protocol::append_bind(
        to_primary_, protocol::BindMessage{std::string(kName), std::string(kName), {}, {}, {}});
    protocol::append_execute(to_primary_, kName, 0);
    protocol::append_close(to_primary_, 'P', kName);
    protocol::append_close(to_primary_, 'S', kName);
    for (ExpectKind kind : {ExpectKind::kParse, ExpectKind::kBind, ExpectKind::kExecute,
                            ExpectKind::kClose, ExpectKind::kClose}) {
      Expect expect{kind};
      expect.internal = true;
      expects_.push_back(std::move(expect));
    }
  }

  std::optional<Closing> on_close(const protocol::Frame& frame) {
    auto target = protocol::parse_target(frame.body);
    if (!target) return protocol_violation(target.error());
    Expect expect{ExpectKind::kClose};
    if (target->kind == 'S') {
      if (auto known = statements_.find(target->name); known != statements_.end()) {
        expect.statement_before.emplace(known->first, std::move(known->second));
        statements_.erase(known);
      }
      if (target->name.empty()) unsent_parse_.clear(); // the primary may close its older one
    } else if (auto known = portals_.find(target->name); known != portals_.end()) {
      expect.closed_portal.emplace(known->first, std::move(known->second));
      portals_.erase(known);
    }
    forward(frame);
    expects_.push_back(std::move(expect));
    return std::nullopt;
  }

  asio::awaitable<std::optional<Closing>> on_sync(const protocol::Frame& frame) {
    if (auto unnamed = portals_.find(""); unnamed != portals_.end()) {
      // The cycle's implicit transaction ends here and its portals with it, unless the
      // cycle began a transaction block, which keeps them.
      if (expected_in_transaction_) {
        create_on_primary(unnamed->second);
      } else {
        unnamed->second.unsent_bind.clear();
      }
    }
    if (primary_bytes_queued() == cycle_start_bytes_ && expects_.empty() && !cycle_failed_ &&
        !holding_ && to_client_.empty() && !cycle_writes_ && !cycle_autocommit_mirror_ &&
        !pending_shadow_ && !expected_in_transaction_ && activity_.transaction_status == 'I') {
      // Nothing of the cycle reached the primary (the secondary answered its reads): the
      // primary's answer to this Sync could only be the status it already reported.
      std::string ready;
      protocol::append_ready_for_query(ready, 'I');
      if (auto ec = co_await writer_.write(ready); ec) co_return co_await client_lost(ec);
      co_return std::nullopt;
    }
    // Counted from here: a session waiting for the secondary's commit is not idle (a role
    // swap closes idle ones, which would roll the primary's side back).
    activity_.sync_sent(Clock::now());
    Expect expect{ExpectKind::kSync};
    if (std::exchange(cycle_writes_, false)) {
      // This Sync commits the cycle's autocommit writes: the secondary's commit comes first,
      // once the cycle's answers (a Flush asks for them) show that it did not fail. A failed
      // cycle rolls back at the Sync; a BEGIN in it made the writes part of the client's block.
      pending_shadow_.reset(); // the cycle also wrote: nothing to compare in isolation
      if (auto c = co_await drain()) co_return c;
      bool ends_writes = !expected_in_transaction_;
      if (ends_writes && cycle_failed_) {
        link_.discard();
      } else if (ends_writes && hands_over(TransactionOp::kCommit)) {
        link_.reserve();
        expect.hand_over = true;
      } else if (ends_writes) {
        co_await link_.commit();
      }
    }
    forward(frame);
    cycle_start_bytes_ = primary_bytes_queued();
    bool hold = cycle_autocommit_mirror_;
    expect.hold_ready = hold;
    expects_.push_back(std::move(expect));
    if (!hold) {
      if (pending_shadow_) co_return co_await run_pending_shadow();
      co_return std::nullopt;
    }
    pending_shadow_.reset(); // the cycle also wrote: nothing to compare in isolation
    cycle_autocommit_mirror_ = false;
    if (auto c = co_await drain()) co_return c;
    if (held_status_ == 'I') co_await commit_autocommit_ddl();
    std::string ready;
    protocol::append_ready_for_query(ready, held_status_);
    co_return co_await write_ready(ready);
  }

  // ---- reads: routed by cohort, retried on the primary, sampled for comparison ---------

  // Where a Query made only of reads goes, by `policy`. Null when it holds anything else.
  std::optional<routing::RouteDecision> route_reads(std::span<const protocol::Statement> statements,
                                                    const config::ReadRouting& policy) {
    if (statements.empty()) return std::nullopt;
    bool safe = !transaction_pinned_;
    for (const protocol::Statement& s : statements) {
      bool listed_read = routing::is_safe_read(s, policy.safe_functions, known_read_only_);
      if (s.kind != StatementKind::kRead && !listed_read) return std::nullopt;
      safe = safe && listed_read;
    }
    auto decision = router_.route(
        policy, routing::ReadRequest{safe, expected_in_transaction_, transaction_wrote_});
    if (decision.target == ReadTarget::kSecondary && !link_.available()) {
      decision = {ReadTarget::kPrimary, RouteReason::kSecondaryUnavailable};
    } else if (decision.target == ReadTarget::kSecondary && link_.has_unapplied()) {
      // async mode: the secondary has not applied this session's last write yet
      decision = {ReadTarget::kPrimary, RouteReason::kUnappliedWrites};
    }
    return decision;
  }

  // Binary results are the backend's own encoding of its column types, which a SQLite
  // secondary maps differently (INTEGER is int8 whatever the primary's column is).
  bool binary_results_portable(const protocol::BindMessage& bind) const {
    bool binary = std::any_of(bind.result_formats.begin(), bind.result_formats.end(),
                              [](uint16_t format) { return format != 0; });
    return !binary || dialect_of(*runtime_->config->secondary) == protocol::Dialect::kPostgres;
  }

  // ---- functions the primary's catalog says cannot write ------------------------------

  // Notes the functions SELECTs and row-image writes among `statements` call that are off
  // the built-in list and not known to FunctionVolatility yet; true if there are any to learn.
  bool note_unknown_functions(std::span<const protocol::Statement> statements) {
    if (primary_dialect() != protocol::Dialect::kPostgres) return false;
    uint64_t epoch = services_.schema_epoch().load(std::memory_order_relaxed);
    auto now = Clock::now();
    for (const protocol::Statement& s : statements) {
      bool plain_select = s.node == "SelectStmt" && !s.locking && !s.nested_write;
      if (!plain_select && s.mirror != MirrorPlan::kRowImage) continue;
      for (const std::string& name : s.unlisted_functions) {
        if (functions_to_learn_.size() < kFunctionsToLearn &&
            !functions_->read_only(name, epoch, now) &&
            std::find(functions_to_learn_.begin(), functions_to_learn_.end(), name) ==
                functions_to_learn_.end()) {
          functions_to_learn_.push_back(name);
        }
      }
    }
    return !functions_to_learn_.empty();
  }

  // Whether a row-image write calls a function that may write tables its image does not
  // carry: one of PostgreSQL's own that may, or one the primary's catalog has not said is
  // STABLE or IMMUTABLE (those cannot write) nor the configuration lists as safe
  // (read_routing.safe_functions). Only a PostgreSQL secondary can run the function; a
  // SQLite primary has none that write.
  bool calls_writing_functions(const protocol::Statement& s) const {
    if (primary_dialect() != protocol::Dialect::kPostgres ||
        dialect_of(*runtime_->config->secondary) != protocol::Dialect::kPostgres) {
      return false;
    }
    auto policy = services_.read_policy();
    return std::ranges::any_of(s.writing_calls, [&](const std::string& name) {
      return !known_read_only_(name) &&
             std::ranges::find(policy->safe_functions, name) == policy->safe_functions.end();
    });
  }

  // Whether the session is idle outside a transaction with nothing in flight: a query of
  // switchyard's own then changes nothing of the client's.
  bool idle_outside_transaction() const {
    return activity_.transaction_status == 'I' && !expected_in_transaction_ && !deferred_begin_ &&
           expects_.empty() && !cycle_open();
  }

  // Asks the primary's catalog about functions_to_learn_; called when the session is
  // idle_outside_transaction (the names wait for such a moment). A failure leaves them
  // unknown: a SELECT calling one is taken for a write, as it was before.
  asio::awaitable<std::optional<Closing>> learn_functions() {
    std::vector<std::string> names = std::move(functions_to_learn_);
    functions_to_learn_.clear();
    uint64_t epoch = services_.schema_epoch().load(std::memory_order_relaxed);
    auto asked = Clock::now();
    if (auto c = co_await ask_primary(FunctionVolatility::lookup_sql(names))) co_return c;
    if (!captured_.error.empty()) {
      spdlog::debug("session {}: cannot read the primary's functions: {}", peer_,
                    describe_error(captured_.error));
      co_return std::nullopt;
    }
    functions_->learn(names, captured_.rows, epoch, asked);
    co_return std::nullopt;
  }

  // SELECTs that lock rows or may write (unknown functions) are reads the primary keeps.
  void count_unsafe_reads(std::span<const protocol::Statement> statements) {
    for (const protocol::Statement& s : statements) {
      if (s.node == "SelectStmt" && s.kind == StatementKind::kWrite) {
        services_.metrics().reads(BackendRole::kPrimary, RouteReason::kUnsafe).Increment();
      }
    }
  }

  // What routing must know of a statement the client runs: how its transaction began and
  // whether it wrote. A setting counts as a write: should the transaction roll back, the
  // secondary connection a read ran on would keep it.
  void note_for_routing(const protocol::Statement& s, std::string_view text) {
    if (s.transaction == TransactionOp::kBegin) begin_sql_ = std::string(text);
    if (s.kind == StatementKind::kWrite || s.kind == StatementKind::kDdl ||
        s.kind == StatementKind::kUnknown ||
        (s.kind == StatementKind::kSession && s.mirror != MirrorPlan::kNone)) {
      transaction_wrote_ = true;
    }
  }

  bool sampled(double percent) {
    return std::uniform_real_distribution<double>(0, 100)(sampler_) < percent;
  }

  //! A read to serve: a simple Query, or the Execute of a bound read (`portal` set).
  struct ReadJob {
    std::string_view sql;
    bool ordered = false;
    PortalInfo* portal = nullptr;
    const protocol::Frame* execute = nullptr; // the client's Execute, for the primary
  };

  // Sends the read to the primary, digesting its rows when it is being compared.
  void read_on_primary(const ReadJob& job, bool digest) {
    stats_.add_queries(BackendRole::kPrimary, 1);
    Expect expect{job.portal ? ExpectKind::kExecute : ExpectKind::kQuery};
    if (job.portal) {
      forward(*job.execute);
    } else {
      append_client_query(job.sql, expect);
    }
    expect.digest = digest;
    expect.read_started = Clock::now();
    if (digest) primary_digest_ = routing::ResultDigest(job.ordered);
    expects_.push_back(std::move(expect));
  }

  SecondaryLink::Read secondary_read(const ReadJob& job, bool in_transaction) {
    SecondaryLink::Read read;
    read.sql = job.sql;
    if (job.portal) {
      read.parameter_types = &job.portal->prepared->types;
      read.bind = &job.portal->bind;
    }
    if (in_transaction) read.begin = &begin_sql_;
    return read;
  }

  asio::awaitable<std::optional<Closing>>
  serve_reads(const ReadJob& job, routing::RouteDecision route, const config::ReadRouting& policy) {
    // Only autocommit reads are compared: a shadow run that fails must not abort the
    // client's transaction on either side.
    bool compare = !expected_in_transaction_ && !link_.has_unapplied() &&
                   policy.compare_percent > 0 && sampled(policy.compare_percent);
    if (held_bind_ && (route.target != ReadTarget::kSecondary || compare)) release_held_bind();
    // A bound read whose cycle so far only parsed, bound and described runs on the secondary
    // while the primary answers those: the transaction status is already known.
    bool overlap = job.portal && route.target == ReadTarget::kSecondary && !compare &&
                   std::all_of(expects_.begin(), expects_.end(), [](const Expect& e) {
                     return !e.internal && e.kind != ExpectKind::kExecute &&
                            e.kind != ExpectKind::kSync && e.kind != ExpectKind::kQuery;
                   });
    if ((route.target == ReadTarget::kSecondary && !overlap) || compare) {
      if (auto closing = co_await drain()) co_return closing;
      // An earlier message of this extended-protocol cycle failed: PostgreSQL skips the
      // Bind and Execute, and so does switchyard.
      if (job.portal && cycle_failed_) {
        drop_held();
        co_return std::nullopt;
      }
    }
    if (route.target == ReadTarget::kSecondary && activity_.transaction_status == 'E') {
      route.reason = RouteReason::kUnsafe; // a failed transaction: the primary answers 25P02
    } else if (route.target == ReadTarget::kSecondary) {
      if (activity_.transaction_status == 'I') co_await link_.end_read_transaction();
      auto served = co_await read_on_secondary(job, compare, overlap, policy);
      if (served.closing) co_return std::move(served.closing);
      if (served.answered) co_return std::nullopt;
      route.reason = served.fallback;
      compare = false;
    }
    services_.metrics().reads(BackendRole::kPrimary, route.reason).Increment();
    if (held_bind_) release_held_bind();
    if (job.portal != nullptr) job.portal->ran = PortalInfo::Ran::kOnPrimary;
    read_on_primary(job, compare);
    if (!compare) co_return std::nullopt;
    // The client has its answer once the primary's is in; then the secondary's turn.
    if (auto closing = co_await drain()) co_return closing;
    routing::ResultDigest secondary(job.ordered);
    auto answer = co_await read_from_secondary(link_, secondary_read(job, false), policy.timeout,
                                               nullptr, 0, secondary);
    bool answered = answer.state == SecondaryAnswer::State::kComplete ||
                    (answer.state == SecondaryAnswer::State::kFailed &&
                     answer.failure == monitoring::ReadFallback::kSecondaryError);
    record_comparison(job.sql, answered ? std::string() : answer.error, primary_digest_, secondary);
    co_return std::nullopt;
  }

  struct SecondaryServed {
    bool answered = false; // the client has its answer; false: run it on the primary
    std::optional<Closing> closing;
    RouteReason fallback = RouteReason::kSecondaryUnavailable; // why not, when not answered
  };

  // The body of the secondary's RowDescription `body` with the primary's table OIDs, column
  // numbers and type OIDs; nullopt when it names objects not matched yet (`unknown`) or
  // not on the primary.
  std::optional<std::string> describe_as_primary(std::string_view body,
                                                 OidTranslation::Unknown& unknown) {
    auto now = Clock::now();
    uint64_t epoch = session_schema_epoch();
    if (!oids_ || epoch != oids_epoch_ || now - oids_at_ > kDescribedTtl) {
      oids_ = services_.oid_translation(oid_key_);
      oids_epoch_ = epoch;
      oids_at_ = now;
      described_.clear();
    }
    if (auto known = described_.find(body); known != described_.end()) return known->second;
    auto described = oids_->translate(body, unknown);
    if (!described) return std::nullopt;
    if (described_.size() >= kDescribedBodies) described_.clear();
    return described_.emplace(std::string(body), std::move(*described)).first->second;
  }

  // Matches what `unknown` names on the secondary with the primary's objects: one catalog
  // query to each database. A failure leaves it for another read to try.
  asio::awaitable<std::optional<Closing>> learn_oids(const OidTranslation::Unknown& unknown,
                                                     std::chrono::milliseconds timeout) {
    std::string sql = OidTranslation::secondary_names_sql(unknown);
    SecondaryLink::Read read;
    read.sql = sql;
    std::string answer;
    routing::ResultDigest unused(false);
    auto names = co_await read_from_secondary(link_, read, timeout, &answer,
                                              std::numeric_limits<size_t>::max(), unused);
    if (names.state != SecondaryAnswer::State::kComplete) {
      spdlog::debug("session {}: cannot read the secondary's catalog: {}", peer_, names.error);
      co_return std::nullopt;
    }
    CatalogRows secondary;
    for (std::string_view rest = answer; !rest.empty();) {
      auto decoded = protocol::decode_frame(rest, protocol::Direction::kBackend,
                                            std::numeric_limits<uint32_t>::max());
      if (decoded.status != protocol::DecodeStatus::kMessage) break;
      if (decoded.frame.tag == 'D') {
        if (auto row = protocol::parse_data_row(decoded.frame.body)) secondary.push_back(*row);
      }
      rest.remove_prefix(decoded.consumed);
    }
    CatalogRows primary;
    if (std::string primary_sql = OidTranslation::primary_objects_sql(secondary);
        !primary_sql.empty()) {
      if (auto closing = co_await ask_primary(primary_sql)) co_return closing;
      if (!captured_.error.empty()) {
        spdlog::debug("session {}: cannot read the primary's catalog: {}", peer_,
                      describe_error(captured_.error));
        co_return std::nullopt;
      }
      primary = std::move(captured_.rows);
    }
    spdlog::debug("session {}: matched {} catalog rows of the secondary with {} of the primary",
                  peer_, secondary.size(), primary.size());
    oids_->learn(unknown, secondary, primary);
    co_return std::nullopt;
  }

  // Answers the client from the secondary, unless it fails before the first byte did.
  // `overlap`: the primary still owes answers to the cycle's earlier messages; they are
  // collected (and reach the client) while the secondary works.
  asio::awaitable<SecondaryServed> read_on_secondary(const ReadJob& job, bool compare, bool overlap,
                                                     const config::ReadRouting& policy) {
    char status = activity_.transaction_status;
    bool in_transaction = status == 'T';
    routing::ResultDigest digest(job.ordered);
    std::string out;
    if (held_bind_) { // the client's Bind and Describe are answered here, not by the primary
      if (held_parse_) protocol::append_empty_message(out, '1');
      protocol::append_empty_message(out, '2');
      if (held_bind_->description) out += *held_bind_->description;
    }
    if (overlap) {
      request_answers();
      if (auto closing = co_await flush_primary()) {
        co_return SecondaryServed{true, std::move(closing)};
      }
    }
    auto started = Clock::now();
    SecondaryAnswer answer =
        co_await send_secondary_read(link_, secondary_read(job, in_transaction), policy.timeout);
    if (overlap) {
      co_await answered();
      if (cycle_failed_) { // PostgreSQL would skip this Execute: drop the secondary's answer
        drop_held();
        if (answer.state != SecondaryAnswer::State::kFailed) {
          co_await collect_secondary_answer(link_, policy.timeout, nullptr, 0, digest);
        }
        co_return SecondaryServed{true, std::nullopt};
      }
    }
    // A simple read's RowDescription comes from the secondary: it gets the primary's OIDs.
    // (A bound read's comes from the primary's Describe; a SQLite primary has no catalog.)
    OidTranslation::Unknown unknown;
    DescriptionFilter as_primary = [&](std::string_view body) {
      return describe_as_primary(body, unknown);
    };
    bool translate = !job.portal && primary_dialect() == protocol::Dialect::kPostgres;
    const DescriptionFilter* describe = translate ? &as_primary : nullptr;
    size_t answer_start = out.size();
    if (answer.state != SecondaryAnswer::State::kFailed) {
      answer = co_await collect_secondary_answer(link_, policy.timeout, &out, kFlushThreshold,
                                                 digest, describe);
    }
    if (answer.state == SecondaryAnswer::State::kUndescribed && !unknown.empty()) {
      // Match what it named with the primary's objects, then ask the secondary again.
      if (auto closing = co_await learn_oids(unknown, policy.timeout)) {
        co_return SecondaryServed{true, std::move(closing)};
      }
      out.resize(answer_start);
      digest = routing::ResultDigest(job.ordered);
      unknown = {};
      answer =
          co_await read_from_secondary(link_, secondary_read(job, in_transaction), policy.timeout,
                                       &out, kFlushThreshold, digest, describe);
    }
    if (answer.state == SecondaryAnswer::State::kUndescribed) {
      if (in_transaction) {
        transaction_pinned_ = true; // its reads stay on one database from here
        co_await link_.end_read_transaction();
      }
      co_return SecondaryServed{false, std::nullopt, RouteReason::kUndescribed};
    }
    auto& metrics = services_.metrics();
    if (answer.state == SecondaryAnswer::State::kFailed) {
      metrics.read_fallbacks(answer.failure).Increment();
      stats_.add_backend_errors(BackendRole::kSecondary, 1);
      static LogLimiter limiter;
      if (std::string note; limiter.due(note)) {
        spdlog::warn("session {}: a read failed on the secondary ({}) and runs on the primary: "
                     "{}{}",
                     peer_, monitoring::to_string(answer.failure), answer.error, note);
      }
      if (in_transaction) {
        transaction_pinned_ = true; // the secondary's transaction is gone
        co_await link_.end_read_transaction();
      }
      co_return SecondaryServed{};
    }
    metrics.reads(BackendRole::kSecondary, RouteReason::kCohort).Increment();
    stats_.add_queries(BackendRole::kSecondary, 1);
    if (job.portal != nullptr) {
      job.portal->ran = PortalInfo::Ran::kOnSecondary;
      if (held_bind_) job.portal->unsent_bind = std::move(held_bind_->bind);
      held_bind_.reset();
      if (held_parse_) unsent_parse_ = std::move(*held_parse_);
      held_parse_.reset();
    }
    if (answer.state == SecondaryAnswer::State::kPartial) {
      if (auto ec = co_await writer_.write(out); ec) {
        co_return SecondaryServed{true, co_await client_lost(ec)};
      }
      out.clear();
      ClientSink sink = [this](std::string& batch) -> asio::awaitable<bool> {
        co_return !co_await writer_.write(batch);
      };
      bool client_there = co_await stream_secondary_rest(link_, policy.timeout, kFlushThreshold,
                                                         digest, sink, describe);
      if (!client_there) co_return SecondaryServed{true, co_await client_lost(writer_.failure())};
      compare = false; // a long answer is not worth reading twice
    }
    if (!job.portal) { // a bound read's ReadyForQuery comes with the client's Sync
      if (auto seconds = activity_.ready_received(Clock::now())) {
        stats_.observe_query_seconds(BackendRole::kSecondary, *seconds);
      }
      protocol::append_ready_for_query(out, status);
    }
    stats_.observe_read_seconds(BackendRole::kSecondary, seconds_since(started));
    if (auto ec = co_await writer_.write(out); ec) {
      co_return SecondaryServed{true, co_await client_lost(ec)};
    }
    if (compare && status == 'I' && job.portal) {
      // The client's cycle is not over; its portals stay its own. Compare after its Sync.
      pending_shadow_ =
          PendingShadow{std::string(job.sql), job.ordered, job.portal->prepared->types,
                        job.portal->bind, std::move(digest)};
    } else if (compare && status == 'I') {
      // The shadow run goes down the primary's pipe; the server pump digests and hides it.
      primary_digest_ = routing::ResultDigest(job.ordered);
      protocol::append_query(to_primary_, job.sql);
      Expect shadow{ExpectKind::kQuery};
      shadow.shadow = true;
      expects_.push_back(std::move(shadow));
      if (auto closing = co_await drain()) co_return SecondaryServed{true, std::move(closing)};
      record_comparison(job.sql, {}, primary_digest_, digest);
    }
    co_return SecondaryServed{true, std::nullopt};
  }

  // Runs a bound read the secondary served on the primary once the client's cycle ended,
  // as a cycle of switchyard's own, and compares.
  asio::awaitable<std::optional<Closing>> run_pending_shadow() {
    PendingShadow shadow = std::move(*pending_shadow_);
    pending_shadow_.reset();
    if (auto closing = co_await drain()) co_return closing;
    if (activity_.transaction_status != 'I') co_return std::nullopt;
    constexpr std::string_view kName = "switchyard_shadow";
    protocol::append_parse(to_primary_,
                           protocol::ParseMessage{std::string(kName), shadow.sql, shadow.types});
    protocol::BindMessage bind = std::move(shadow.bind);
    bind.portal = kName;
    bind.statement = kName;
    protocol::append_bind(to_primary_, bind);
    protocol::append_execute(to_primary_, kName, 0);
    protocol::append_close(to_primary_, 'P', kName);
    protocol::append_close(to_primary_, 'S', kName);
    protocol::append_sync(to_primary_);
    primary_digest_ = routing::ResultDigest(shadow.ordered);
    Expect expect{ExpectKind::kSync};
    expect.shadow = true;
    expects_.push_back(std::move(expect));
    if (auto closing = co_await drain()) co_return closing;
    record_comparison(shadow.sql, {}, primary_digest_, shadow.secondary);
    co_return std::nullopt;
  }

  // Counts (and logs) a shadow comparison; `failure` set when one side could not answer.
  void record_comparison(std::string_view sql, const std::string& failure,
                         const routing::ResultDigest& primary,
                         const routing::ResultDigest& secondary) {
    auto& metrics = services_.metrics();
    if (!failure.empty()) {
      metrics.shadow_comparisons(monitoring::ShadowResult::kFailed).Increment();
      return;
    }
    if (primary == secondary) {
      metrics.shadow_comparisons(monitoring::ShadowResult::kMatch).Increment();
      return;
    }
    metrics.shadow_comparisons(monitoring::ShadowResult::kMismatch).Increment();
    static LogLimiter limiter;
    if (std::string note; limiter.due(note)) {
      spdlog::warn("session {}: shadow comparison mismatch, statement fingerprint {}: primary {}, "
                   "secondary {}{}",
                   peer_, protocol::fingerprint(sql), primary.describe(), secondary.describe(),
                   note);
    }
    spdlog::debug("session {}: mismatching statement: {}", peer_, sql);
  }

  // The text to send the primary for `s`, a PREPARE of a row-image write: the write with
  // the image appended. nullopt for any other statement, and on a SQLite primary (its
  // engine has no PREPARE).
  std::optional<std::string> prepare_with_row_image(std::string_view text,
                                                    const protocol::Statement& s) const {
    if (!s.prepared_write || primary_dialect() != protocol::Dialect::kPostgres) return std::nullopt;
    return protocol::prepare_with_row_image(text, s, primary_dialect());
  }

  // What an EXECUTE of a prepared plain read is to switchyard: a read for the primary (not
  // routed: the secondary's connection need not have the name) that is not mirrored.
  static std::shared_ptr<const protocol::Classification> executed_read() {
    static const auto read = [] {
      auto classification = std::make_shared<protocol::Classification>();
      protocol::Statement& s = classification->statements.emplace_back();
      s.node = "ExecuteStmt";
      s.kind = StatementKind::kRead;
      s.mirror = MirrorPlan::kNone;
      return std::shared_ptr<const protocol::Classification>(std::move(classification));
    }();
    return read;
  }

  // The row-image write or plain read `s` runs when it is an EXECUTE of one (see SqlPrepared).
  std::shared_ptr<const protocol::Classification>
  executed_statement(const protocol::Statement& s) const {
    if (s.node != "ExecuteStmt") return nullptr;
    auto found = sql_prepared_.find(s.prepared_name);
    return found == sql_prepared_.end() ? nullptr : found->second.runs;
  }

  // What a statement that is an `EXECUTE name` runs as, by what the name stands for now: its
  // row-image write (the primary prepared it with the image), else the EXECUTE itself (a read
  // among them is told apart at Execute, where it cannot change the Bind).
  std::shared_ptr<const protocol::Classification> executed_now(const PreparedInfo& info) const {
    auto executed = executed_statement(info.executes->statements[0]);
    return executed && executed->statements[0].mirror == MirrorPlan::kRowImage ? executed
                                                                               : info.executes;
  }

  // The SQL name of the row-image write `prepared` runs as an `EXECUTE name`, else empty.
  static std::string executed_sql_name(const PreparedInfo& prepared) {
    if (!prepared.executes || !prepared.rewritten) return {};
    return prepared.executes->statements[0].prepared_name;
  }

  void resolve_execute(PreparedInfo& info) const {
    info.classification = executed_now(info);
    info.statement = &info.classification->statements[0];
    info.rewritten = info.classification != info.executes;
  }

  // PREPARE (sent as `image_sql`, with the image, when that is not empty), DEALLOCATE and
  // DISCARD ALL change what the session's prepared names stand for. Noted as they are sent,
  // so an EXECUTE behind one, in the same pipeline too, is read right; undone if the primary
  // refuses them.
  void note_prepared_names(const protocol::Statement& s, std::string image_sql, Expect& expect) {
    bool prepare = s.node == "PrepareStmt";
    if (!prepare && s.node != "DeallocateStmt" && !s.drops_all_prepared) return;
    expect.prepared_before = sql_prepared_;
    if (s.drops_all_prepared) {
      sql_prepared_.clear();
    } else if (!image_sql.empty()) {
      sql_prepared_[s.prepared_name] =
          SqlPreparedStatement{s.prepared_write, std::move(image_sql), plan_epoch()};
    } else if (prepare && s.prepared_read) {
      sql_prepared_[s.prepared_name] = SqlPreparedStatement{executed_read(), {}, {}};
    } else {
      sql_prepared_.erase(s.prepared_name);
    }
  }

  // The statements that prepare the row-image write `execute` runs again under its name,
  // when DDL through switchyard moved the schema epoch since it was prepared (to `epoch`; none
  // otherwise), the books as they were kept in `books_before` (put back should they fail). A probe
  // under another name goes first: a text that no longer prepares (a column it names was dropped)
  // fails before the name is touched, as PostgreSQL fails the EXECUTE and keeps the name.
  // A client's own `RETURNING *` is left to PostgreSQL's refusal, as in prepared_before_ddl.
  std::vector<std::string> statements_preparing_again(const protocol::Statement& execute,
                                                      uint64_t epoch,
                                                      std::optional<SqlPrepared>& books_before) {
    auto found = sql_prepared_.find(execute.prepared_name);
    if (found == sql_prepared_.end() || found->second.prepare_sql.empty() ||
        found->second.epoch == epoch || found->second.runs->statements[0].returning_star) {
      return {};
    }
    auto probe = protocol::prepare_renamed(found->second.prepare_sql, kProbeName);
    if (!probe) return {};
    if (!books_before) books_before = sql_prepared_;
    found->second.epoch = plan_epoch();
    return {std::move(*probe), "DEALLOCATE " + std::string(kProbeName),
            "DEALLOCATE " + protocol::quote_identifier(execute.prepared_name),
            found->second.prepare_sql};
  }

  // Puts back the statements and portals that `refused` messages (the failed one first, then
  // those skipped up to the Sync) changed in switchyard's books, latest first so the state
  // from before them all wins.
  void undo_books(std::vector<Expect>& refused) {
    for (size_t i = refused.size(); i-- > 0;) {
      Expect& message = refused[i];
      if (auto& before = message.statement_before) {
        // A failed Parse of the unnamed statement dropped the old one before it failed.
        bool dropped = i == 0 && message.kind == ExpectKind::kParse && before->first.empty();
        if (before->second && !dropped) {
          statements_.insert_or_assign(std::move(before->first), std::move(before->second));
        } else {
          statements_.erase(before->first);
        }
      }
      if (auto& closed = message.closed_portal)
        portals_.insert_or_assign(std::move(closed->first), std::move(closed->second));
    }
  }

  // Puts the prepared names back as they were before `failed` was sent; false if it changed none.
  bool undo_prepared_names(Expect& failed) {
    if (!failed.prepared_before) return false;
    sql_prepared_ = std::move(*failed.prepared_before);
    failed.prepared_before.reset();
    return true;
  }

  // Whether `s` may be DDL on temporary relations of this session's only (see
  // Statement::names_relations), which only the primary can tell: a temporary table hides a
  // permanent one of its name, and may be gone since it was made. Asked only by a session
  // that made temporary objects, and not in a failed transaction.
  bool may_act_on_own_temporaries(const protocol::Statement& s) const {
    return created_temporary_ && s.kind == StatementKind::kDdl && !s.private_ddl &&
           !s.names_relations.empty() && activity_.transaction_status != 'E' &&
           !transaction_failed_;
  }

  // Asks the primary whether every relation `s` names is a temporary one of this session's.
  // Runs a Query of its own: called only between extended-protocol cycles.
  asio::awaitable<std::optional<Closing>> ask_if_own_temporaries(const protocol::Statement& s,
                                                                 bool& own) {
    std::string names;
    for (const protocol::TargetTable& relation : s.names_relations) {
      if (!names.empty()) names += ", ";
      names += quote_literal(relation.qualified());
    }
    // A name that finds nothing (to_regclass gives NULL) is not a temporary relation.
    if (auto c = co_await ask_primary(
            "SELECT pg_catalog.bool_and(coalesce(c.relpersistence = 't', false)) FROM "
            "pg_catalog.unnest(ARRAY[" +
            names +
            "]::text[]) AS n(name) LEFT JOIN pg_catalog.pg_class c "
            "ON c.oid = pg_catalog.to_regclass(n.name)")) {
      co_return c;
    }
    own = captured_.error.empty() && captured_.rows.size() == 1 && captured_.rows[0].size() == 1 &&
          captured_.rows[0][0] == "t";
    co_return std::nullopt;
  }

  // The first message of an extended-protocol cycle, a Parse or a Bind (of a statement
  // prepared before), with every answer in, of DDL that may act on this session's temporary
  // relations only: the primary is asked now, before the cycle opens (a Query of
  // switchyard's own in it would end its implicit transaction), and its Execute, when nothing
  // ran in between, is private or shared as it said (on_execute). Only the query or name is
  // read here, in place.
  asio::awaitable<std::optional<Closing>>
  ask_at_cycle_start_if_own_temporaries(const protocol::Frame& frame) {
    auto field = protocol::second_cstring(frame.body);
    if (!field) co_return std::nullopt; // on_parse or on_bind refuses it
    std::shared_ptr<const protocol::Classification> classification;
    if (frame.tag == 'P') {
      classification =
          cache_.get(*field, runtime_->config->limits.max_statements_per_query).classification;
    } else {
      auto found = statements_.find(std::string(*field));
      if (found == statements_.end() || !found->second) co_return std::nullopt;
      classification = found->second->classification;
    }
    if (!classification || classification->statements.size() != 1 ||
        !may_act_on_own_temporaries(classification->statements[0])) {
      co_return std::nullopt;
    }
    if (auto c = co_await ask_if_own_temporaries(classification->statements[0], temporaries_own_))
      co_return c;
    temporaries_asked_ = std::move(classification);
    co_return std::nullopt;
  }

  // DDL about to be sent moves the schema epoch (see PreparedInfo), as its completion does
  // (finish_statement): another session's rewritten statement bound while it runs is
  // prepared again first, rather than meet the changed table and fail with 0A000, and one
  // prepared again before the change took hold is prepared again after it. Such statements
  // bound before the epoch moved may still reach PostgreSQL after the DDL: DDL that may
  // change a table's columns waits for them to be answered (see BoundPlans), within
  // mirror.timeout, unless its transaction already holds locks they may be waiting for
  // (transaction_took_locks_): a migration's block whose first statement it is waits too.
  // Called before the DDL is appended for the primary, and before note_sent.
  asio::awaitable<std::optional<Closing>> before_sending_ddl(const protocol::Statement& s,
                                                             Expect& expect) {
    if (expect.private_ddl) { // no other session's statement can resolve to what it acts on
      ++private_ddl_;
      co_return std::nullopt;
    }
    BoundPlans& plans = services_.bound_plans();
    auto [epoch, under_way] = plans.ddl_sending();
    expect.ddl_under_way = std::move(under_way);
    if (transaction_took_locks_ || !s.reshapes_table ||
        !plans.held_before(epoch, *s.reshapes_table)) {
      co_return std::nullopt;
    }
    if (auto c = co_await flush_primary()) co_return c; // this session's own may be unsent
    auto deadline = Clock::now() + runtime_->config->mirror.timeout;
    asio::steady_timer poll(co_await asio::this_coro::executor);
    while (plans.held_before(epoch, *s.reshapes_table) && Clock::now() < deadline) {
      poll.expires_after(kBoundPlanPoll);
      co_await poll.async_wait(use_tuple);
    }
    co_return std::nullopt;
  }

  // A statement on its way to the primary, in the client's transaction block or not
  // (`in_block`). DDL outside a block takes its place in async mode's commit order now
  // (SecondaryLink::note_sent), but for index builds and materialized view refreshes and DDL
  // of the session's own (`private_ddl`): no other session's write depends on them, and an
  // index build may run for long while every later commit would wait.
  void note_sent(const protocol::Statement& s, bool in_block, bool private_ddl) {
    bool ddl = s.kind == StatementKind::kDdl;
    transaction_took_locks_ |= ddl || s.kind == StatementKind::kWrite ||
                               s.kind == StatementKind::kUnknown || s.node == "LockStmt";
    if (ddl) services_.ddl_sent_at() = Clock::now().time_since_epoch().count();
    if (s.transaction != TransactionOp::kCommit && s.transaction != TransactionOp::kRollback) {
      link_.note_sent(ddl && !in_block && !private_ddl &&
                      runtime_->config->mirror.ddl == config::DdlPolicy::kMirror &&
                      s.node != "IndexStmt" && s.node != "RefreshMatViewStmt");
    }
  }

  // `own_temporaries`: the primary's answer to ask_if_own_temporaries, if asked about `s`.
  std::unique_ptr<MirrorOp> make_op(const protocol::Statement& s, std::string_view text,
                                    const PortalInfo* portal,
                                    std::optional<bool> own_temporaries = std::nullopt) {
    if (s.mirror == MirrorPlan::kNone && s.transaction == TransactionOp::kNone) return nullptr;
    auto op = std::make_unique<MirrorOp>();
    op->kind =
        s.mirror == MirrorPlan::kRowImage ? MirrorOp::Kind::kImage : MirrorOp::Kind::kStatement;
    op->sql = std::string(text);
    op->ddl = s.kind == StatementKind::kDdl;
    if (s.mirror == MirrorPlan::kRowImage && !s.writing_calls.empty()) {
      // Learned anew once the session is idle: a prepared statement is parsed only once,
      // and what FunctionVolatility knows expires.
      note_unknown_functions(std::span(&s, 1));
      op->calls_writing_functions = calls_writing_functions(s);
    }
    op->statement = s;
    if (own_temporaries == true) op->statement.private_ddl = true; // its link moves its own epoch
    op->primary_said_shared = own_temporaries == false;
    if (portal != nullptr) {
      op->parameter_types = portal->prepared->types;
      op->parameter_formats = portal->bind.parameter_formats;
      op->parameters = portal->bind.parameters;
      op->parameter_types.resize(op->parameters.size(), 0);
    }
    return op;
  }

  void forward(const protocol::Frame& frame) {
    protocol::append_message(to_primary_, frame.tag, frame.body);
  }

  asio::awaitable<std::optional<Closing>> flush_primary() {
    if (to_primary_.empty()) co_return std::nullopt;
    stats_.add_bytes_to_backend(BackendRole::kPrimary, to_primary_.size());
    primary_bytes_flushed_ += to_primary_.size();
    auto ec = co_await primary_.stream.write_all(to_primary_);
    to_primary_.clear();
    if (ec) {
      co_return refuse(CloseReason::kBackendDisconnect, sqlstate::kConnectionFailure,
                       "lost the connection to the primary database: " + ec.message());
    }
    co_return std::nullopt;
  }

  // Bytes for the primary so far, sent or about to be.
  uint64_t primary_bytes_queued() const { return primary_bytes_flushed_ + to_primary_.size(); }

  // Asks the primary to answer what it was sent without waiting for a Sync.
  void request_answers() {
    if (!expects_.empty()) {
      ExpectKind last = expects_.back().kind;
      if (last != ExpectKind::kSync && last != ExpectKind::kQuery)
        protocol::append_flush(to_primary_);
    }
  }

  // Waits until the primary has answered everything sent so far.
  asio::awaitable<std::optional<Closing>> drain() {
    request_answers();
    if (auto c = co_await flush_primary()) co_return c;
    co_await answered();
    co_return std::nullopt;
  }

  // The client logged off or hung up, perhaps before the answers to what it sent came:
  // PostgreSQL would have run those requests to their end, committing autocommit writes, so
  // the session waits for their answers (and switchyard's COMMIT of a write it wrapped,
  // after the secondary's) before it ends.
  asio::awaitable<std::optional<Closing>> finish_requests_sent() {
    writer_.client_gone();
    co_return co_await drain();
  }

  // The client hung up, or its socket failed (a client that dies with answers unread resets
  // it): what the primary was sent still runs there, so the session finishes it as when the
  // client logs off, and sends nothing more (PostgreSQL, failing to send, would run no more).
  asio::awaitable<Closing> client_lost(std::string detail) {
    if (auto c = co_await finish_requests_sent()) co_return std::move(*c);
    co_return Closing{CloseReason::kClientDisconnect, std::move(detail), {}};
  }

  asio::awaitable<Closing> client_lost(const error_code& ec) {
    Closing gone = peer_gone(CloseReason::kClientDisconnect, ec);
    co_return co_await client_lost(std::move(gone.detail));
  }

  // Extended-protocol messages reached the primary since the last Sync or Query.
  bool cycle_open() const { return primary_bytes_queued() != cycle_start_bytes_; }

  // An extended-protocol message failed and its cycle's Sync is not sent yet: PostgreSQL
  // ignores every message before that Sync (the error emptied expects_ up to it).
  bool skipping_to_sync() const { return cycle_failed_ && expects_.empty(); }

  // Waits until the primary owes no more than `requests` answers; the rest stay in flight,
  // so that it has work while the session takes more from the client.
  asio::awaitable<std::optional<Closing>> answered_down_to(size_t requests) {
    request_answers();
    if (auto c = co_await flush_primary()) co_return c;
    throttled_at_ = requests;
    while (expects_.size() > requests) {
      wake_.expires_at(Clock::time_point::max());
      co_await wake_.async_wait(use_tuple);
    }
    throttled_at_.reset();
    co_return std::nullopt;
  }

  // Waits for the server pump to have every answer owed.
  asio::awaitable<void> answered() {
    while (!expects_.empty()) {
      wake_.expires_at(Clock::time_point::max());
      co_await wake_.async_wait(use_tuple);
    }
  }

  // Sends the client its ReadyForQuery together with the answers held back before it.
  asio::awaitable<std::optional<Closing>> write_ready(std::string_view ready) {
    if (auto seconds = activity_.ready_received(Clock::now())) {
      stats_.observe_query_seconds(BackendRole::kPrimary, *seconds);
    }
    std::string out;
    out.swap(to_client_);
    out.append(ready);
    holding_ = false;
    if (auto ec = co_await writer_.write(out); ec) co_return co_await client_lost(ec);
    co_return std::nullopt;
  }

  // ---- server side: the primary's answers, filtered, to the client ---------------------

  asio::awaitable<Closing> server_pump() {
    while (true) {
      auto frame = co_await primary_reader_.read_frame();
      if (!frame) {
        if (primary_reader_.peer_closed())
          co_return Closing{CloseReason::kBackendDisconnect, "closed by peer", {}};
        co_return protocol_violation(
            "switchyard received invalid data from the primary database: " + frame.error());
      }
      stats_.add_bytes_from_backend(BackendRole::kPrimary, frame->body.size() + 5);
      on_primary_message(*frame);
      bool idle = expects_.empty();
      // Answers before a held ReadyForQuery wait for it, so the client gets one write.
      bool flush = !holding_ && (idle || !primary_reader_.has_leftover());
      if (flush || to_client_.size() > kFlushThreshold) {
        if (!to_client_.empty()) {
          // A failed write leaves the client pump to end the session once the answers owed
          // are in (client_lost); the primary's answers are still read till then.
          std::string out;
          out.swap(to_client_);
          co_await writer_.write(out);
        }
      }
      if (idle || (throttled_at_ && expects_.size() <= *throttled_at_)) wake_.cancel();
    }
  }

  void pass(const protocol::Frame& frame) {
    protocol::append_message(to_client_, frame.tag, frame.body);
  }

  void on_primary_message(const protocol::Frame& frame) {
    char tag = frame.tag;
    if (!expects_.empty() && expects_.front().shadow) {
      on_shadow_answer(frame);
      return;
    }
    if (tag == 'S') note_parameter(frame.body);
    if (tag == 'N' && !expects_.empty() && expects_.front().position_shift > 0) {
      protocol::append_error_shifted(to_client_, tag, frame.body, expects_.front().position_shift);
      return;
    }
    if (tag == 'N' || tag == 'S' || tag == 'A' || expects_.empty()) {
      pass(frame);
      return;
    }
    Expect& front = expects_.front();
    if (front.capture) {
      on_captured_answer(frame);
      return;
    }
    switch (tag) {
    case 'E':
      stats_.add_backend_errors(BackendRole::kPrimary, 1);
      transaction_failed_ = true;
      if (sqlstate_of(frame.body) == kResultTypeChanged) { // DDL bypassed switchyard
        if (front.kind == ExpectKind::kBind && front.rewritten_statement) {
          front.rewritten_statement->prepared_epoch.reset();
        }
        if (auto found = sql_prepared_.find(front.sql_name); found != sql_prepared_.end()) {
          found->second.epoch.reset();
        }
      }
      if (front.digest) primary_digest_.set_error(sqlstate_of(frame.body));
      if (front.hand_over) { // the COMMIT failed (a deferred constraint): nothing committed
        front.hand_over = false;
        link_.hand_over(false);
      }
      // Every answer before it was in: the error is the COMMIT's the secondary went ahead of.
      if (link_.awaits_primary_commit())
        link_.primary_answered_commit(false, describe_error(frame.body));
      if (front.position_shift > 0) {
        protocol::append_error_shifted(to_client_, tag, frame.body, front.position_shift);
      } else {
        pass(frame);
      }
      reset_capture();
      if (front.kind == ExpectKind::kQuery) {
        undo_prepared_names(front);
        query_failed_ = true;
      } else {
        cycle_failed_ = true;
        // The extended protocol skips everything up to the next Sync after an error. Of the
        // prepared names those messages changed, the earliest snapshot is from before them all.
        bool undone = false;
        std::vector<Expect> refused; // the failed message, then those PostgreSQL skipped
        while (!expects_.empty() && expects_.front().kind != ExpectKind::kSync) {
          if (!undone) undone = undo_prepared_names(expects_.front());
          refused.push_back(std::move(expects_.front()));
          expects_.pop_front();
        }
        undo_books(refused);
      }
      return;
    case 'Z': on_ready(frame); return;
    case '1':
    case '2':
    case '3':
      if (!front.internal) pass(frame);
      expects_.pop_front();
      return;
    case 't':
      if (!front.internal) pass(frame);
      return;
    case 'n':
      if (!front.internal) pass(frame);
      if (front.kind == ExpectKind::kDescribePortal && front.internal) reset_capture();
      expects_.pop_front();
      return;
    case 'T': on_row_description(frame, front); return;
    case 'D':
      if (front.internal) return; // a run of switchyard's own (run_out_on_primary)
      if (front.digest) primary_digest_.add_row(frame.body);
      if (front.large_object_call) mirror_large_object_call(front, first_column(frame.body));
      on_data_row(frame);
      return;
    case 'C':
      if (front.read_started && front.kind == ExpectKind::kExecute) {
        stats_.observe_read_seconds(BackendRole::kPrimary, seconds_since(*front.read_started));
      }
      on_command_complete(frame, front);
      return;
    case 's':
      pass(frame);
      finish_statement(front, std::nullopt);
      expects_.pop_front();
      return;
    case 'I':
      pass(frame);
      if (front.kind == ExpectKind::kExecute) expects_.pop_front();
      return;
    case 'G':
      if (front.swallow_copy_in) return;
      pass(frame);
      copy_in_started_ = true; // the client pump relays the data now
      wake_.cancel();
      return;
    case 'V':
      pass(frame);
      if (front.large_object_call) mirror_large_object_call(front, counted_value(frame.body));
      return;
    default: pass(frame); return; // COPY out
    }
  }

  // A value as a FunctionCallResponse or a DataRow's column holds it: its length (-1 for
  // NULL), then its bytes.
  static protocol::Value counted_value(std::string_view body) {
    protocol::BodyReader reader(body);
    if (auto length = reader.u32(); length && *length != 0xFFFFFFFFu) {
      if (auto bytes = reader.bytes(*length)) return std::string(*bytes);
    }
    return std::nullopt;
  }

  // The first column's value of a DataRow.
  static protocol::Value first_column(std::string_view body) {
    protocol::BodyReader reader(body);
    if (auto columns = reader.u16(); !columns || *columns == 0) return std::nullopt;
    return counted_value(body.substr(2));
  }

  // The primary answered a large-object call (a FunctionCall, or a statement that is one
  // call): the secondary gets what it changed, if anything, as a statement naming the object.
  // A statement whose call cannot be followed (through a descriptor a larger query opened,
  // with arguments not understood) is mirrored as itself instead, as any other.
  void mirror_large_object_call(Expect& front, const protocol::Value& result) {
    auto [function, call] = std::move(*front.large_object_call);
    front.large_object_call.reset();
    bool followed = !large_objects_.unknown_descriptor(function, call);
    auto write = large_objects_.answered(function, call, result);
    if (!write) {
      if (followed && !protocol::writes(function)) front.op.reset(); // nothing stored changed
      return;
    }
    front.op.reset();
    if (auto op = large_object_op(std::move(*write))) link_.add(std::move(*op));
  }

  // The op applying `write` to the secondary.
  std::unique_ptr<MirrorOp> large_object_op(protocol::LargeObjectWrite write) {
    protocol::ClassifiedQuery query = cache_.get(write.sql);
    if (query.classification->statements.size() != 1) return nullptr; // never: switchyard's SQL
    std::unique_ptr<MirrorOp> op = make_op(query.classification->statements[0], write.sql, nullptr);
    if (!op) return nullptr;
    op->parameter_types = std::move(write.types);
    op->parameter_formats = std::move(write.formats);
    op->parameters = std::move(write.parameters);
    op->large_object = write.object;
    op->copy_large_object = write.copy_from_primary;
    return op;
  }

  // The large objects an image op's statement created by calls giving its columns their
  // values (Statement::large_object_columns): ops making each on the secondary under the OID
  // the primary's row holds, the data of lo_from_bytea's given as the client gave it.
  std::vector<std::unique_ptr<MirrorOp>> large_objects_created(const MirrorOp& image) {
    std::vector<std::unique_ptr<MirrorOp>> ops;
    if (image.kind != MirrorOp::Kind::kImage ||
        dialect_of(*runtime_->config->secondary) != protocol::Dialect::kPostgres) {
      return ops; // SQLite has no large objects
    }
    std::vector<size_t> copied; // columns whose every row's object is copied (see aligned)
    for (const protocol::LargeObjectColumn& made : image.statement.large_object_columns) {
      auto field = std::ranges::find_if(image.fields, [&](const protocol::FieldDescription& f) {
        return made.column.empty()
                   ? &f - image.fields.data() == static_cast<ptrdiff_t>(made.position)
                   : f.name == made.column;
      });
      if (field == image.fields.end()) continue;
      auto column = static_cast<size_t>(field - image.fields.begin());
      // The VALUES list's row r is the image's row r, unless a trigger kept some from being
      // written: then which is which is not known, and each row's object is made as
      // lo_import's is, created and its bytes copied from the primary.
      bool aligned = !made.row || image.rows.size() == made.rows;
      auto kind = made.function;
      if (!aligned) {
        if (std::ranges::find(copied, column) != copied.end()) continue;
        copied.push_back(column);
        kind = protocol::LargeObjectFunction::kImport;
      }
      const protocol::Value* data = nullptr;
      uint16_t data_format = 0;
      if (aligned && made.data && *made.data <= image.parameters.size()) { // $1 is the first
        data = &image.parameters[*made.data - 1];
        data_format = protocol::format_of(image.parameter_formats, *made.data - 1);
      }
      for (size_t row = 0; row < image.rows.size(); ++row) {
        if (aligned && made.row && row != *made.row) continue;
        auto write = protocol::created_large_object(kind, image.rows[row].at(column), field->format,
                                                    data, data_format);
        if (!write) continue; // NULL
        if (auto op = large_object_op(std::move(*write))) ops.push_back(std::move(op));
      }
    }
    return ops;
  }

  // The answer to a shadow run on the primary: digested, never shown.
  void on_shadow_answer(const protocol::Frame& frame) {
    switch (frame.tag) {
    case 'D': primary_digest_.add_row(frame.body); break;
    case 'E': primary_digest_.set_error(sqlstate_of(frame.body)); break;
    case 'Z': expects_.pop_front(); break;
    default: break;
    }
  }

  // A ParameterStatus the primary sent: application_name may key the read cohort.
  void note_parameter(std::string_view body) {
    size_t end = body.find('\0');
    if (end == std::string_view::npos || body.substr(0, end) != "application_name") return;
    std::string_view value = body.substr(end + 1);
    router_.set_application_name(std::string(value.substr(0, value.find('\0'))));
  }

  void on_ready(const protocol::Frame& frame) {
    char status = frame.body.empty() ? 'I' : frame.body[0];
    Expect front = std::move(expects_.front());
    expects_.pop_front();
    activity_.transaction_status = status;
    // A Sync or an empty Query that ended the implicit transaction of a cycle's writes.
    if (front.hand_over) link_.hand_over(status == 'I');
    // A Sync (or a Query) that committed without an error what the secondary committed first.
    if (link_.awaits_primary_commit()) link_.primary_answered_commit(true);
    cycle_failed_ = false;
    if (status == 'I') {
      // Implicit transactions end here: committed unless something in them failed.
      link_.end_transaction(!std::exchange(transaction_failed_, false));
      transaction_wrote_ = false;
      transaction_took_locks_ = false;
      transaction_pinned_ = false;
      begin_sql_ = "BEGIN";
      router_.end_transaction();
      large_objects_.clear(); // PostgreSQL closed the transaction's descriptors
    }
    if (expects_.empty()) expected_in_transaction_ = status != 'I';
    if (status == 'I') link_.settle(); // any transaction journaled so far has ended
    holding_ = front.hold_ready;
    if (front.hold_ready) {
      held_status_ = status;
      return;
    }
    if (auto seconds = activity_.ready_received(Clock::now())) {
      stats_.observe_query_seconds(BackendRole::kPrimary, *seconds);
    }
    if (front.read_started && front.kind == ExpectKind::kQuery) {
      stats_.observe_read_seconds(BackendRole::kPrimary, seconds_since(*front.read_started));
    }
    pass(frame);
  }

  void on_row_description(const protocol::Frame& frame, Expect& front) {
    bool describe =
        front.kind == ExpectKind::kDescribePortal || front.kind == ExpectKind::kDescribeStatement;
    bool capture = (front.internal && front.kind != ExpectKind::kDescribeStatement) ||
                   (front.kind == ExpectKind::kQuery && front.rewritten);
    if (!front.rewritten && !front.internal) {
      pass(frame);
      if (front.describes) {
        front.describes->description = PreparedInfo::Description{
            std::move(front.result_formats), session_schema_epoch(), Clock::now(), std::string()};
        protocol::append_message(front.describes->description->message, frame.tag, frame.body);
      }
      if (describe) expects_.pop_front();
      return;
    }
    auto fields = protocol::parse_row_description(frame.body);
    auto marker = fields ? protocol::find_image_marker(*fields) : std::nullopt;
    if (!marker) {
      if (!front.internal) pass(frame);
      if (describe) expects_.pop_front();
      return;
    }
    if (describe && front.rewritten_statement) {
      front.rewritten_statement->primary_width = PreparedInfo::Width{*marker, fields->size()};
    }
    if (capture) {
      reset_capture();
      marker_ = *marker;
      image_fields_.assign(fields->begin() + static_cast<std::ptrdiff_t>(*marker) + 1,
                           fields->end());
    }
    if (!front.internal) {
      if (*marker > 0) {
        std::span<const protocol::FieldDescription> own(fields->data(), *marker);
        protocol::append_row_description(to_client_, own);
      } else if (describe) {
        protocol::append_empty_message(to_client_, 'n'); // NoData: the client asked for no rows
      }
    }
    if (describe) expects_.pop_front();
  }

  void on_data_row(const protocol::Frame& frame) {
    if (!marker_) {
      pass(frame);
      return;
    }
    auto values = protocol::parse_data_row(frame.body);
    if (!values || values->size() <= *marker_) {
      pass(frame);
      return;
    }
    captured_rows_.emplace_back(
        std::make_move_iterator(values->begin() + static_cast<std::ptrdiff_t>(*marker_) + 1),
        std::make_move_iterator(values->end()));
    if (*marker_ > 0) protocol::append_data_row_prefix(to_client_, frame.body, *marker_);
  }

  void on_command_complete(const protocol::Frame& frame, Expect& front) {
    std::string_view tag = frame.body.substr(0, frame.body.find('\0'));
    if (front.completes_to_drop > 0) {
      --front.completes_to_drop; // a statement switchyard put in front
      return;
    }
    if (front.hand_over) {
      front.hand_over = false;
      // COMMIT of a failed transaction answers ROLLBACK: its writes are dropped.
      link_.hand_over(tag == "COMMIT");
    }
    note_transaction_control(tag, front.statement);
    if (!front.drop_complete && !front.internal) pass(frame);
    finish_statement(front, tag);
    if (front.kind == ExpectKind::kExecute) expects_.pop_front();
  }

  // A transaction's end, or a savepoint's, decides which of its settings hold (see
  // SecondaryLink::end_transaction). By the tag: a COMMIT may answer ROLLBACK, and the
  // COMMIT or ROLLBACK closing a write switchyard wrapped is its own.
  void note_transaction_control(std::string_view tag, const protocol::Statement* s) {
    if (tag == "COMMIT" || tag == "PREPARE TRANSACTION" || tag == "ROLLBACK") {
      if (s != nullptr && s->transaction == TransactionOp::kRollbackTo) {
        link_.rollback_to_savepoint(s->savepoint_name);
        transaction_failed_ = false; // the transaction goes on from the savepoint
        return;
      }
      // The answer to the COMMIT the secondary's went ahead of (a COMMIT may answer ROLLBACK).
      if (tag == "PREPARE TRANSACTION" && s != nullptr) {
        link_.primary_prepared(prepared_transaction_key(*s));
      } else if (link_.awaits_primary_commit()) {
        link_.primary_answered_commit(tag != "ROLLBACK", "the primary rolled the transaction back");
      }
      link_.end_transaction(tag != "ROLLBACK");
      transaction_failed_ = false; // what failed before is over
    } else if (s != nullptr && (tag == "COMMIT PREPARED" || tag == "ROLLBACK PREPARED")) {
      link_.prepared_transaction_finished(prepared_transaction_key(*s), tag == "COMMIT PREPARED");
    } else if (s != nullptr && tag == "SAVEPOINT") {
      link_.savepoint(s->savepoint_name);
    } else if (s != nullptr && tag == "RELEASE") {
      link_.release_savepoint(s->savepoint_name);
    }
  }

  // A prepared transaction's name is the primary's, unique in its database.
  std::string prepared_transaction_key(const protocol::Statement& s) const {
    return oid_key_ + '\0' + s.prepared_transaction;
  }

  // A statement succeeded on the primary: mirror what it did.
  void finish_statement(Expect& front, std::optional<std::string_view> tag) {
    const protocol::Statement* s = front.statement;
    if (s == nullptr || !front.op) {
      reset_capture();
      return;
    }
    switch (s->transaction) {
    case TransactionOp::kRollback:
    case TransactionOp::kCommit: link_.discard(); break; // committed already, or rolled back
    case TransactionOp::kSavepoint:
    case TransactionOp::kRelease:
    case TransactionOp::kRollbackTo: link_.add(std::move(*front.op)); return;
    default: break;
    }
    if (front.private_ddl) {
      ++private_ddl_; // see PreparedInfo and session_schema_epoch
      created_temporary_ = true;
    } else if (s->kind == StatementKind::kDdl) {
      ++services_.schema_epoch();
    }
    if (s->mirror == MirrorPlan::kNone) {
      reset_capture();
      return;
    }
    if (s->mirror == MirrorPlan::kCopyIn && copy_too_large_) {
      link_.journal_unmirrorable(std::move(*front.op),
                                 "COPY data exceeds mirror.max_transaction_bytes; not mirrored");
      return;
    }
    if (s->kind == StatementKind::kSession) {
      link_.add_session_statement(front.op->sql, *s);
    } else if (!(s->kind == StatementKind::kDdl &&
                 runtime_->config->mirror.ddl == config::DdlPolicy::kPrimaryOnly)) {
      MirrorOp op = std::move(*front.op);
      if (tag) op.primary_rows = protocol::affected_rows(*tag);
      if (op.kind == MirrorOp::Kind::kImage) {
        op.fields = image_fields_;
        op.rows = std::move(captured_rows_);
      }
      if (s->mirror == MirrorPlan::kCopyIn) op.copy_data = std::move(copy_data_);
      auto created = large_objects_created(op);
      link_.add(std::move(op));
      for (auto& made : created)
        link_.add(std::move(*made));
    }
    reset_capture();
  }

  void reset_capture() {
    marker_.reset();
    image_fields_.clear();
    captured_rows_.clear();
  }

  BackendSession& primary_;
  protocol::Dialect primary_dialect() const { return dialect_of(runtime_->config->primary); }

  Services& services_;
  std::shared_ptr<const Runtime> runtime_;
  monitoring::RelayStats& stats_;
  SessionActivity& activity_;
  std::string peer_;
  std::string oid_key_; // the role generation and the two databases: see describe_as_primary
  std::shared_ptr<FunctionVolatility> functions_;           // the primary's, shared by its sessions
  std::vector<std::string> functions_to_learn_;             // see note_unknown_functions
  std::function<bool(const std::string&)> known_read_only_; // what functions_ knows cannot write
  routing::SessionRouter router_;
  MessageReader client_reader_;
  MessageReader primary_reader_;
  ClientWriter writer_;
  SecondaryLink link_;
  protocol::ClassificationCache cache_;
  asio::steady_timer wake_; // cancelled by the server pump when every answer is in

  std::string to_primary_;
  std::string to_client_;
  std::deque<Expect> expects_;
  std::unordered_map<std::string, std::shared_ptr<const PreparedInfo>> statements_;
  std::unordered_map<std::string, PortalInfo> portals_;
  SqlPrepared sql_prepared_;
  //! A Bind with a result format per column, kept until the primary describes its statement.
  struct UndescribedBind {
    protocol::BindMessage bind;
    std::shared_ptr<const PreparedInfo> prepared;
    BoundPlans::Hold hold;
  };
  std::optional<UndescribedBind> undescribed_bind_;
  // The secondary's RowDescriptions of routed simple reads as the primary would send them.
  std::shared_ptr<OidTranslation> oids_;
  uint64_t oids_epoch_ = 0;
  Clock::time_point oids_at_;
  std::unordered_map<std::string, std::string, TextHash, std::equal_to<>> described_;
  uint64_t private_ddl_ = 0;       // DDL sent or answered that acted on temporary objects only
  bool created_temporary_ = false; // ... answered: DDL may name temporary relations since
  //! A DDL statement the primary was asked about as it was parsed or bound, and whether it
  //! said the statement names temporary relations of the session's only; cleared by the next
  //! Execute or Query (see ask_at_cycle_start_if_own_temporaries).
  std::shared_ptr<const protocol::Classification> temporaries_asked_;
  bool temporaries_own_ = false;
  bool expected_in_transaction_ = false; // as the client's requests so far leave it
  bool cycle_writes_ = false; // autocommit writes of this cycle await its Sync (see on_sync)
  bool cycle_autocommit_mirror_ = false; // DDL or a setting ran outside a transaction
  bool query_failed_ = false;
  bool cycle_failed_ = false;       // an extended-protocol message failed; the rest waits for Sync
  bool transaction_failed_ = false; // an error since the transaction began: it rolls back
  char held_status_ = 'I';
  bool copy_in_started_ = false;       // the primary sent CopyInResponse
  std::optional<size_t> throttled_at_; // the client pump waits for expects_ to shrink to this
  //! What switchyard's own query read (run_captured, ask_primary): rows, COPY data, error.
  struct Captured {
    std::vector<std::vector<protocol::Value>> rows;
    std::string copy_out;
    std::string error;     // an ErrorResponse body; empty when it succeeded
    bool overflow = false; // COPY data beyond captured_limit_ was dropped
  } captured_;
  size_t captured_limit_ = std::numeric_limits<size_t>::max();
  bool copy_too_large_ = false;
  std::vector<std::string> copy_data_; // of the COPY running now, for the secondary
  bool holding_ = false; // a ReadyForQuery was held back: keep the answers before it too
  // The row image being captured from the statement running now.
  std::optional<size_t> marker_;
  std::vector<protocol::FieldDescription> image_fields_;
  std::vector<std::vector<protocol::Value>> captured_rows_;
  // Read routing: the state of the client's transaction as routing sees it.
  std::string begin_sql_ = "BEGIN"; // how the open transaction began, for the secondary's
  bool transaction_wrote_ = false;  // wrote or set: reads of this transaction stay on the primary
  // Sent a write, DDL or LOCK: the transaction may hold locks (rows, a table) that other
  // sessions' statements wait for; a read takes none they could.
  bool transaction_took_locks_ = false;
  protocol::LargeObjectDescriptors large_objects_; // the session's, opened by FunctionCalls
  bool transaction_pinned_ = false; // a secondary read of it failed: the rest on the primary
  routing::ResultDigest primary_digest_{false}; // the primary's side of a shadow comparison
  struct PendingShadow {
    std::string sql;
    bool ordered = false;
    std::vector<uint32_t> types;
    protocol::BindMessage bind;
    routing::ResultDigest secondary; // what the secondary answered the client
  };
  std::optional<PendingShadow> pending_shadow_;
  // The text of a BEGIN answered but not yet sent to the primary (see defer_begin).
  std::optional<std::string> deferred_begin_;
  // A Bind of the unnamed portal kept from the primary because the Execute that follows may
  // be a read the secondary answers, in which case the primary never needs the portal; with
  // the portal's Describe when the statement's RowDescription is cached. The next message
  // that is not that Describe or Execute sends them on first, in order.
  struct HeldBind {
    std::string bind;                       // the client's message
    bool unnamed_statement = false;         // it binds the unnamed statement
    std::optional<std::string> description; // the cached RowDescription answering Describe
  };
  std::optional<HeldBind> held_bind_;
  // The Parse of a read into the unnamed statement, held like the Bind after it (the first
  // Bind may hold only a Bind of that statement). Answered with the read, or sent on first.
  std::optional<std::string> held_parse_;
  // The unnamed statement's Parse the primary has not had, as the secondary answered its
  // read: sent, its ParseComplete hidden, when a later message needs that statement.
  std::string unsent_parse_;
  // Reads parsed into the unnamed statement, by their Parse message (text and types).
  std::unordered_map<std::string, std::shared_ptr<const PreparedInfo>, TextHash, std::equal_to<>>
      unnamed_reads_;
  uint64_t primary_bytes_flushed_ = 0;
  uint64_t cycle_start_bytes_ = 0; // primary_bytes_queued() at the last Sync or Query sent
  std::minstd_rand sampler_{std::random_device{}()};
};

MirrorRelay::MirrorRelay(Stream& client, BackendSession& primary, Services& services,
                         std::shared_ptr<const Runtime> runtime, monitoring::RelayStats& stats,
                         SessionActivity& activity, const std::string& primary_database,
                         LoginRequest secondary_login, routing::SessionIdentity identity,
                         std::string peer, const std::string& client_leftover)
    : impl_(std::make_unique<Impl>(client, primary, services, std::move(runtime), stats, activity,
                                   primary_database, std::move(secondary_login),
                                   std::move(identity), std::move(peer), client_leftover)) {}

MirrorRelay::~MirrorRelay() = default;

asio::awaitable<Closing> MirrorRelay::run() {
  return impl_->run();
}
asio::awaitable<void> MirrorRelay::finish() {
  return impl_->finish();
}

} // namespace switchyard::proxy
