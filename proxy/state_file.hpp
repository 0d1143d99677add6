#pragma once

#include <optional>
#include <string>

#include "protocol/result.hpp"
#include "routing/cutover.hpp"

namespace switchyard::proxy {

//! The cutover state on local disk: the store when no fleet Redis is configured, and the
//! last known state a fleet proxy falls back on when Redis is away at start.
class StateFile {
public:
  explicit StateFile(std::string path) : path_(std::move(path)) {}

  struct Saved {
    routing::CutoverState state;
    //! The config's read_percent when it was last applied here, so a restart can tell
    //! whether the file changed while the proxy was down.
    std::optional<double> config_read_percent;
  };
  //! What was saved; nullopt when nothing was saved yet.
  Result<std::optional<Saved>> load() const;
  //! Replaces the file atomically (temp file, fsync, rename, fsync of the directory).
  Status save(const Saved& saved) const;
  const std::string& path() const { return path_; }

private:
  std::string path_;
};

} // namespace switchyard::proxy
