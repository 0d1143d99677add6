#pragma once

#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "config/backend_uri.hpp"
#include "protocol/result.hpp"
#include "proxy/asio.hpp"
#include "proxy/text_hash.hpp"

namespace switchyard::proxy {

//! An error as PostgreSQL would report it: SQLSTATE, message and optional detail.
struct SqlError {
  std::string sqlstate;
  std::string message;
  std::string detail;
};
//! nullopt when an operation succeeded.
using SqlStatus = std::optional<SqlError>;

//! The SQLSTATE PostgreSQL uses for what SQLite reports as extended result `code` with
//! `message` (e.g. SQLITE_CONSTRAINT_UNIQUE -> 23505, "no such table" -> 42P01).
std::string_view sqlstate_for(int code, std::string_view message);

//! One SQLite connection and its prepared statements, used by one session at a time.
class SqliteConnection {
public:
  //! Opens `path` in WAL mode with foreign keys on and switchyard's PostgreSQL-compatible
  //! functions (version(), now(), gen_random_uuid(), ...) registered.
  static Result<std::unique_ptr<SqliteConnection>> open(const std::string& path,
                                                        std::chrono::milliseconds busy_timeout);
  ~SqliteConnection();
  SqliteConnection(const SqliteConnection&) = delete;
  SqliteConnection& operator=(const SqliteConnection&) = delete;

  sqlite3* handle() const { return db_; }
  //! A statement for `sql`, taken out of the cache or newly prepared; hand it back with
  //! give_back. `used` receives how many bytes of `sql` the first statement took.
  SqlStatus prepare(std::string_view sql, sqlite3_stmt*& statement, size_t* used = nullptr);
  //! Resets `statement` and keeps it for the next prepare of the same text.
  void give_back(sqlite3_stmt* statement);
  //! Runs `sql` (no rows expected).
  SqlStatus exec(const char* sql);
  //! The connection's last error as PostgreSQL would report it.
  SqlError last_error();
  //! switchyard_raise(sqlstate, message) failed the statement running: its error is reported
  //! with `sqlstate` (five characters, else mapped as any other error).
  void raised(std::string_view sqlstate);

private:
  explicit SqliteConnection(sqlite3* db) : db_(db) {}
  sqlite3* db_;
  std::unordered_map<std::string, sqlite3_stmt*, TextHash, std::equal_to<>> cache_;
  std::string raised_sqlstate_; // set by switchyard_raise until last_error reports it
};

//! A SQLite database file shared by every session on it: one writer connection behind an
//! asynchronous lock (SQLite allows one writer at a time) and a pool of reader connections
//! (WAL readers see a snapshot and never block the writer).
class SqliteDatabase {
public:
  static Result<std::shared_ptr<SqliteDatabase>> open(const config::BackendTarget& target);

  const std::string& path() const { return path_; }
  std::chrono::milliseconds busy_timeout() const { return busy_timeout_; }

  //! Waits (without blocking a thread) until this session holds the writer; false when
  //! `timeout` passed first. `executor` is the caller's strand.
  asio::awaitable<bool> lock_writer(asio::any_io_executor executor,
                                    std::chrono::milliseconds timeout);
  //! Hands the writer to the next waiter, or frees it.
  void unlock_writer();
  //! The writer connection; only its lock holder may use it.
  SqliteConnection& writer() { return *writer_; }

  //! A reader connection from the pool (opened when none is free).
  Result<std::unique_ptr<SqliteConnection>> take_reader();
  void return_reader(std::unique_ptr<SqliteConnection> reader);

  //! Counts commits made through the writer, so a reading transaction can tell whether the
  //! database changed since its snapshot began.
  uint64_t commit_sequence() const { return commits_.load(); }
  void note_commit() { ++commits_; }

private:
  struct Waiter;
  SqliteDatabase(std::string path, std::chrono::milliseconds busy_timeout,
                 std::unique_ptr<SqliteConnection> writer)
      : path_(std::move(path)), busy_timeout_(busy_timeout), writer_(std::move(writer)) {}

  std::string path_;
  std::chrono::milliseconds busy_timeout_;
  std::unique_ptr<SqliteConnection> writer_;
  std::mutex mutex_;
  bool writer_busy_ = false;
  std::deque<std::shared_ptr<Waiter>> waiters_;
  std::vector<std::unique_ptr<SqliteConnection>> readers_;
  std::atomic<uint64_t> commits_{0};
};

class SqliteSession;

//! The process-wide SQLite engine: the worker threads that run SQLite calls (never the
//! network threads), the open databases by file, and the live sessions by backend pid for
//! cancel requests. One per process because SQLite's one-writer rule is per file, whatever
//! config the sessions started with.
class SqliteEngine {
public:
  static SqliteEngine& instance();

  //! The database for `target`, opened (and its directory created) on first use.
  Result<std::shared_ptr<SqliteDatabase>> database(const config::BackendTarget& target);
  //! A new strand on the worker threads for one session.
  asio::any_io_executor session_executor() { return asio::make_strand(workers_); }

  //! Registers a session for cancel requests; returns its (pid, key).
  std::pair<uint32_t, uint32_t> register_session(SqliteSession* session);
  void unregister_session(uint32_t pid);
  //! Interrupts what session `pid` runs if `key` matches.
  void cancel(uint32_t pid, uint32_t key);

private:
  SqliteEngine();
  asio::thread_pool workers_;
  std::mutex mutex_;
  std::map<std::string, std::shared_ptr<SqliteDatabase>> databases_;
  std::map<uint32_t, std::pair<uint32_t, SqliteSession*>> sessions_;
  uint32_t next_pid_ = 1;
};

} // namespace switchyard::proxy
