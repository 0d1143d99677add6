#pragma once

#include <chrono>
#include <optional>
#include <string_view>

namespace switchyard::config {

//! Parses "250ms", "10s", "5m", "2h" or a bare number of seconds; nullopt if malformed.
std::optional<std::chrono::milliseconds> parse_duration(std::string_view text);

} // namespace switchyard::config
