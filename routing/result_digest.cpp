#include "routing/result_digest.hpp"

#include <cstdio>

#include "routing/stable_hash.hpp"

namespace switchyard::routing {

void ResultDigest::add_row(std::string_view data_row_body) {
  uint64_t row = stable_hash(data_row_body);
  ++rows_;
  if (ordered_) {
    // Position-dependent: mixing the running value in makes a swap of two rows show.
    value_ = mix64(value_ ^ row);
  } else {
    value_ += row; // a sum is blind to order but counts every duplicate
  }
}

std::string ResultDigest::describe() const {
  if (!error_.empty()) return "error " + error_;
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(value_));
  return std::to_string(rows_) + " rows, digest " + hex;
}

} // namespace switchyard::routing
