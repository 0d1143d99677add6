#pragma once

#include <string_view>

namespace switchyard::monitoring {

//! Sets up the process-wide logger on stderr: level name ("info", ...) and text or JSON lines.
void setup_logging(std::string_view level, bool json);
//! Changes the level of the running logger (config reload).
void set_log_level(std::string_view level);

} // namespace switchyard::monitoring
