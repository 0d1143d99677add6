#include "backfill/journal.hpp"

#include <boost/json.hpp>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <limits>

#include "protocol/auth.hpp"

namespace switchyard::backfill {
namespace json = boost::json;

namespace {

std::string now_iso8601() {
  auto now = std::chrono::system_clock::now();
  std::time_t seconds = std::chrono::system_clock::to_time_t(now);
  auto millis =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char text[40];
  std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%S", &utc);
  char full[48];
  std::snprintf(full, sizeof(full), "%s.%03dZ", text, static_cast<int>(millis));
  return full;
}

std::string errno_text(const std::string& what) {
  return what + ": " + std::strerror(errno);
}

std::string cursor_path(const std::string& path) {
  return path + ".cursor";
}

// Binary values (bytea in binary format, ...) are not valid JSON strings: base64 them.
json::value encode_value(const protocol::Value& value, uint16_t format) {
  if (!value) return nullptr;
  if (format == 0) return json::string(*value);
  return json::object{{"base64", protocol::base64_encode(*value)}};
}

Result<protocol::Value> decode_value(const json::value& value) {
  if (value.is_null()) return protocol::Value{};
  if (value.is_string()) return protocol::Value{std::string(value.get_string())};
  if (value.is_object() && value.get_object().contains("base64")) {
    auto bytes = protocol::base64_decode(value.get_object().at("base64").as_string());
    if (!bytes) return Error{bytes.error()};
    return protocol::Value{*bytes};
  }
  return Error{"journal value must be null, a string or {base64}"};
}

json::array string_array(const std::vector<std::string>& strings) {
  json::array array;
  for (const auto& string : strings)
    array.emplace_back(string);
  return array;
}

} // namespace

std::string to_json_line(const JournalEntry& entry) {
  json::object out;
  out["time"] = entry.time;
  out["kind"] = entry.kind == JournalEntry::Kind::kRow         ? "row"
                : entry.kind == JournalEntry::Kind::kStatement ? "statement"
                : entry.kind == JournalEntry::Kind::kTable     ? "table"
                                                               : "large_object";
  out["missed_by"] = entry.missed_by;
  out["user"] = entry.user;
  out["database"] = entry.database;
  if (!entry.table.empty()) out["table"] = entry.table;
  if (entry.kind == JournalEntry::Kind::kLargeObject) out["large_object"] = entry.large_object;
  if (!entry.op.empty()) out["op"] = entry.op;
  if (!entry.columns.empty()) out["columns"] = string_array(entry.columns);
  if (!entry.assigned.empty()) out["assigned"] = string_array(entry.assigned);
  json::array types;
  json::array formats;
  json::array values;
  for (size_t i = 0; i < entry.values.size(); ++i) {
    uint16_t format = i < entry.formats.size() ? entry.formats[i] : 0;
    types.emplace_back(i < entry.types.size() ? entry.types[i] : 0);
    formats.emplace_back(format);
    values.push_back(encode_value(entry.values[i], format));
  }
  out["types"] = std::move(types);
  out["formats"] = std::move(formats);
  out["values"] = std::move(values);
  if (!entry.sql.empty()) out["sql"] = entry.sql;
  if (!entry.settings.empty()) out["settings"] = string_array(entry.settings);
  if (entry.statement_rows != 1) out["statement_rows"] = entry.statement_rows;
  if (entry.ddl) out["ddl"] = true;
  if (entry.maybe_applied) out["maybe_applied"] = true;
  out["fingerprint"] = entry.fingerprint;
  out["reason"] = entry.reason;
  out["error"] = entry.error;
  return json::serialize(out);
}

Result<JournalEntry> from_json_line(std::string_view line) {
  json::error_code ec;
  json::value parsed = json::parse(line, ec);
  if (ec || !parsed.is_object()) return Error{"journal line is not a JSON object"};
  const json::object& in = parsed.get_object();
  auto text = [&](std::string_view key) -> std::string {
    const json::value* v = in.if_contains(key);
    return v != nullptr && v->is_string() ? std::string(v->get_string()) : std::string();
  };
  JournalEntry entry;
  entry.time = text("time");
  std::string kind = text("kind");
  entry.kind = kind == "statement"      ? JournalEntry::Kind::kStatement
               : kind == "table"        ? JournalEntry::Kind::kTable
               : kind == "large_object" ? JournalEntry::Kind::kLargeObject
                                        : JournalEntry::Kind::kRow;
  if (text("missed_by") == "old") entry.missed_by = "old"; // entries of old versions lack it
  entry.user = text("user");
  entry.database = text("database");
  entry.table = text("table");
  entry.op = text("op");
  entry.sql = text("sql");
  entry.fingerprint = text("fingerprint");
  entry.reason = text("reason");
  entry.error = text("error");
  const json::value* ddl = in.if_contains("ddl");
  entry.ddl = ddl != nullptr && ddl->is_bool() && ddl->get_bool();
  const json::value* maybe_applied = in.if_contains("maybe_applied");
  entry.maybe_applied =
      maybe_applied != nullptr && maybe_applied->is_bool() && maybe_applied->get_bool();
  try {
    // Entries of versions before the field each replay alone.
    if (const json::value* rows = in.if_contains("statement_rows")) {
      entry.statement_rows = rows->to_number<uint32_t>();
    }
    if (const json::value* object = in.if_contains("large_object")) {
      entry.large_object = object->to_number<uint32_t>();
    }
    for (auto [key, strings] :
         {std::pair{"settings", &entry.settings}, std::pair{"columns", &entry.columns},
          std::pair{"assigned", &entry.assigned}}) {
      if (const json::value* array = in.if_contains(key)) {
        for (const auto& item : array->as_array())
          strings->emplace_back(item.as_string());
      }
    }
    if (const json::value* types = in.if_contains("types")) {
      for (const auto& t : types->as_array())
        entry.types.push_back(t.to_number<uint32_t>());
    }
    if (const json::value* formats = in.if_contains("formats")) {
      for (const auto& f : formats->as_array())
        entry.formats.push_back(f.to_number<uint16_t>());
    }
    if (const json::value* values = in.if_contains("values")) {
      for (const auto& v : values->as_array()) {
        auto value = decode_value(v);
        if (!value) return Error{value.error()};
        entry.values.push_back(std::move(*value));
      }
    }
  } catch (const std::exception& e) {
    return Error{std::string("journal line has a malformed field: ") + e.what()};
  }
  return entry;
}

DivergenceJournal::DivergenceJournal(std::string path, int fd, uint64_t cursor, uint64_t backlog,
                                     uint64_t file_end, FlushObserver flushed)
    : path_(std::move(path)), fd_(fd), flushed_(std::move(flushed)), cursor_(cursor),
      backlog_(backlog), appended_total_(backlog), file_end_(file_end), durable_file_end_(file_end),
      flusher_([this] { flush_appends(); }) {}

DivergenceJournal::~DivergenceJournal() {
  stop_flusher();
  ::close(fd_);
}

void DivergenceJournal::stop_flusher() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  written_.notify_one();
  if (flusher_.joinable()) flusher_.join();
}

void DivergenceJournal::flush_appends() {
  std::unique_lock lock(mutex_);
  while (true) {
    written_.wait(lock, [this] { return stopping_ || written_bytes_ > durable_bytes_; });
    if (written_bytes_ == durable_bytes_) return; // stopping, and everything is on disk
    Status synced = flush_written(lock);
    auto done = take_waiters(durable_bytes_);
    lock.unlock();
    for (auto& call : done)
      call(synced);
    lock.lock();
  }
}

Status DivergenceJournal::flush_written(std::unique_lock<std::mutex>& lock) {
  uint64_t ticket = written_bytes_;
  uint64_t file_end = file_end_;
  uint64_t emptied = emptied_;
  lock.unlock();
  // Covers every append written so far; those written meanwhile wait for the next one.
  auto started = std::chrono::steady_clock::now();
  Status synced = Ok{};
  if (::fdatasync(fd_) != 0) synced = Error{errno_text(path_ + ": cannot sync the journal")};
  if (flushed_) {
    flushed_(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  }
  lock.lock();
  durable_bytes_ = std::max(durable_bytes_, ticket);
  if (emptied == emptied_) durable_file_end_ = std::max(durable_file_end_, file_end);
  return synced;
}

std::vector<std::function<void(Status)>> DivergenceJournal::take_waiters(uint64_t ticket) {
  std::vector<std::function<void(Status)>> done;
  auto end = waiters_.upper_bound(ticket);
  for (auto waiter = waiters_.begin(); waiter != end; ++waiter)
    done.push_back(std::move(waiter->second));
  waiters_.erase(waiters_.begin(), end);
  return done;
}

bool DivergenceJournal::durable(uint64_t ticket) const {
  std::lock_guard lock(mutex_);
  return ticket <= durable_bytes_;
}

void DivergenceJournal::when_durable(uint64_t ticket, std::function<void(Status)> done) {
  std::unique_lock lock(mutex_);
  if (ticket <= durable_bytes_) {
    lock.unlock();
    done(Ok{});
    return;
  }
  if (!stopping_) {
    waiters_.emplace(ticket, std::move(done));
    return;
  }
  // No flusher any more (shutting down): flush here.
  Status synced = flush_written(lock);
  lock.unlock();
  done(synced);
}

Result<std::unique_ptr<DivergenceJournal>> DivergenceJournal::open(const std::string& path,
                                                                   FlushObserver flushed) {
  std::error_code ec;
  auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  if (ec) return Error{path + ": cannot create the journal directory: " + ec.message()};
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return Error{errno_text(path + ": cannot open the divergence journal")};
  uint64_t cursor = 0;
  std::ifstream cursor_file(cursor_path(path));
  if (cursor_file) cursor_file >> cursor;
  // Count the entries after the cursor so the backlog metric is right from the start.
  uint64_t backlog = 0;
  std::ifstream lines(path);
  lines.seekg(static_cast<std::streamoff>(cursor));
  std::string line;
  while (std::getline(lines, line)) {
    if (!line.empty()) ++backlog;
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    return Error{errno_text(path + ": cannot stat the journal")};
  }
  return std::unique_ptr<DivergenceJournal>(new DivergenceJournal(
      path, fd, cursor, backlog, static_cast<uint64_t>(st.st_size), std::move(flushed)));
}

Result<uint64_t> DivergenceJournal::append(std::span<const JournalEntry> entries,
                                           uint64_t* unsettled) {
  std::string text;
  std::string time = now_iso8601();
  for (JournalEntry entry : entries) {
    entry.time = time;
    text += to_json_line(entry);
    text += '\n';
  }
  std::unique_lock lock(mutex_);
  size_t written = 0;
  while (written < text.size()) {
    ssize_t n = ::write(fd_, text.data() + written, text.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      file_end_ += written; // a partial line: the file is where it is
      written_bytes_ += written;
      return Error{errno_text(path_ + ": cannot write the divergence journal")};
    }
    written += static_cast<size_t>(n);
  }
  if (unsettled != nullptr) {
    *unsettled = file_end_;
    unsettled_.emplace(*unsettled, appended_total_);
  }
  file_end_ += text.size();
  written_bytes_ += text.size();
  backlog_ += entries.size();
  appended_total_ += entries.size();
  uint64_t ticket = written_bytes_;
  lock.unlock();
  written_.notify_one();
  return ticket;
}

void DivergenceJournal::settle(uint64_t offset) {
  std::lock_guard lock(mutex_);
  if (auto found = unsettled_.find(offset); found != unsettled_.end()) unsettled_.erase(found);
}

Result<std::vector<std::pair<uint64_t, JournalEntry>>> DivergenceJournal::pending(size_t max) {
  uint64_t cursor;
  uint64_t limit;
  {
    std::lock_guard lock(mutex_);
    cursor = cursor_;
    limit = unsettled_.empty() ? durable_file_end_
                               : std::min(durable_file_end_, unsettled_.begin()->first);
  }
  std::vector<std::pair<uint64_t, JournalEntry>> out;
  std::ifstream in(path_);
  if (!in) return Error{path_ + ": cannot read the divergence journal"};
  in.seekg(static_cast<std::streamoff>(cursor));
  std::string line;
  uint64_t offset = cursor;
  while (out.size() < max && offset < limit && std::getline(in, line)) {
    if (in.eof()) break; // a line without its newline is still being written
    offset += line.size() + 1;
    if (line.empty()) continue;
    auto entry = from_json_line(line);
    if (!entry)
      return Error{path_ + ": entry at byte " + std::to_string(offset) + ": " + entry.error()};
    out.emplace_back(offset, std::move(*entry));
  }
  return out;
}

Status DivergenceJournal::save_cursor(uint64_t cursor) {
  std::string temp = cursor_path(path_) + ".tmp";
  {
    std::ofstream out(temp, std::ios::trunc);
    out << cursor << '\n';
    if (!out.flush()) return Error{temp + ": cannot write the journal cursor"};
  }
  std::error_code ec;
  std::filesystem::rename(temp, cursor_path(path_), ec);
  if (ec) return Error{cursor_path(path_) + ": " + ec.message()};
  return Ok{};
}

Status DivergenceJournal::acknowledge(uint64_t offset) {
  std::lock_guard lock(mutex_);
  uint64_t acknowledged = 0;
  {
    std::ifstream in(path_);
    in.seekg(static_cast<std::streamoff>(cursor_));
    std::string line;
    uint64_t at = cursor_;
    while (at < offset && std::getline(in, line)) {
      at += line.size() + 1;
      if (!line.empty()) ++acknowledged;
    }
  }
  if (file_end_ == offset) {
    // Everything is replayed: start both files afresh so the journal does not grow forever.
    if (::ftruncate(fd_, 0) != 0) return Error{errno_text(path_ + ": cannot truncate")};
    cursor_ = 0;
    file_end_ = 0;
    durable_file_end_ = 0;
    ++emptied_;
  } else {
    cursor_ = offset;
  }
  backlog_ = backlog_ > acknowledged ? backlog_ - acknowledged : 0;
  acknowledged_total_ += acknowledged;
  return save_cursor(cursor_);
}

uint64_t DivergenceJournal::appended_total() const {
  std::lock_guard lock(mutex_);
  return appended_total_;
}

uint64_t DivergenceJournal::settled_total() const {
  std::lock_guard lock(mutex_);
  return unsettled_.empty() ? appended_total_ : unsettled_.begin()->second;
}

uint64_t DivergenceJournal::acknowledged_total() const {
  std::lock_guard lock(mutex_);
  return acknowledged_total_;
}

uint64_t DivergenceJournal::backlog() const {
  std::lock_guard lock(mutex_);
  return backlog_;
}

} // namespace switchyard::backfill
