#include "proxy/state_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "protocol/json.hpp"

namespace switchyard::proxy {
namespace {

namespace json = boost::json;

constexpr std::string_view kConfigPercent = "config_read_percent";

Status write_all(int fd, const std::string& text, const std::string& path) {
  size_t written = 0;
  while (written < text.size()) {
    ssize_t n = ::write(fd, text.data() + written, text.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Error{"cannot write '" + path + "': " + std::strerror(errno)};
    written += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) return Error{"cannot flush '" + path + "': " + std::strerror(errno)};
  return Ok{};
}

} // namespace

Result<std::optional<StateFile::Saved>> StateFile::load() const {
  std::ifstream in(path_);
  if (!in) {
    if (!std::filesystem::exists(path_)) return std::optional<Saved>();
    return Error{"cannot read '" + path_ + "'"};
  }
  std::stringstream text;
  text << in.rdbuf();
  auto state = routing::cutover_from_json(text.str());
  if (!state) return Error{"'" + path_ + "': " + state.error()};
  Saved saved{*state, std::nullopt};
  json::error_code ec;
  json::value parsed = json::parse(text.str(), ec);
  if (const json::value* percent = parsed.get_object().if_contains(kConfigPercent);
      percent != nullptr && percent->is_number()) {
    saved.config_read_percent = percent->to_number<double>(ec);
  }
  return std::optional<Saved>(saved);
}

Status StateFile::save(const Saved& saved) const {
  std::filesystem::path target(path_);
  std::error_code ec;
  if (!target.parent_path().empty()) std::filesystem::create_directories(target.parent_path(), ec);
  std::string temp = path_ + ".tmp";
  int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
  if (fd < 0) return Error{"cannot create '" + temp + "': " + std::strerror(errno)};
  json::value document = json::parse(routing::to_json(saved.state));
  if (saved.config_read_percent) {
    document.get_object()[kConfigPercent] = json_number(*saved.config_read_percent);
  }
  Status written = write_all(fd, json::serialize(document) + "\n", temp);
  ::close(fd);
  if (!written) return written;
  std::filesystem::rename(temp, target, ec);
  if (ec) return Error{"cannot replace '" + path_ + "': " + ec.message()};
  // The rename is durable only once the directory is.
  std::string directory = target.parent_path().empty() ? "." : target.parent_path().string();
  int dir = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
  return Ok{};
}

} // namespace switchyard::proxy
