#pragma once

#include <optional>
#include <string>
#include <utility>

namespace switchyard {

//! An expected failure carried as a value: a refused connection, a malformed packet, a bad
//! password. Exceptions are kept for failures that stop the program (bad config at start).
struct Error {
  std::string message;
};

//! Either a value or an Error (std::expected is C++23; this is the part we need).
template <class T> class [[nodiscard]] Result {
public:
  Result(T value) : value_(std::move(value)) {}             // NOLINT(google-explicit-constructor)
  Result(Error error) : error_(std::move(error.message)) {} // NOLINT(google-explicit-constructor)

  bool ok() const { return value_.has_value(); }
  explicit operator bool() const { return ok(); }
  T& value() { return *value_; }
  const T& value() const { return *value_; }
  T& operator*() { return *value_; }
  const T& operator*() const { return *value_; }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }
  const std::string& error() const { return error_; }

private:
  std::optional<T> value_;
  std::string error_;
};

//! Result of an operation that yields nothing but may fail.
struct Ok {};
using Status = Result<Ok>;

} // namespace switchyard
