#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <string_view>

namespace switchyard::monitoring {

//! An append-only JSON-lines file of who changed what and why. Each line is on disk
//! (fdatasync) before append() returns, so an audited change survives a crash.
class AuditLog {
public:
  //! Opens (creating it and its directory) `path` for appending; null with `error` set.
  static std::unique_ptr<AuditLog> open(const std::string& path, std::string& error);
  ~AuditLog();
  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;

  //! Appends one line (a JSON object, no newline); false with `error` set on failure.
  bool append(std::string_view json_object, std::string& error);
  const std::string& path() const { return path_; }

private:
  AuditLog(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}

  std::string path_;
  int fd_;
  std::mutex mutex_;
};

} // namespace switchyard::monitoring
