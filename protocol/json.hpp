#pragma once

#include <boost/json.hpp>

#include <cmath>
#include <cstdint>

namespace switchyard {

//! A number as JSON that people read too: whole values as integers ("25", not "2.5E1").
inline boost::json::value json_number(double value) {
  if (std::isfinite(value) && std::floor(value) == value && std::fabs(value) < 9.0e15) {
    return static_cast<int64_t>(value);
  }
  return std::isfinite(value) ? boost::json::value(value) : boost::json::value(0);
}

} // namespace switchyard
