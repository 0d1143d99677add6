#pragma once

#include <cstddef>
#include <functional>
#include <string_view>

namespace switchyard::proxy {

//! Hashes std::string keys and string_view lookups alike, so a lookup allocates nothing
//! (with std::equal_to<> as the key comparison).
struct TextHash {
  using is_transparent = void;
  size_t operator()(std::string_view text) const { return std::hash<std::string_view>{}(text); }
};

} // namespace switchyard::proxy
