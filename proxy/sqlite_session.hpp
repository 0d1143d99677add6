#pragma once

#include <mutex>

#include "config/backend_uri.hpp"
#include "protocol/result.hpp"
#include "proxy/sqlite_engine.hpp"
#include "proxy/stream.hpp"

namespace switchyard::proxy {

//! Opens a connection to the SQLite database of `target`: a new engine session that answers
//! the backend side of the PostgreSQL protocol on the engine's worker threads, reached over
//! a local socket pair. Returns the caller's end, bound to `executor`; the session then
//! expects a StartupMessage (or a CancelRequest) like a PostgreSQL server does.
Result<StreamSocket> connect_sqlite(const config::BackendTarget& target,
                                    const asio::any_io_executor& executor);

//! What the engine needs of a live session to cancel it.
class SqliteSession {
public:
  //! Stops the statement the session is running, if any (it fails with 57014).
  void interrupt() {
    std::lock_guard lock(running_mutex_);
    if (running_ != nullptr) sqlite3_interrupt(running_);
  }

protected:
  //! Marks `db` as running a statement (nullptr: none), for interrupt().
  void set_running(sqlite3* db) {
    std::lock_guard lock(running_mutex_);
    running_ = db;
  }

private:
  std::mutex running_mutex_;
  sqlite3* running_ = nullptr;
};

} // namespace switchyard::proxy
