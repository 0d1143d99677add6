#pragma once

#include <optional>
#include <string>

namespace switchyard::proxy {

//! What `switchyard ctl` was asked to do.
struct CtlRequest {
  std::string admin;             //!< host:port of the admin listener, or https://host:port
  std::string ca_file;           //!< verifies an HTTPS admin listener (default: the system CAs)
  std::string token;             //!< bearer token
  std::string command;           //!< status, reload, or a cutover action
  std::optional<double> percent; //!< for ramp
  std::string reason;
  std::string actor;
  bool json = false; //!< print the API's JSON instead of text
};

//! Runs one `switchyard ctl` command against a running proxy's admin API and prints the
//! outcome for people. Returns the process exit code: 0 done, 1 refused, 2 unreachable.
int run_ctl(const CtlRequest& request);

} // namespace switchyard::proxy
