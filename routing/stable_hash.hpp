#pragma once

#include <cstdint>
#include <string_view>

namespace switchyard::routing {

//! splitmix64's finalizer: inputs differing in one bit come out far apart.
constexpr uint64_t mix64(uint64_t hash) {
  hash ^= hash >> 30;
  hash *= 0xbf58476d1ce4e5b9ULL;
  hash ^= hash >> 27;
  hash *= 0x94d049bb133111ebULL;
  hash ^= hash >> 31;
  return hash;
}

//! A hash of `bytes` that is the same on every machine and release (FNV-1a, then mixed so
//! similar inputs such as "app-1" and "app-2" spread evenly).
constexpr uint64_t stable_hash(std::string_view bytes) {
  uint64_t hash = 0xcbf29ce484222325ULL;
  for (char c : bytes) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 0x100000001b3ULL;
  }
  return mix64(hash);
}

} // namespace switchyard::routing
