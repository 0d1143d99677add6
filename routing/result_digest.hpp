#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

namespace switchyard::routing {

//! A digest of a result set for shadow comparison, fed the DataRow bodies as they pass.
//! Ordered, row order counts (the query has ORDER BY); unordered, the same rows in any
//! order digest alike, duplicates included. Column values are compared as the wire sends
//! them, so both sides must use the same formats.
class ResultDigest {
public:
  explicit ResultDigest(bool ordered) : ordered_(ordered) {}

  void add_row(std::string_view data_row_body);
  //! The error the query ended with (its SQLSTATE), part of what is compared.
  void set_error(std::string sqlstate) { error_ = std::move(sqlstate); }

  uint64_t rows() const { return rows_; }
  const std::string& error() const { return error_; }
  bool operator==(const ResultDigest& other) const {
    return rows_ == other.rows_ && value_ == other.value_ && error_ == other.error_;
  }
  //! "N rows, digest HEX" or "error SQLSTATE", for logs.
  std::string describe() const;

private:
  bool ordered_;
  uint64_t rows_ = 0;
  uint64_t value_ = 0;
  std::string error_;
};

} // namespace switchyard::routing
