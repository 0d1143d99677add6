#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "backfill/journal.hpp"
#include "protocol/classify.hpp"
#include "protocol/extended.hpp"
#include "protocol/row_image.hpp"
#include "proxy/backend_connector.hpp"
#include "proxy/message_reader.hpp"
#include "proxy/services.hpp"

namespace switchyard::proxy {

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
  std::vector<std::string> copy_data;   //!< CopyData payloads of a COPY FROM STDIN
  std::optional<uint64_t> primary_rows; //!< rows the primary's CommandComplete reported
  // Image ops: the table, what the statement did, and the rows the primary returned.
  protocol::Statement statement;
  std::vector<protocol::FieldDescription> fields;
  std::vector<std::vector<protocol::Value>> rows;
};

//! A session's connection to the secondary and the writes of its open transaction. Writes
//! are collected as the primary runs them and applied in one secondary transaction just
//! before the primary commits, while the primary still holds its row locks: conflicting
//! writes of concurrent sessions thus reach the secondary in the primary's order, and the
//! two databases cannot deadlock each other. Whatever the secondary does not apply goes to
//! the divergence journal; nothing here ever fails the client.
class SecondaryLink {
public:
  SecondaryLink(Services& services, std::shared_ptr<const Runtime> runtime, LoginRequest login,
                std::string peer);
  ~SecondaryLink();
  SecondaryLink(const SecondaryLink&) = delete;
  SecondaryLink& operator=(const SecondaryLink&) = delete;

  //! Adds a write of the open transaction. Past mirror.max_transaction_bytes a
  //! transaction's further writes go to the journal instead (replayed once it commits), so
  //! memory stays bounded.
  void add(MirrorOp op);
  //! Records a session setting (SET, PREPARE, ...) every secondary connection must share.
  //! `drops_prepared`: it may deallocate prepared statements (DEALLOCATE, DISCARD).
  void add_session_statement(std::string sql, bool drops_prepared);
  //! Drops the open transaction's writes (the client rolled back).
  void discard() {
    pending_.clear();
    pending_bytes_ = 0;
  }
  bool has_pending() const { return !pending_.empty(); }

  //! Applies the open transaction's writes to the secondary, bounded by mirror.timeout, in
  //! one transaction; `atomic` false runs each on its own, as the client ran DDL outside a
  //! transaction block (CREATE INDEX CONCURRENTLY refuses one).
  asio::awaitable<void> commit(bool atomic = true);
  //! The primary transaction whose writes were last journaled has ended: the replayer may
  //! take them now.
  void settle();
  //! Journals a write switchyard could not mirror at all.
  void journal_unmirrorable(std::string sql, const std::string& why);

  // ---- reads routed to the secondary ------------------------------------------------

  //! Whether the secondary is worth trying: it has not failed within the back-off period.
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
  //! The read failed mid-way (lost, hung or answered nonsense): drops the connection and
  //! keeps every session's reads and writes off the secondary for the back-off period.
  void abandon_read();
  //! Whether a read transaction (see start_read) is open on the secondary.
  bool read_transaction_open() const { return read_transaction_open_; }
  //! Ends the read transaction, once the client's transaction ended or began to write.
  asio::awaitable<void> end_read_transaction();

  //! Ends the secondary connection politely.
  asio::awaitable<void> close();

private:
  struct Connection;
  struct Unit;

  asio::awaitable<Status> apply(const std::vector<MirrorOp>& ops, bool atomic,
                                std::vector<Unit>& units, std::vector<Unit>& divergent,
                                std::string& row_count_note);
  asio::awaitable<Status> ensure_connected();
  asio::awaitable<Result<protocol::TableShape>> shape_of(const protocol::TargetTable& table);
  std::string prepared_name(const std::string& sql, const std::vector<uint32_t>& types,
                            std::string& out, std::vector<std::string>& new_names);
  void journal(const std::vector<MirrorOp>& ops, monitoring::MirrorFailure reason,
               const std::string& error);
  void drop_connection();

  Services& services_;
  std::shared_ptr<const Runtime> runtime_;
  LoginRequest login_;
  std::string peer_;
  std::vector<MirrorOp> pending_;
  size_t pending_bytes_ = 0;
  std::vector<std::string> session_statements_;
  size_t session_applied_ = 0;  // how many of session_statements_ the connection has run
  bool drops_prepared_ = false; // a pending session statement may drop our prepared ones
  std::unique_ptr<Connection> connection_;
  std::map<std::string, protocol::TableShape> shapes_;
  uint64_t shapes_epoch_ = 0;
  std::map<std::string, std::string> prepared_; // SQL + types -> statement name
  uint64_t next_prepared_ = 0;
  std::vector<uint64_t> unsettled_; // journal offsets awaiting the primary's commit
  bool read_transaction_open_ = false;
  std::string unconfirmed_read_statement_; // prepared_ key of a read's Parse not yet answered
};

} // namespace switchyard::proxy
