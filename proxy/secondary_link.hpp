#pragma once

#include <chrono>
#include <deque>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "backfill/journal.hpp"
#include "protocol/classify.hpp"
#include "protocol/extended.hpp"
#include "protocol/row_image.hpp"
#include "proxy/backend_connector.hpp"
#include "proxy/message_reader.hpp"
#include "proxy/sequence_marks.hpp"
#include "proxy/services.hpp"
#include "proxy/shared_connections.hpp"

namespace switchyard::proxy {

struct SecondaryConnection;

//! One write the primary made, to be applied to the secondary when the transaction commits.
struct MirrorOp {
  enum class Kind { kImage, kStatement };
  Kind kind = Kind::kStatement;
  //! The client's statement and its parameters: what a statement op runs, and the fallback
  //! of an image op on a table without a primary key.
  std::string sql;
  std::vector<uint32_t> parameter_types;
  std::vector<uint16_t> parameter_formats;
  std::vector<protocol::Value> parameters;
  bool ddl = false;
  //! An image op whose statement calls a function that may write other tables (the primary's
  //! catalog does not say it is STABLE or IMMUTABLE): the secondary runs the statement too,
  //! for what the function writes, then the images over its rows.
  bool calls_writing_functions = false;
  //! DDL the primary, asked just before it ran, said acts on relations besides the session's
  //! temporary ones (MirrorRelay::ask_if_own_temporaries): the secondary runs it as the client
  //! ran it, whatever names the session's bookkeeping counts as temporary. DDL not asked about
  //! (among other statements of one Query, or within an extended-protocol cycle) is told by
  //! that bookkeeping.
  bool primary_said_shared = false;
  std::vector<std::string> copy_data; //!< CopyData payloads of a COPY FROM STDIN
  //! A COPY's primary key: where each of its columns is among the fields of the data, and
  //! its name. Empty when not known (the table has none, the data cannot be split): a COPY
  //! the secondary misses is then journaled as its table, which the replayer refreshes whole.
  std::vector<std::pair<size_t, std::string>> copy_key;
  std::optional<uint64_t> primary_rows; //!< rows the primary's CommandComplete reported
  //! Ids a statement op writes that the secondary's sequences did not give (COPY data
  //! switchyard filled): each sequence with the highest; noted in SequenceMarks when the op
  //! is applied or journaled.
  SequenceMarks::Advances sequence_values;
  //! A large-object call's statement (LargeObjectDescriptors): the object it changed. Should the
  //! secondary miss it, the journal names the object, which the replayer copies from the primary.
  std::optional<uint32_t> large_object;
  //! ... whose content the secondary cannot make (lo_import read a file of the primary's):
  //! once the op is applied, the journal has the replayer copy the object from the primary.
  bool copy_large_object = false;
  // Image ops: the table, what the statement did, and the rows the primary returned.
  protocol::Statement statement;
  std::vector<protocol::FieldDescription> fields;
  std::vector<std::vector<protocol::Value>> rows;
  //! The last of the session's statements (SecondaryLink::add_session_statement) the primary
  //! had run when it ran this: the secondary runs the op after that one and before the next.
  uint64_t session_seq = 0;
  //! The last session statement from before this op's transaction: the secondary runs those
  //! up to it before the transaction and the later ones inside it, where a SET LOCAL holds.
  uint64_t transaction_seq = 0;
};

//! A transaction's writes, in order. A deque: a transaction of many small statements grows it
//! an op at a time, without a vector's spare half and the copies it leaves behind as it grows.
using MirrorOps = std::deque<MirrorOp>;

//! A session's connection to the secondary and the writes of its open transaction. Writes
//! are collected as the primary runs them and applied in one secondary transaction just
//! before the primary commits, while the primary still holds its row locks: conflicting
//! writes of concurrent sessions thus reach the secondary in the primary's order, and the
//! two databases cannot deadlock each other. Whatever the secondary does not apply goes to
//! the divergence journal; nothing here ever fails the client. A session without settings of
//! its own applies its writes, and runs the reads routed to the secondary, on connections it
//! shares with the other sessions of its login on its network thread (see SharedConnections);
//! one that has settings has a connection of its own.
class SecondaryLink {
public:
  SecondaryLink(Services& services, std::shared_ptr<const Runtime> runtime, LoginRequest login,
                std::string peer, const asio::any_io_executor& executor);
  ~SecondaryLink();
  SecondaryLink(const SecondaryLink&) = delete;
  SecondaryLink& operator=(const SecondaryLink&) = delete;

  //! Adds a write of the open transaction. Past mirror.max_transaction_bytes a
  //! transaction's further writes go to the journal instead (replayed once it commits), so
  //! memory stays bounded.
  void add(MirrorOp op);
  //! Records a session statement `statement` (SET, PREPARE, ...; its text `sql`) every
  //! secondary connection must share. It reaches the secondary after the writes added before
  //! it and before those added after.
  void add_session_statement(std::string sql, const protocol::Statement& statement);
  //! The client's transaction ended (an explicit one, or the implicit one of a statement, a
  //! Query or a cycle): its settings stay if `committed`, else they are dropped as PostgreSQL
  //! undoes them; its SET LOCALs end either way. PREPARE and DEALLOCATE outlive a rollback.
  void end_transaction(bool committed);
  //! The client's savepoints: a ROLLBACK TO drops the settings made since the savepoint.
  void savepoint(std::string name);
  void release_savepoint(const std::string& name);
  void rollback_to_savepoint(const std::string& name);
  //! Drops the open transaction's writes (the client rolled back).
  void discard();
  bool has_pending() const { return !pending_.empty(); }

  //! Applies the open transaction's writes to the secondary, bounded by mirror.timeout, in
  //! one transaction (shared with other sessions' commits of the moment where it may be, see
  //! apply_together); `atomic` false runs each on its own, as the client ran DDL outside a
  //! transaction block (CREATE INDEX CONCURRENTLY refuses one).
  asio::awaitable<void> commit(bool atomic = true);
  //! Whether commit() applied writes the primary has yet to commit: they wait for its answer.
  bool awaits_primary_commit() const { return !committed_ahead_.empty(); }
  //! The primary answered the COMMIT that commit() went ahead of (or committed first, as for
  //! autocommit DDL): `committed`, nothing more to do; else the secondary holds writes the
  //! primary rolled back (a serialization failure, a deferred constraint only it has), and
  //! they are journaled for the replayer to make their rows the primary's again. DDL cannot
  //! be so undone: it is logged for repair by hand.
  void primary_answered_commit(bool committed, const std::string& error = {});
  //! The primary prepared the transaction (PREPARE TRANSACTION) that commit() went ahead of:
  //! whether it commits is for a COMMIT or ROLLBACK PREPARED to say, in any session, so its
  //! writes are kept under `key` (the database pair and the transaction's name) meanwhile.
  void primary_prepared(const std::string& key);
  //! A COMMIT PREPARED (`committed`) or ROLLBACK PREPARED of the transaction kept under `key`
  //! succeeded on the primary: a rollback journals its writes, as primary_answered_commit.
  void prepared_transaction_finished(const std::string& key, bool committed);
  //! write_mode async, as a statement goes to the primary: the first of a transaction notes
  //! where Services::commit_order stood then (see CommitOrder::take). DDL that runs on its
  //! own (`ddl_on_its_own`: outside a transaction block of the client's) takes its barrier
  //! there now rather than once the primary answered it: a write the primary runs after it
  //! may commit before switchyard has read that answer, and must reach the secondary after it.
  void note_sent(bool ddl_on_its_own);
  //! write_mode async, just before the COMMIT goes to the primary: the open transaction's
  //! writes take their place in Services::commit_order. Taken now, the order is the
  //! primary's: a transaction waiting for one of these rows cannot commit before this one.
  void reserve();
  //! The primary answered that COMMIT: `committed`, the reserved writes are applied to the
  //! secondary in the background in their order (past mirror.async_queue transactions
  //! waiting, they wait in the journal instead); otherwise they are dropped.
  void hand_over(bool committed);
  //! Writes the primary already made outside a transaction (DDL, settings): applied in the
  //! background after every transaction ordered before them.
  void hand_over_applied();
  //! Whether committed writes of this session still wait for the secondary (async mode):
  //! until they are applied, the session's reads stay on the primary.
  bool has_unapplied() const { return !queue_.empty() || reserved_.has_value(); }
  //! The primary transaction whose writes were last journaled has ended: the replayer may
  //! take them now. (Those of a transaction handed to the async queue wait for its batch
  //! instead, see Batch::settles.)
  void settle();
  //! Whether entries this session journaled are yet to reach the disk: until they do, the
  //! primary must not commit their writes nor the client hear of them, lest a crash lose
  //! the only record of what the secondary missed. (The async applier's entries hold up its
  //! next batch only: the client heard of their writes already.)
  bool journal_unflushed() const { return journal_ticket_ != 0; }
  //! Waits (without holding up the thread) until they are on disk.
  asio::awaitable<void> journal_flushed() { return flushed(journal_ticket_); }
  //! Journals a write switchyard could not mirror at all (a COPY larger than
  //! mirror.max_transaction_bytes: its table, to refresh from the primary).
  void journal_unmirrorable(MirrorOp op, const std::string& why);

  // ---- reads routed to the secondary ------------------------------------------------

  //! Whether a read is worth trying there: neither a write nor a read failed there within
  //! the back-off period.
  bool available() const;
  //! Sends a read to the secondary, connecting (and replaying the session's settings) first
  //! if need be: a simple Query, or with `bind` set, the statement `read.sql` prepared
  //! (once per connection), bound, executed and synced. `begin` set: the client is inside a
  //! transaction that began with it, and the read runs in a secondary transaction opened
  //! the same way, which later reads of that transaction share (one snapshot).
  struct Read {
    std::string_view sql;
    const std::vector<uint32_t>* parameter_types = nullptr; //!< with bind
    const protocol::BindMessage* bind = nullptr;            //!< null: a simple Query
    const std::string* begin = nullptr;
  };
  asio::awaitable<Status> start_read(const Read& read);
  //! The next message answering the read; its body is valid until the next call.
  asio::awaitable<Result<protocol::Frame>> read_frame();
  //! Whether read_frame would return at once.
  bool has_frame() const;
  //! The read failed mid-way (lost, slow or answered nonsense): drops the connection (the
  //! read still running there is cancelled) and keeps every session's reads off the
  //! secondary for the back-off period. Not its writes: a slow read says nothing of them,
  //! and a secondary that is down or hung fails their own attempt, within mirror.timeout.
  void abandon_read();
  //! Whether a read transaction (see start_read) is open on the secondary.
  bool read_transaction_open() const { return read_transaction_open_; }
  //! Ends the read transaction, once the client's transaction ended or began to write.
  asio::awaitable<void> end_read_transaction();

  //! Ends the secondary connection politely.
  asio::awaitable<void> close();

private:
  struct Unit;
  struct ApplyOutcome;
  struct GroupMember;

  //! A committed transaction waiting for its turn (async mode).
  struct Batch {
    uint64_t ticket = 0;
    MirrorOps ops;
    bool atomic = true;
    std::chrono::steady_clock::time_point committed_at;
    std::optional<uint64_t> spilled; // journal offset when the queue was full
    bool scoped_settings = false;    // its transaction ran a SET LOCAL: applied on its own
    //! Journal entries its transaction wrote instead of ops (past max_transaction_bytes):
    //! the replayer takes them once the batch's ops are applied or journaled, so its copy of
    //! the primary's rows or objects lands after the transaction's earlier writes.
    std::vector<uint64_t> settles;
    //! What its ops keep, counted in Services::async_queue_bytes while it is queued.
    size_t bytes = 0;
  };
  //! Releases `batch.settles` to the replayer.
  void settle(Batch& batch);
  //! Takes the batch's bytes off Services::async_queue_bytes, as it leaves the queue.
  void uncount(Batch& batch);

  void enqueue(Batch batch);

  //! Who journals, which says what waits for the entries: those of a primary transaction
  //! still open wait for its commit before the replayer takes them; and until they are on
  //! disk, the session's next word to the primary or the client waits, or the async
  //! applier's next batch. The client heard of the applier's writes already: its answers
  //! need not wait for their entries.
  enum class Journaling {
    kOpenTransaction,  //!< the session, its primary transaction open
    kEndedTransaction, //!< the session, its primary transaction ended
    kApplier,          //!< the async applier: the primary committed the writes
  };
  //! The ticket a wait for entries journaled so takes (journal_ticket_ or applier_ticket_).
  uint64_t& ticket_of(Journaling journaling) {
    return journaling == Journaling::kApplier ? applier_ticket_ : journal_ticket_;
  }
  //! Waits until the entries of `ticket` are on disk, then clears it unless another append
  //! renewed it meanwhile.
  asio::awaitable<void> flushed(uint64_t& ticket);
  //! Whether the secondary failed moments ago: writes go to the journal without trying it
  //! until Services::secondary_down_until.
  bool secondary_failed_recently() const;

  //! Whether a committed transaction may share a secondary transaction with others of its
  //! session: plain writes only (no savepoints, COPY or DDL), not spilled to the journal, and
  //! no SET LOCAL, which would hold for the transactions after it in the shared one.
  static bool mergeable(const Batch& batch);
  asio::awaitable<void> apply_queue();
  //! The hashed keys of the rows `ops` write; false when some op cannot be pinned to rows
  //! (a statement, a key change, a table not seen yet), which makes it a barrier.
  bool row_keys(const MirrorOps& ops, std::vector<uint64_t>& keys) const;
  //! Applies `ops` within mirror.timeout, journaling what the secondary does not apply.
  asio::awaitable<void> apply_batch(const MirrorOps& ops, bool atomic, Journaling journaling);
  //! Whether `ops` may be applied together with other sessions' (see ApplyGroups): plain
  //! writes that may run on a shared connection, in one transaction, of a session that has
  //! no secondary connection of its own.
  bool groupable(const MirrorOps& ops, bool atomic) const;
  //! Applies groupable `ops` in one secondary transaction with the commits other sessions of
  //! the login, on any network thread, make meanwhile (see ApplyGroups); journaled as
  //! apply_batch would.
  //! Returns `ops` once applied (or journaled).
  asio::awaitable<MirrorOps> apply_together(MirrorOps ops, Journaling journaling);
  //! Applies the groups of login `key` one after the other until no commit waits, or hands
  //! over to a thread whose commits wait when none of this thread's do.
  static asio::awaitable<void> apply_groups(ApplyGroups& groups, std::string key);
  //! Applies `ops` within mirror.timeout and says how it went; journals nothing.
  asio::awaitable<ApplyOutcome> try_apply(const MirrorOps& ops, bool atomic);
  //! A refusal for a column or table the secondary lacks, which DDL under way may add.
  static bool lacks_what_ddl_adds(const ApplyOutcome& outcome);
  //! Whether the secondary applied DDL since it had applied `applied` DDL batches, waiting
  //! for it within mirror.timeout while DDL sent to the primary may still be on its way.
  asio::awaitable<bool> secondary_ddl_since(uint64_t applied);
  //! Journals what `outcome` says the secondary did not apply of `ops`.
  void journal_outcome(const MirrorOps& ops, const ApplyOutcome& outcome, Journaling journaling);
  //! `maybe_applied` turns true once the writes are sent and stays so unless the secondary's
  //! answers show it applied none of them; `lacking` gets ApplyOutcome::lacking's ops.
  asio::awaitable<Status> apply(const MirrorOps& ops, bool atomic, std::vector<Unit>& units,
                                std::vector<Unit>& divergent, std::vector<size_t>& lacking,
                                bool& maybe_applied);
  //! Makes connection_ ready: the session's own, or with `may_share`, when the session has
  //! none, one shared with sessions of the same login (given back by give_back_shared); with
  //! the session statements up to `settings_up_to` run on it.
  asio::awaitable<Status>
  ensure_connected(bool may_share = false,
                   uint64_t settings_up_to = std::numeric_limits<uint64_t>::max());
  //! Drops a statement from a log grown past kMaxSessionStatements, where writes waiting for
  //! the secondary kept repeats, if one can go.
  void forget_a_session_statement();
  //! Drops the settings made after session statement `seq` (a rollback undid them).
  void undo_settings_after(uint64_t seq);
  //! Whether writes added to the link, yet to reach the secondary (or the journal), hold
  //! their places among the session statements.
  bool writes_hold_places() const {
    return !pending_.empty() || reserved_ || !queue_.empty() || applying_ops_;
  }
  //! Whether the session has nothing of its own a secondary connection would have to hold.
  bool shares_connections() const;
  //! Whether `ops` may be applied on a shared connection (see the class comment).
  bool may_share(const MirrorOps& ops) const;
  //! Returns a shared connection_ after an apply or a read, unless it is in doubt (then
  //! closed); a connection of the session's own stays.
  void give_back_shared();
  //! This session's DDL barrier, taken as the DDL was sent, now that the primary answered it.
  std::optional<uint64_t> answered_ddl_barrier();
  //! Lets go of that barrier without applying anything (the DDL failed or rolled back).
  void release_ddl_barrier();
  //! Lets go of a ticket never queued (its writes were dropped), keeping the queue's gauge.
  void release(uint64_t ticket);
  //! Ends a connection politely in the background.
  void retire(std::unique_ptr<SecondaryConnection> connection);
  //! The shape of the table `op` writes, as its name resolves under the op's settings and
  //! after `earlier_ddl`, the DDL its batch runs before it.
  asio::awaitable<Result<protocol::TableShape>>
  shape_of(const MirrorOp& op, std::span<const std::string_view> earlier_ddl);
  //! The key of that shape in shapes_: the table's name and the settings it resolves by.
  std::string shape_key(const MirrorOp& op) const;
  //! Its key in Services::shapes(), from its `key` in shapes_; empty for a table that is or
  //! may be a temporary one (the session's own).
  std::string shared_shape_key(const MirrorOp& op, const std::string& key) const;
  std::string prepared_name(const std::string& sql, const std::vector<uint32_t>& types,
                            std::string& out, std::vector<std::string>& new_names);
  //! Appends `ops` to the journal; the offset to settle once the primary committed them.
  //! `ticket` as append_to_journal's. `maybe_applied`: the secondary may have applied them
  //! after all (see JournalEntry).
  std::optional<uint64_t> journal(const MirrorOps& ops, monitoring::MirrorFailure reason,
                                  const std::string& error, uint64_t* ticket,
                                  bool maybe_applied = false);
  //! The entries journal() would append for `ops` (its bookkeeping of temporary tables and
  //! sequence marks done), without appending them.
  std::vector<backfill::JournalEntry> journal_entries(const MirrorOps& ops,
                                                      monitoring::MirrorFailure reason,
                                                      const std::string& error, bool maybe_applied);
  //! Appends `entries` built for `reason` (counted, logged at a bounded rate).
  std::optional<uint64_t> record_in_journal(const std::vector<backfill::JournalEntry>& entries,
                                            monitoring::MirrorFailure reason,
                                            const std::string& error, uint64_t* ticket);
  void log_ddl_rolled_back(const std::string& sql, const std::string& error) const;
  void journal_ops(const MirrorOps& ops, monitoring::MirrorFailure reason, const std::string& error,
                   Journaling journaling, bool maybe_applied = false);
  //! A journal entry with `op`'s session: its login, the settings it ran under.
  backfill::JournalEntry entry_for(const MirrorOp& op) const;
  //! `base` made the entry of `op` as a statement: its text and parameters.
  static backfill::JournalEntry statement_entry(const MirrorOp& op, backfill::JournalEntry base);
  //! The entry that has the replayer copy the table a CREATE TABLE AS or SELECT INTO filled,
  //! or the values a column's default gave its rows (Statement::fills_table), from the
  //! primary: they are the primary's.
  backfill::JournalEntry table_copy_entry(const MirrorOp& op) const;
  //! The rows a COPY op wrote, as row entries like `base` of its key's values taken from its
  //! data (MirrorOp::copy_key), for the replayer to re-read from the primary; nullopt when
  //! its key or data is not known, or it wrote more rows than kMaxCopyRowEntries.
  static std::optional<std::vector<backfill::JournalEntry>>
  copy_row_entries(const MirrorOp& op, const backfill::JournalEntry& base);
  //! The entries of `op`'s image rows, built on `entry`.
  static void append_row_entries(const MirrorOp& op, backfill::JournalEntry entry,
                                 std::vector<backfill::JournalEntry>& entries);
  //! After the secondary applied `ops`, what their images could not carry is read from the
  //! primary once its transaction committed: each table an op filled is copied (as above), so
  //! is each large object lo_import read from a file (MirrorOp::copy_large_object), and the
  //! rows of the ops at `lacking`, written through a view that hides columns the table
  //! chose values for (TableShape::hidden_chosen), are journaled, reason kHiddenByView.
  void journal_what_images_lacked(const MirrorOps& ops, const std::vector<size_t>& lacking,
                                  Journaling journaling);
  //! Appends and counts; the offset of the entries, none if not journaled. `ticket` (of
  //! ticket_of) takes the append's for a wait until they are on disk (see flushed); null:
  //! nothing waits for them.
  std::optional<uint64_t> append_to_journal(const std::vector<backfill::JournalEntry>& entries,
                                            uint64_t* ticket);
  //! Entries appended at `offset` of a primary transaction still open wait for the
  //! replayer until the primary committed them.
  void hold_until_committed(std::optional<uint64_t> offset, Journaling journaling);
  //! Closes the connection; writes sent on it and not answered yet are cancelled.
  void drop_connection();
  //! Drops a connection the secondary closed while it sat idle, unless a read transaction
  //! is open on it (its reads fall back as they are).
  void drop_if_closed();

  // ---- the session's temporary relations (see temporary_names_) ---------------------

  //! The relations `op` names without a schema or in pg_temp: those its DDL acts on, or the
  //! tables it creates or writes.
  static std::vector<const protocol::TargetTable*> relations_of(const MirrorOp& op);
  //! Whether `op` acts on temporary relations of the session's alone, which no connection but
  //! its own secondary one can reach: DDL found to (Statement::private_ddl), or a write to a
  //! table in pg_temp. Never journaled: replayed on another connection it would fail, or
  //! find a permanent relation of the same name (a DROP of the session's staging table).
  static bool session_only(const MirrorOp& op);
  //! Whether `op` is a write run as the client's statement (a COPY, a writing CTE), which
  //! carries no row images for the replayer to re-read from the primary.
  static bool statement_write(const MirrorOp& op);
  //! Whether `op` names a temporary relation the secondary connection lost.
  bool names_lost_temporary(const MirrorOp& op) const;
  //! Notes the temporary relations `ops`, applied, created and dropped (a DROP the primary
  //! was not asked about too: a bare name finds the session's temporary relation first).
  void note_temporaries(const MirrorOps& ops);
  //! Takes out of `ops` those naming temporary relations the secondary connection lost: the
  //! session-only ones, DDL and statement writes are dropped (counted); row images of a table by
  //! such a bare name are journaled (a row image's rows the replayer re-reads from the primary,
  //! where the name may be a permanent table's by now) rather than run where the name finds a
  //! permanent table of the same name.
  void set_aside_lost_temporaries(MirrorOps& ops, Journaling journaling);
  //! Whether the secondary runs image op `op` itself first, for what functions it calls
  //! write elsewhere: MirrorOp::calls_writing_functions, or an INSERT leaving a column of
  //! `shape` (when known) to a DEFAULT calling such a function (TableShape::writing_defaults).
  bool calls_writing_functions(const protocol::TableShape* shape, const MirrorOp& op) const;
  //! The shape of `op`'s table as this session learned it, else as another session did
  //! (copied into `shared`); null when no session has written to it yet.
  const protocol::TableShape* known_shape(const MirrorOp& op,
                                          std::optional<protocol::TableShape>& shared) const;
  //! Notes in SequenceMarks the ids INSERT image `op` wrote to the serial and identity
  //! columns of `shape`.
  void note_sequence_values(const protocol::TableShape& shape, const MirrorOp& op);
  //! This network thread's shared connections.
  SharedConnections<SecondaryConnection>& shared_connections() const;

  Services& services_;
  std::shared_ptr<const Runtime> runtime_;
  LoginRequest login_;
  std::string peer_;
  std::string login_key_;    // the secondary and the login: what shared connections are kept by
  std::string database_key_; // the secondary database: what SequenceMarks are kept by
  SequenceMarks::Advances advances_; // taken by the apply under way; put back if it fails
  MirrorOps pending_;
  size_t pending_bytes_ = 0;
  //! Large objects of the open transaction journaled past mirror.max_transaction_bytes.
  std::set<uint32_t> too_large_objects_;
  //! A session statement and its place among the session's writes (MirrorOp::session_seq).
  struct SessionStatement {
    enum class Kind { kSetting, kPrepared, kDiscard }; // SET, RESET; PREPARE, DEALLOCATE; DISCARD
    uint64_t seq = 0;
    std::string sql;
    Kind kind = Kind::kSetting;
    bool drops_prepared = false;     // DEALLOCATE, DISCARD ALL
    bool transaction_scoped = false; // SET LOCAL, SET TRANSACTION: over when its transaction is
    //! A rollback undoes settings and DISCARD, not PREPARE or DEALLOCATE.
    bool transactional() const { return kind != Kind::kPrepared; }
  };
  //! The settings (SET, RESET) `op` ran under, in order, of those after session statement
  //! `after`: a DISCARD ALL cleared those before it, and a SET LOCAL holds only in its own
  //! transaction. Views into session_statements_.
  std::vector<std::string_view> settings_of(const MirrorOp& op, uint64_t after = 0) const;
  std::vector<SessionStatement> session_statements_; // by seq
  // The latest session statement's seq.
  uint64_t session_seq_ = 0;
  uint64_t session_applied_ = 0; // the connection ran the session statements up to this seq
  uint64_t transaction_seq_ = 0; // the last session statement from before the open transaction
  uint64_t compacted_up_to_ = 0; // end_transaction compacted the log with statements up to it
  std::vector<std::pair<std::string, uint64_t>> savepoints_; // with the session_seq_ at each
  bool applying_ops_ = false;                                // apply() is under way
  bool forgot_statements_ = false; // more than kMaxSessionStatements: said once
  std::unique_ptr<SecondaryConnection> connection_;
  bool borrowed_ = false; // connection_ is a shared one, for the apply or read under way
  bool sharing_ = false;  // joined the shared connections of login_key_
  std::map<std::string, protocol::TableShape> shapes_;
  uint64_t shapes_epoch_ = 0; // the schema epoch, plus private_ddl_, shapes_ were read at
  // DDL applied that created temporary objects: it moves only this session's schema epoch.
  uint64_t private_ddl_ = 0;
  bool created_temporary_ = false; // tables named without a schema may be temporary ones
  //! Names of the temporary relations the session created that its secondary connection
  //! holds, and of those it lost: the connection that held them was lost, or DDL or a write
  //! of theirs missed it. Statements naming a lost one must not reach a permanent relation
  //! of the same name on the connection that replaced it.
  std::set<std::string> temporary_names_;
  std::set<std::string> lost_temporaries_;
  std::vector<uint64_t> unsettled_; // journal offsets awaiting the primary's commit
  uint64_t journal_ticket_ = 0;  // DivergenceJournal::when_durable's, of the session's last append
  uint64_t applier_ticket_ = 0;  // and of the async applier's
  MirrorOps committed_ahead_;    // see awaits_primary_commit
  bool sent_unanswered_ = false; // writes (apply) or a read sent, not all answers read
  bool read_transaction_open_ = false;
  asio::any_io_executor executor_; // the session's: the async queue is applied there
  std::deque<Batch> queue_;
  std::optional<Batch> reserved_;             // its COMMIT is on the way to the primary
  std::optional<uint64_t> transaction_began_; // the commit order's position as it began
  std::optional<uint64_t> ddl_barrier_;       // its DDL's, taken as the DDL was sent
  bool applying_ = false;
  asio::steady_timer applied_;             // cancelled when the queue ran empty
  std::string unconfirmed_read_statement_; // the prepared key of a read's Parse not yet answered
};

} // namespace switchyard::proxy
