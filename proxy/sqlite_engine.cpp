#include "proxy/sqlite_engine.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <random>
#include <utility>

#include "proxy/sqlite_session.hpp"

namespace switchyard::proxy {

std::string_view sqlstate_for(int code, std::string_view message) {
  switch (code) {
  case SQLITE_CONSTRAINT_UNIQUE:
  case SQLITE_CONSTRAINT_PRIMARYKEY: return "23505";
  case SQLITE_CONSTRAINT_FOREIGNKEY: return "23503";
  case SQLITE_CONSTRAINT_NOTNULL: return "23502";
  case SQLITE_CONSTRAINT_CHECK: return "23514";
  default: break;
  }
  switch (code & 0xFF) {
  case SQLITE_CONSTRAINT: return "23000";
  case SQLITE_BUSY:
  case SQLITE_LOCKED: return "55P03";
  case SQLITE_READONLY: return "25006";
  case SQLITE_INTERRUPT: return "57014";
  case SQLITE_TOOBIG: return "54000";
  case SQLITE_NOMEM: return "53200";
  case SQLITE_FULL: return "53100";
  case SQLITE_IOERR:
  case SQLITE_CANTOPEN: return "58030";
  case SQLITE_CORRUPT:
  case SQLITE_NOTADB: return "XX001";
  case SQLITE_MISMATCH: return "42804";
  case SQLITE_RANGE: return "08P01";
  case SQLITE_AUTH:
  case SQLITE_PERM: return "42501";
  default: break;
  }
  if (message.find("syntax error") != std::string_view::npos ||
      message.find("incomplete input") != std::string_view::npos ||
      message.find("unrecognized token") != std::string_view::npos)
    return "42601";
  if (message.starts_with("no such table")) return "42P01";
  if (message.starts_with("no such column")) return "42703";
  if (message.starts_with("no such function")) return "42883";
  if (message.starts_with("no such index")) return "42704";
  if (message.find("already exists") != std::string_view::npos) return "42P07";
  if (message.find("ambiguous column name") != std::string_view::npos) return "42702";
  if (message.find("wrong number of arguments") != std::string_view::npos) return "42883";
  if (message.find("division by zero") != std::string_view::npos) return "22012";
  return "42000";
}

namespace {

// now() and clock_timestamp(): the current time as ISO-8601 text in UTC with microseconds.
void now_function(sqlite3_context* context, int, sqlite3_value**) {
  auto now =
      std::chrono::time_point_cast<std::chrono::microseconds>(std::chrono::system_clock::now());
  auto seconds = std::chrono::floor<std::chrono::seconds>(now);
  auto micros = (now - seconds).count();
  std::time_t t = std::chrono::system_clock::to_time_t(seconds);
  std::tm utc{};
  gmtime_r(&t, &utc);
  char text[48];
  size_t n = std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &utc);
  n += static_cast<size_t>(
      std::snprintf(text + n, sizeof text - n, ".%06lld+00:00", static_cast<long long>(micros)));
  sqlite3_result_text(context, text, static_cast<int>(n), SQLITE_TRANSIENT);
}

void version_function(sqlite3_context* context, int, sqlite3_value**) {
  std::string text = std::string("PostgreSQL 15.0 (switchyard ") + SWITCHYARD_VERSION +
                     " SQLite engine, SQLite " + sqlite3_libversion() + ")";
  sqlite3_result_text(context, text.c_str(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
}

// switchyard_raise(sqlstate, message): fails with `message`, reported as SQLSTATE `sqlstate`
// (see last_error). What MirrorRelay runs on a SQLite primary in place of a statement it
// refuses, where a PostgreSQL one runs a DO that raises.
void raise_function(sqlite3_context* context, int, sqlite3_value** arguments) {
  const auto* sqlstate = reinterpret_cast<const char*>(sqlite3_value_text(arguments[0]));
  const auto* message = reinterpret_cast<const char*>(sqlite3_value_text(arguments[1]));
  auto* connection = static_cast<SqliteConnection*>(sqlite3_user_data(context));
  connection->raised(sqlstate != nullptr ? sqlstate : "");
  sqlite3_result_error(context, message != nullptr ? message : "refused by switchyard", -1);
}

void uuid_function(sqlite3_context* context, int, sqlite3_value**) {
  unsigned char bytes[16];
  sqlite3_randomness(sizeof bytes, bytes);
  bytes[6] = static_cast<unsigned char>((bytes[6] & 0x0F) | 0x40); // version 4
  bytes[8] = static_cast<unsigned char>((bytes[8] & 0x3F) | 0x80); // RFC 4122 variant
  char text[37];
  size_t n = 0;
  for (size_t i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) text[n++] = '-';
    n += static_cast<size_t>(std::snprintf(text + n, sizeof text - n, "%02x", bytes[i]));
  }
  sqlite3_result_text(context, text, static_cast<int>(n), SQLITE_TRANSIENT);
}

} // namespace

Result<std::unique_ptr<SqliteConnection>>
SqliteConnection::open(const std::string& path, std::chrono::milliseconds busy_timeout) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(
      path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  std::unique_ptr<SqliteConnection> connection(new SqliteConnection(db));
  if (rc != SQLITE_OK) {
    return Error{"cannot open SQLite database " + path + ": " +
                 (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc))};
  }
  sqlite3_extended_result_codes(db, 1);
  sqlite3_busy_timeout(db, static_cast<int>(busy_timeout.count()));
  for (const char* setup : {"PRAGMA journal_mode=WAL", "PRAGMA foreign_keys=ON"}) {
    if (auto failed = connection->exec(setup)) {
      return Error{"cannot set up SQLite database " + path + ": " + failed->message};
    }
  }
  constexpr int kFlags = SQLITE_UTF8 | SQLITE_INNOCUOUS;
  sqlite3_create_function(db, "now", 0, kFlags, nullptr, now_function, nullptr, nullptr);
  sqlite3_create_function(db, "clock_timestamp", 0, kFlags, nullptr, now_function, nullptr,
                          nullptr);
  sqlite3_create_function(db, "version", 0, kFlags | SQLITE_DETERMINISTIC, nullptr,
                          version_function, nullptr, nullptr);
  sqlite3_create_function(db, "gen_random_uuid", 0, kFlags, nullptr, uuid_function, nullptr,
                          nullptr);
  sqlite3_create_function(db, "switchyard_raise", 2, kFlags, connection.get(), raise_function,
                          nullptr, nullptr);
  return connection;
}

SqliteConnection::~SqliteConnection() {
  for (auto& [sql, statement] : cache_)
    sqlite3_finalize(statement);
  sqlite3_close_v2(db_);
}

SqlStatus SqliteConnection::prepare(std::string_view sql, sqlite3_stmt*& statement, size_t* used) {
  if (auto found = cache_.find(sql); found != cache_.end()) {
    statement = found->second;
    cache_.erase(found);
    if (used) *used = sql.size();
    return std::nullopt;
  }
  const char* tail = nullptr;
  int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                              SQLITE_PREPARE_PERSISTENT, &statement, &tail);
  if (rc != SQLITE_OK) return last_error();
  if (used) *used = static_cast<size_t>(tail - sql.data());
  return std::nullopt;
}

void SqliteConnection::give_back(sqlite3_stmt* statement) {
  constexpr size_t kMaxCached = 256;
  sqlite3_reset(statement);
  sqlite3_clear_bindings(statement);
  std::string key = sqlite3_sql(statement);
  if (cache_.size() >= kMaxCached || cache_.contains(key)) {
    sqlite3_finalize(statement);
    return;
  }
  cache_.emplace(std::move(key), statement);
}

SqlStatus SqliteConnection::exec(const char* sql) {
  if (sqlite3_exec(db_, sql, nullptr, nullptr, nullptr) != SQLITE_OK) return last_error();
  return std::nullopt;
}

void SqliteConnection::raised(std::string_view sqlstate) {
  raised_sqlstate_ = sqlstate.size() == 5 ? sqlstate : std::string_view();
}

SqlError SqliteConnection::last_error() {
  std::string message = sqlite3_errmsg(db_);
  std::string sqlstate = std::exchange(raised_sqlstate_, {});
  if (sqlstate.empty()) sqlstate = sqlstate_for(sqlite3_extended_errcode(db_), message);
  return SqlError{std::move(sqlstate), std::move(message), {}};
}

struct SqliteDatabase::Waiter {
  Waiter(const asio::any_io_executor& executor, std::chrono::milliseconds timeout)
      : strand(executor), timer(executor, timeout) {}
  asio::any_io_executor strand;
  asio::steady_timer timer;
  bool granted = false; // guarded by the database's mutex
};

Result<std::shared_ptr<SqliteDatabase>> SqliteDatabase::open(const config::BackendTarget& target) {
  std::error_code ec;
  auto directory = std::filesystem::path(target.path).parent_path();
  if (!directory.empty()) std::filesystem::create_directories(directory, ec);
  if (ec) return Error{"cannot create " + directory.string() + ": " + ec.message()};
  auto writer = SqliteConnection::open(target.path, target.busy_timeout);
  if (!writer) return Error{writer.error()};
  return std::shared_ptr<SqliteDatabase>(
      new SqliteDatabase(target.path, target.busy_timeout, std::move(*writer)));
}

asio::awaitable<bool> SqliteDatabase::lock_writer(asio::any_io_executor executor,
                                                  std::chrono::milliseconds timeout) {
  auto waiter = std::make_shared<Waiter>(executor, timeout);
  {
    std::lock_guard lock(mutex_);
    if (!writer_busy_) {
      writer_busy_ = true;
      co_return true;
    }
    waiters_.push_back(waiter);
  }
  co_await waiter->timer.async_wait(use_tuple);
  std::lock_guard lock(mutex_);
  if (waiter->granted) co_return true;
  std::erase(waiters_, waiter);
  co_return false;
}

void SqliteDatabase::unlock_writer() {
  std::lock_guard lock(mutex_);
  if (waiters_.empty()) {
    writer_busy_ = false;
    return;
  }
  auto next = std::move(waiters_.front());
  waiters_.pop_front();
  next->granted = true;
  // On the waiter's strand: its timer is not safe to touch from this thread, and the post
  // runs after the waiter started waiting.
  asio::post(next->strand, [next] { next->timer.cancel(); });
}

Result<std::unique_ptr<SqliteConnection>> SqliteDatabase::take_reader() {
  {
    std::lock_guard lock(mutex_);
    if (!readers_.empty()) {
      auto reader = std::move(readers_.back());
      readers_.pop_back();
      return reader;
    }
  }
  return SqliteConnection::open(path_, busy_timeout_);
}

void SqliteDatabase::return_reader(std::unique_ptr<SqliteConnection> reader) {
  constexpr size_t kMaxIdleReaders = 16;
  std::lock_guard lock(mutex_);
  if (readers_.size() < kMaxIdleReaders) readers_.push_back(std::move(reader));
}

SqliteEngine& SqliteEngine::instance() {
  static SqliteEngine engine;
  return engine;
}

SqliteEngine::SqliteEngine() : workers_(std::max(2u, std::thread::hardware_concurrency())) {}

Result<std::shared_ptr<SqliteDatabase>>
SqliteEngine::database(const config::BackendTarget& target) {
  std::lock_guard lock(mutex_);
  auto key = std::filesystem::weakly_canonical(target.path).string();
  if (auto found = databases_.find(key); found != databases_.end()) return found->second;
  auto database = SqliteDatabase::open(target);
  if (!database) return database;
  spdlog::info("SQLite database {} opened (WAL, one writer, pooled readers)", key);
  databases_.emplace(key, *database);
  return database;
}

std::pair<uint32_t, uint32_t> SqliteEngine::register_session(SqliteSession* session) {
  static thread_local std::mt19937 random{std::random_device{}()};
  std::lock_guard lock(mutex_);
  uint32_t pid = next_pid_++;
  uint32_t key = random();
  sessions_.emplace(pid, std::make_pair(key, session));
  return {pid, key};
}

void SqliteEngine::unregister_session(uint32_t pid) {
  std::lock_guard lock(mutex_);
  sessions_.erase(pid);
}

void SqliteEngine::cancel(uint32_t pid, uint32_t key) {
  std::lock_guard lock(mutex_);
  auto found = sessions_.find(pid);
  if (found == sessions_.end() || found->second.first != key) return;
  found->second.second->interrupt();
}

} // namespace switchyard::proxy
