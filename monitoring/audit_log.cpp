#include "monitoring/audit_log.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

namespace switchyard::monitoring {

std::unique_ptr<AuditLog> AuditLog::open(const std::string& path, std::string& error) {
  std::error_code ec;
  auto directory = std::filesystem::path(path).parent_path();
  if (!directory.empty()) std::filesystem::create_directories(directory, ec);
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (fd < 0) {
    error = "cannot open audit log '" + path + "': " + std::strerror(errno);
    return nullptr;
  }
  return std::unique_ptr<AuditLog>(new AuditLog(path, fd));
}

AuditLog::~AuditLog() {
  ::close(fd_);
}

bool AuditLog::append(std::string_view json_object, std::string& error) {
  std::string line(json_object);
  line += '\n';
  std::lock_guard lock(mutex_);
  size_t written = 0;
  while (written < line.size()) {
    ssize_t n = ::write(fd_, line.data() + written, line.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      error = "cannot write audit log '" + path_ + "': " + std::strerror(errno);
      return false;
    }
    written += static_cast<size_t>(n);
  }
  if (::fdatasync(fd_) != 0) {
    error = "cannot flush audit log '" + path_ + "': " + std::strerror(errno);
    return false;
  }
  return true;
}

} // namespace switchyard::monitoring
